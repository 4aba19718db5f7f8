// The decision request (CONTRACT §1): the whole body is the decision context. Known sections
// are validated strictly enough to name the offending field; other top-level sections pass
// through (rules may address them) within size bounds.
import { z } from 'zod';

export const LIMITS = {
  string: 2_048,
  items: 500,
  metadataKeys: 64,
  metadataKey: 64,
  metadataValue: 512,
  session: 256,
  token: 256,
} as const;
// Shared by the schema and the fast check below, so the two cannot drift apart.
const RE = {
  context: /^[a-z0-9][a-z0-9_-]{0,63}$/,
  currency: /^[A-Z]{3}$/,
  bin: /^\d{6,8}$/,
  last4: /^\d{4}$/,
  expiry: /^(0[1-9]|1[0-2])\/\d{2}$/,
  pan: /^\d{12,19}$/,
  fingerprint: /^[A-Za-z0-9_:.-]{1,128}$/,
  // zod's own: z.ipv4() checks exactly this.
  ipv4: z.regexes.ipv4,
} as const;

/**
 * A value that could be a card number: 12 to 19 digits passing the Luhn check. Format-preserving
 * tokens are made to fail Luhn precisely so they are never taken for a card, so they pass.
 */
export function looksLikePan(raw: string): boolean {
  // Grouped the way cards are written (4111-1111-1111-1111, 4111.1111…, 4111_1111…): the same
  // number. Only when nothing but digits and separators: a token that merely holds digits is not.
  const v = PAN_GROUPED.test(raw) ? raw.replace(/[ ._-]/g, '') : raw;
  if (!RE.pan.test(v)) return false;
  let sum = 0;
  for (let i = v.length - 1, odd = false; i >= 0; i--, odd = !odd) {
    let d = v.charCodeAt(i) - 48;
    if (odd) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}
const PAN_GROUPED = /^\d[\d ._-]*\d$/;
const PAN_AS_FINGERPRINT =
  'looks like a card number: send it as credential {"type": "pan"} (allowed at VIGIL_PCI_LEVEL SAQ_D or ROC), or send a token';

const str = z.string().max(LIMITS.string);
const contextName = z.string().regex(RE.context, 'lowercase letters, digits, - and _ (at most 64)');

const Transaction = z
  .object({
    // null is taken as absent: serializers often write it for an empty field (semantic 7
    // already reads a null path as missing).
    reference: str.nullish(),
    amount: z
      .number()
      .int('money is an integer in minor units')
      .min(0)
      .max(Number.MAX_SAFE_INTEGER)
      .nullish(),
    currency: z.string().regex(RE.currency, 'an ISO-4217 code such as EUR').nullish(),
  })
  .catchall(z.unknown());

const Credential = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('masked_pan'),
    bin: z.string().regex(RE.bin, '6 to 8 digits'),
    last4: z.string().regex(RE.last4, '4 digits'),
    expiry: z.string().regex(RE.expiry, 'MM/YY').optional(),
  }),
  z.object({
    type: z.literal('pan'),
    number: z.string().regex(RE.pan, '12 to 19 digits'),
    expiry: z.string().regex(RE.expiry, 'MM/YY').optional(),
  }),
  z.object({ type: z.literal('token'), value: z.string().min(1).max(LIMITS.token) }),
]);

const Device = z
  .object({
    ip: z.union([z.ipv4(), z.ipv6()]).nullish(),
    fingerprint: str.nullish(),
    user_agent: str.nullish(),
    session: z.string().min(1).max(LIMITS.session).nullish(),
  })
  .catchall(z.unknown());

const Customer = z.object({ id: str.nullish(), email: str.nullish() }).catchall(z.unknown());

export const DecisionRequest = z
  .object({
    context: contextName.default('default'),
    transaction: Transaction.optional(),
    credential: Credential.optional(),
    credential_fingerprint: z
      .string()
      .regex(RE.fingerprint, 'a token of at most 128 url-safe characters')
      // Taken as is and stored: a raw card number here would bypass VIGIL_PCI_LEVEL.
      .refine((v) => !looksLikePan(v), PAN_AS_FINGERPRINT)
      .optional(),
    customer: Customer.optional(),
    device: Device.optional(),
    billing: z.record(z.string(), z.unknown()).optional(),
    shipping: z.record(z.string(), z.unknown()).optional(),
    items: z.array(z.record(z.string(), z.unknown())).max(LIMITS.items).optional(),
    metadata: z
      .record(z.string().max(LIMITS.metadataKey), z.string().max(LIMITS.metadataValue))
      .refine(
        (m) => Object.keys(m).length <= LIMITS.metadataKeys,
        `at most ${LIMITS.metadataKeys} keys`,
      )
      .optional(),
    // Set by Vigil, never by the caller.
    backends: z.never().optional(),
  })
  .catchall(z.unknown())
  .refine((r) => !(r.credential && r.credential_fingerprint), {
    message: 'send either credential or credential_fingerprint, not both',
    path: ['credential_fingerprint'],
  });
export type DecisionRequest = z.infer<typeof DecisionRequest>;

type Obj = Record<string, unknown>;
const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
// z.record wants a plain object; JSON.parse makes nothing else.
const isRecord = (v: unknown): v is Obj => {
  if (!isObject(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
};
const optString = (v: unknown, max: number) =>
  v === undefined || v === null || (typeof v === 'string' && v.length <= max);
const matches = (v: unknown, re: RegExp) => typeof v === 'string' && re.test(v);
const optMatch = (v: unknown, re: RegExp) => v === undefined || matches(v, re);
const nullOrMatch = (v: unknown, re: RegExp) => v === null || optMatch(v, re);
function onlyKeys(o: Obj, allowed: readonly string[]): boolean {
  for (const k in o) if (!allowed.includes(k)) return false;
  return true;
}
const MASKED_PAN_KEYS = ['type', 'bin', 'last4', 'expiry'] as const;
const PAN_KEYS = ['type', 'number', 'expiry'] as const;
const TOKEN_KEYS = ['type', 'value'] as const;

function credentialOk(c: unknown): boolean {
  if (!isObject(c)) return false;
  // Keys the schema does not know are stripped by zod: such a credential takes zod's path.
  if (c.type === 'masked_pan')
    return (
      onlyKeys(c, MASKED_PAN_KEYS) &&
      matches(c.bin, RE.bin) &&
      matches(c.last4, RE.last4) &&
      optMatch(c.expiry, RE.expiry)
    );
  if (c.type === 'pan')
    return onlyKeys(c, PAN_KEYS) && matches(c.number, RE.pan) && optMatch(c.expiry, RE.expiry);
  return (
    c.type === 'token' &&
    onlyKeys(c, TOKEN_KEYS) &&
    typeof c.value === 'string' &&
    c.value.length >= 1 &&
    c.value.length <= LIMITS.token
  );
}

function metadataOk(m: unknown): boolean {
  if (!isRecord(m)) return false;
  let n = 0;
  for (const k in m) {
    const v = m[k];
    if (++n > LIMITS.metadataKeys || k.length > LIMITS.metadataKey) return false;
    if (typeof v !== 'string' || v.length > LIMITS.metadataValue) return false;
  }
  return true;
}

/**
 * True only for a request the schema accepts unchanged (no key to strip, no value to coerce):
 * the common, well-formed case, checked by hand at a fraction of zod's cost (zod's parse was
 * ~35 µs of a decision's ~60 µs of validation and transport in the API). Anything else — an
 * error, an IPv6 address, an unknown key inside a credential — is left to the schema, which
 * stays the one judge of what is valid and the one author of error messages.
 * test/unit/decisions/request-fast.test.ts holds the two to the same verdicts and outputs.
 */
export function plainValid(r: unknown): r is Obj {
  if (!isObject(r)) return false;
  for (const k in r) {
    // An own __proto__ key (not from JSON: the parser refuses it) is the schema's to judge.
    if (k === '__proto__') return false;
    const v = r[k];
    if (v === undefined) continue;
    switch (k) {
      case 'context':
        if (!matches(v, RE.context)) return false;
        break;
      case 'transaction':
        if (
          !isObject(v) ||
          !optString(v.reference, LIMITS.string) ||
          !(
            v.amount === undefined ||
            v.amount === null ||
            (typeof v.amount === 'number' && Number.isSafeInteger(v.amount) && v.amount >= 0)
          ) ||
          !nullOrMatch(v.currency, RE.currency)
        )
          return false;
        break;
      case 'credential':
        if (!credentialOk(v)) return false;
        break;
      case 'credential_fingerprint':
        if (!matches(v, RE.fingerprint) || looksLikePan(v as string)) return false;
        break;
      case 'customer':
        if (!isObject(v) || !optString(v.id, LIMITS.string) || !optString(v.email, LIMITS.string))
          return false;
        break;
      case 'device':
        if (
          !isObject(v) ||
          !nullOrMatch(v.ip, RE.ipv4) ||
          !optString(v.fingerprint, LIMITS.string) ||
          !optString(v.user_agent, LIMITS.string) ||
          !(
            v.session === undefined ||
            v.session === null ||
            (typeof v.session === 'string' &&
              v.session.length >= 1 &&
              v.session.length <= LIMITS.session)
          )
        )
          return false;
        break;
      case 'billing':
      case 'shipping':
        if (!isRecord(v)) return false;
        break;
      case 'items':
        if (!Array.isArray(v) || v.length > LIMITS.items || !v.every(isRecord)) return false;
        break;
      case 'metadata':
        if (!metadataOk(v)) return false;
        break;
      case 'backends':
        return false;
      default:
      // Other sections pass through, as the schema's catchall lets them.
    }
  }
  return !(r.credential && r.credential_fingerprint);
}

/**
 * The schema's verdict on a request, by the fast check when it can tell. On that path the input
 * object itself is the data (its `context` filled in when absent), not a copy: callers pass a
 * freshly parsed body or a freshly built context.
 */
export function parseDecisionRequest(
  input: unknown,
): { success: true; data: DecisionRequest } | { success: false; error: z.ZodError } {
  if (plainValid(input)) {
    if (input.context === undefined) input.context = 'default';
    return { success: true, data: input as DecisionRequest };
  }
  const parsed = DecisionRequest.safeParse(input);
  return parsed.success
    ? { success: true, data: parsed.data }
    : { success: false, error: parsed.error };
}

/** A zod issue's path as the API names fields: `credential.bin`, `items[3].sku`. */
function pathName(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (acc, seg) =>
      typeof seg === 'number' ? `${acc}[${seg}]` : acc ? `${acc}.${String(seg)}` : String(seg),
    '',
  );
}

/** zod issues → `{path: 'credential.bin', message}` with `[i]` for array indexes. */
export function issuesOf(err: z.ZodError): { path: string; message: string }[] {
  return err.issues.map((i) => ({ path: pathName(i.path), message: i.message }));
}

/** Rounds of dropping before an extracted context is given up on. */
const DROP_ROUNDS = 3;

function dropAt(root: Obj, path: readonly PropertyKey[], whole: boolean): boolean {
  // After the first round a value that still fails goes with its whole section: a credential
  // missing its `type` after one drop would otherwise fail at the same place forever.
  const at = whole ? path.slice(0, 1) : path;
  if (at.length === 0) return false;
  let parent: unknown = root;
  for (const seg of at.slice(0, -1)) {
    if (typeof parent !== 'object' || parent === null) return true;
    parent = (parent as Record<PropertyKey, unknown>)[seg];
  }
  const last = at[at.length - 1]!;
  if (Array.isArray(parent) && typeof last === 'number') parent[last] = DROPPED;
  else if (typeof parent === 'object' && parent !== null)
    delete (parent as Record<PropertyKey, unknown>)[last];
  return true;
}
const DROPPED = Symbol('dropped');
// Drops are made where issues point, and zod's issue paths stop far above any depth that would
// overflow the stack: a bounded walk finds every mark (a client's deeply nested value passes).
const COMPACT_DEPTH = 64;
function compact(v: unknown, depth = 0): void {
  if (depth > COMPACT_DEPTH) return;
  if (Array.isArray(v)) {
    for (let i = v.length - 1; i >= 0; i--) if (v[i] === DROPPED) v.splice(i, 1);
    for (const x of v) compact(x, depth + 1);
  } else if (isObject(v)) for (const k in v) compact(v[k], depth + 1);
}

/**
 * A decision context built from what a client sent (the inline proxy's and /api/authz's
 * extractors), as the decision API would take it. Unlike an API caller, the client is not the
 * one asking for a decision, and a request refused for one bad value would have no decision at
 * all: an amount of -1, a 3 KB User-Agent or a card number as a token would turn every BLOCK
 * rule off for that request (fail open). So the values the schema refuses are left out, as an
 * extractor leaves out a value that does not coerce, and the rest is decided; `dropped` names
 * them (the context is the proxy's own, built for this request: it is changed in place).
 * Undefined only for a context no dropping can make valid.
 */
export function parseExtractedContext(
  input: Obj,
): { data: DecisionRequest; dropped: string[] } | undefined {
  let parsed = parseDecisionRequest(input);
  const dropped: string[] = [];
  for (let round = 0; !parsed.success; round++) {
    if (round === DROP_ROUNDS) return undefined;
    const paths = new Set<string>();
    for (const issue of parsed.error.issues) {
      // The section of an issue is never `context`: the route's own name, checked at load.
      if (!dropAt(input, issue.path, round > 0)) return undefined;
      paths.add(pathName(round > 0 ? issue.path.slice(0, 1) : issue.path));
    }
    compact(input);
    for (const p of paths) if (!dropped.includes(p)) dropped.push(p);
    parsed = parseDecisionRequest(input);
  }
  return { data: parsed.data, dropped };
}
