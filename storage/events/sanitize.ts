// Making arbitrary caller data safe to publish: plain JSON only, bounded strings, arrays, depth
// and total size, secret-looking keys masked, PII paths replaced by a hash. One pass over the
// data with a byte budget, so an event is never serialized twice to learn its size.
import { createHash, createHmac } from 'node:crypto';

export interface EventLimits {
  /** Longer strings keep this many characters and a `…[+N chars]` marker. Default 1,024. */
  maxStringChars: number;
  /** Longer arrays keep their first items. Default 100. */
  maxArrayItems: number;
  /** Objects keep their first keys. Default 100. */
  maxObjectKeys: number;
  /** Deeper values are left out. Default 8 (the event's own fields are level 0). */
  maxDepth: number;
  /** The event's JSON stays at or below this many UTF-8 bytes. Default 65,536. */
  maxEventBytes: number;
}

export const DEFAULT_LIMITS: EventLimits = {
  maxStringChars: 1024,
  maxArrayItems: 100,
  maxObjectKeys: 100,
  maxDepth: 8,
  maxEventBytes: 64 * 1024,
};

/** Paths listed in an event's `truncated` field, at most; the list's own size is reserved. */
const MAX_NOTES = 16;
const MAX_NOTE_CHARS = 128;
/** Room kept for the `truncated` list and the top-level keys the builders add. */
const RESERVE_BYTES = 2 * 1024 + MAX_NOTES * (MAX_NOTE_CHARS + 8);

export const OMIT: unique symbol = Symbol('omit');
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Running state of one event's sanitation: bytes left and paths that were cut. */
export class Budget {
  left: number;
  readonly notes: string[] = [];
  readonly limits: EventLimits;
  /**
   * Every note() and refused take() so far, kept or not (notes are deduplicated and capped): a
   * part built while this stayed put was built whole, as it would be with any budget left.
   */
  cuts = 0;

  constructor(limits: EventLimits, extraReserve = 0) {
    this.limits = limits;
    this.left = limits.maxEventBytes - RESERVE_BYTES - extraReserve;
  }

  note(path: string): void {
    this.cuts++;
    if (this.notes.length >= MAX_NOTES) return;
    if (this.notes.includes(path)) return;
    this.notes.push(path.length > MAX_NOTE_CHARS ? `${path.slice(0, MAX_NOTE_CHARS - 1)}…` : path);
  }

  /** Takes n bytes if they are left. */
  take(n: number): boolean {
    if (n > this.left) {
      this.cuts++;
      return false;
    }
    this.left -= n;
    return true;
  }

  /** Takes n bytes regardless: for the small, bounded fields every event must carry. */
  force(n: number): void {
    this.left -= n;
  }
}

/** UTF-8 bytes of JSON.stringify(s), without building it. */
export function jsonStringBytes(s: string): number {
  let n = 2;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      if (c === 0x22 || c === 0x5c) n += 2;
      else if (c < 0x20) n += c === 8 || c === 9 || c === 10 || c === 12 || c === 13 ? 2 : 6;
      else n += 1;
    } else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 6; // a lone surrogate is written as \udXXX
    } else if (c >= 0xdc00 && c <= 0xdfff) n += 6;
    else n += 3;
  }
  return n;
}

/** Cuts a string to max characters (never inside a surrogate pair) and marks what was cut. */
export function truncateString(s: string, max: number): string {
  if (s.length <= max) return s;
  let end = max;
  const last = s.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${s.slice(0, end)}…[+${s.length - end} chars]`;
}

// Words that name secrets, matched against the key with case and separators removed
// (`X-Api-Key` → `xapikey`, `clientSecret` → `clientsecret`).
const SECRET_PARTS = [
  'password',
  'passwd',
  'passphrase',
  'secret',
  'token',
  'apikey',
  'authorization',
  'cookie',
  'privatekey',
  'cvv',
  'cvc',
  'cardnumber',
  'accountnumber',
  'iban',
];
const SECRET_EXACT = new Set(['pan', 'pin', 'auth', 'credential', 'credentials', 'pwd', 'otp']);

/** True for keys that look like they hold a secret; `credential_fingerprint` is the one allowed. */
export function isSecretKey(key: string): boolean {
  // Asked for every key of every published context object: the few distinct keys are remembered.
  let known = secretKeyCache.get(key);
  if (known === undefined) {
    known = secretKeyUncached(key);
    if (secretKeyCache.size >= SECRET_CACHE_MAX) secretKeyCache.clear();
    secretKeyCache.set(key, known);
  }
  return known;
}

const SECRET_CACHE_MAX = 4_096;
const secretKeyCache = new Map<string, boolean>();

function secretKeyUncached(key: string): boolean {
  const k = key.toLowerCase().replace(/[^a-z0-9]/g, '');
  if (k === 'credentialfingerprint') return false;
  if (SECRET_EXACT.has(k)) return true;
  if (k.startsWith('credential')) return true;
  for (const p of SECRET_PARTS) if (k.includes(p)) return true;
  return false;
}

export const MASK = '***';

/**
 * Free-form data to plain JSON within the limits and the budget. Returns OMIT for what has no
 * JSON form (functions, symbols, undefined) or what no longer fits; cut places are noted.
 */
export function sanitize(v: unknown, path: string, depth: number, b: Budget): Json | typeof OMIT {
  switch (typeof v) {
    case 'string': {
      const s = truncateString(v, b.limits.maxStringChars);
      if (s !== v) b.note(path);
      if (!b.take(jsonStringBytes(s))) {
        b.note(path);
        return OMIT;
      }
      return s;
    }
    case 'number': {
      if (!Number.isFinite(v)) {
        b.note(path);
        return b.take(4) ? null : OMIT;
      }
      return b.take(String(v).length) ? v : OMIT;
    }
    case 'boolean':
      return b.take(5) ? v : OMIT;
    case 'bigint':
      return sanitize(v.toString(), path, depth, b);
    case 'object':
      break;
    default:
      return OMIT;
  }
  if (v === null) return b.take(4) ? null : OMIT;
  if (v instanceof Date) {
    const t = v.getTime();
    return Number.isFinite(t)
      ? sanitize(v.toISOString(), path, depth, b)
      : sanitize(null, path, depth, b);
  }
  if (depth >= b.limits.maxDepth) {
    b.note(path);
    return OMIT;
  }
  if (!b.take(2)) {
    b.note(path);
    return OMIT;
  }
  if (Array.isArray(v)) {
    const out: Json[] = [];
    const n = Math.min(v.length, b.limits.maxArrayItems);
    if (n < v.length) b.note(path);
    for (let i = 0; i < n; i++) {
      // A comma, or the `null` that JSON writes for a hole, counts too.
      if (!b.take(1)) {
        b.note(path);
        break;
      }
      const item = sanitize(v[i], `${path}[${i}]`, depth + 1, b);
      if (item === OMIT) {
        if (b.left <= 0) {
          b.note(path);
          break;
        }
        out.push(null);
        b.force(4);
      } else out.push(item);
    }
    return out;
  }
  const out: { [key: string]: Json } = {};
  let kept = 0;
  for (const key in v) {
    if (!Object.hasOwn(v, key)) continue;
    if (kept >= b.limits.maxObjectKeys) {
      b.note(path);
      break;
    }
    let raw: unknown;
    try {
      raw = (v as Record<string, unknown>)[key];
    } catch {
      // A throwing getter is a malformed field, not a reason to lose the event.
      b.note(`${path}.${key}`);
      continue;
    }
    if (raw === undefined || typeof raw === 'function' || typeof raw === 'symbol') continue;
    const k = truncateString(key, b.limits.maxStringChars);
    const keyBytes = jsonStringBytes(k) + 2;
    if (!b.take(keyBytes)) {
      b.note(path);
      break;
    }
    const childPath = `${path}.${k}`;
    const value = isSecretKey(key)
      ? sanitize(MASK, childPath, depth + 1, b)
      : sanitize(raw, childPath, depth + 1, b);
    if (value === OMIT) {
      b.left += keyBytes;
      if (b.left <= 0) {
        b.note(path);
        break;
      }
      continue;
    }
    out[k] = value;
    kept++;
  }
  return out;
}

// --- Redaction -------------------------------------------------------------------------------

/** A compiled redaction setting: paths as segments, and how values are hashed. */
export interface Redactor {
  readonly paths: readonly (readonly string[])[];
  readonly hash: (value: unknown) => string;
}

const SEGMENT = /^[A-Za-z_][A-Za-z0-9_-]*$/;

export interface RedactOptions {
  /** With a key, values are hashed with HMAC-SHA256 (`hmac-sha256:…`), which a dictionary of likely values cannot reverse. */
  key?: string | undefined;
  /** Hex characters of the digest kept. Default 16. */
  hexChars?: number;
}

/** Compiles `$.customer.email`-style paths; throws on anything else (no filters, no wildcards). */
export function compileRedaction(paths: readonly string[], opts: RedactOptions = {}): Redactor {
  const compiled = paths.map((p) => {
    const segs = p.startsWith('$.') ? p.slice(2).split('.') : null;
    if (!segs || segs.some((s) => !SEGMENT.test(s)))
      throw new Error(`invalid redact path ${JSON.stringify(p)}: expected $.field.field…`);
    return segs;
  });
  const hexChars = Math.min(64, Math.max(8, opts.hexChars ?? 16));
  const key = opts.key;
  const hash = (value: unknown): string => {
    const text = typeof value === 'string' ? value : stableText(value);
    return key
      ? `hmac-sha256:${createHmac('sha256', key).update(text).digest('hex').slice(0, hexChars)}`
      : `sha256:${createHash('sha256').update(text).digest('hex').slice(0, hexChars)}`;
  };
  return { paths: compiled, hash };
}

function stableText(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Bytes a redacted value can take at most, for the budget's reserve. */
export function redactReserve(r: Redactor | undefined): number {
  return r ? r.paths.length * 96 : 0;
}

/**
 * Replaces the value at every path (arrays on the way are walked element by element). A typed
 * field of the schema keeps its type: outside the free-form roots only strings are replaced.
 */
export function applyRedaction(
  event: Record<string, unknown>,
  r: Redactor | undefined,
  freeRoots: ReadonlySet<string> = NO_ROOTS,
): void {
  if (!r) return;
  for (const segs of r.paths) redactAt(event, segs, 0, r.hash, freeRoots.has(segs[0]!));
}

const NO_ROOTS: ReadonlySet<string> = new Set();

function redactAt(
  node: unknown,
  segs: readonly string[],
  i: number,
  hash: (v: unknown) => string,
  anyType: boolean,
): void {
  if (node === null || typeof node !== 'object') return;
  if (Array.isArray(node)) {
    for (const item of node) redactAt(item, segs, i, hash, anyType);
    return;
  }
  const obj = node as Record<string, unknown>;
  const seg = segs[i]!;
  if (!Object.hasOwn(obj, seg)) return;
  if (i === segs.length - 1) {
    const v = obj[seg];
    if (v === null || v === undefined || v === MASK) return;
    if (typeof v === 'string' || anyType) obj[seg] = hash(v);
    return;
  }
  redactAt(obj[seg], segs, i + 1, hash, anyType);
}
