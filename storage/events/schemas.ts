// The published event values, versioned by their `schema` field, and the functions that build
// them from what the rest of Vigil holds. Builders never throw and never let a raw credential,
// a secret-looking key or an oversized field through: whatever the input, the result parses with
// its schema (docs/events.md lists every field and limit). A change that would break a consumer
// is a new version (`vigil.decision/2`), published beside the old one for a while.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type {
  BackendResultTrace,
  DecisionOutcome,
  DegradedReason,
  EvaluationType,
  RuleTrace,
} from '../../rulesets/ports.ts';
import {
  Budget,
  DEFAULT_LIMITS,
  type EventLimits,
  type Json,
  OMIT,
  type Redactor,
  applyRedaction,
  compileRedaction,
  jsonStringBytes,
  redactReserve,
  sanitize,
  truncateString,
} from './sanitize.ts';

export const DECISION_SCHEMA = 'vigil.decision/1';
export const REQUEST_SCHEMA = 'vigil.request/1';
export const ACTION_SCHEMA = 'vigil.action/1';

// --- Schemas (what consumers parse) ----------------------------------------------------------

const Outcome = z.enum(['ALLOW', 'REVIEW', 'BLOCK']);
const DecisionOutcomeSchema = z.enum(['ALLOW', 'REVIEW', 'BLOCK', 'PROVISIONAL']);
const JsonObject = z.record(z.string(), z.json());
const Truncated = z.array(z.string()).optional();
const IsoTime = z.iso.datetime({ offset: true });

export const RuleTraceEvent = z.object({
  rule_id: z.string(),
  /** matched | not_matched | skipped | insufficient_context | error | not_evaluated | disabled | pending */
  result: z.string(),
  action: Outcome.optional(),
  reason: z.string().optional(),
  shadow: z.literal(true).optional(),
});

export const BackendResultEvent = z.object({
  rule_id: z.string(),
  integration: z.string(),
  backend_id: z.string(),
  /** ok | insufficient_context | error | circuit_open | pending | not_called */
  status: z.string(),
  outcome: Outcome.optional(),
  missing: z.array(z.string()).optional(),
  error: z.string().optional(),
  on_error: z.enum(['allow', 'block', 'review']).optional(),
  latency_ms: z.number().optional(),
  shadow: z.literal(true).optional(),
});

export const DeviceEvent = z.object({
  ip: z.string().optional(),
  fingerprint: z.string().optional(),
  session: z.string().optional(),
  user_agent: z.string().optional(),
});

export const DecisionEventSchema = z.object({
  schema: z.literal(DECISION_SCHEMA),
  /** Unique per published event: a consumer drops a redelivered one by it (delivery is at-least-once). */
  event_id: z.string(),
  id: z.string(),
  decision: DecisionOutcomeSchema,
  /** The outcome an async backend rule settled on (CONTRACT §1.10); null until then. */
  final_decision: Outcome.nullable(),
  context: z.string(),
  ruleset_id: z.string().nullable(),
  credential_fingerprint: z.string().nullable(),
  rules: z.array(RuleTraceEvent),
  backend_results: z.array(BackendResultEvent),
  degraded: z.array(z.string()),
  has_errors: z.boolean(),
  evaluation_type: z.enum(['RULE_ENGINE', 'BACKEND', 'COMBINED']),
  workflow_id: z.string().nullable(),
  elapsed_ms: z.number(),
  session: z.string().nullable(),
  /** api | proxy | authz */
  source: z.string().nullable(),
  occurred_at: IsoTime,
  transaction: JsonObject.nullable(),
  customer: JsonObject.nullable(),
  device: DeviceEvent.nullable(),
  /** Only when the sink is configured to include it. */
  metadata: z.record(z.string(), z.string()).optional(),
  truncated: Truncated,
});
export type DecisionEvent = z.infer<typeof DecisionEventSchema>;

export const RequestEventSchema = z.object({
  schema: z.literal(REQUEST_SCHEMA),
  event_id: z.string(),
  method: z.string(),
  /** Without the query string. */
  path: z.string(),
  route: z.string(),
  context: z.string().nullable(),
  mode: z.enum(['active', 'passive']).nullable(),
  status: z.number().int(),
  decision_id: z.string().nullable(),
  decision: DecisionOutcomeSchema.nullable(),
  /** error | timeout | overload: why the request went through without a decision. */
  fail_open: z.string().nullable(),
  ip: z.string().nullable(),
  session: z.string().nullable(),
  elapsed_ms: z.number(),
  /** Paths of the decision context left out as invalid (e.g. a negative amount). */
  dropped: z.array(z.string()),
  occurred_at: IsoTime,
  truncated: Truncated,
});
export type RequestEventValue = z.infer<typeof RequestEventSchema>;

export const ActionEventSchema = z.object({
  schema: z.literal(ACTION_SCHEMA),
  event_id: z.string(),
  workflow_id: z.string(),
  step: z.string(),
  /** completed | failed | skipped | escalated | resolved | closed */
  status: z.string(),
  attempts: z.number().int().nonnegative(),
  integration: z.string().nullable(),
  action_id: z.string().nullable(),
  decision_id: z.string().nullable(),
  error: z.object({ type: z.string(), message: z.string() }).nullable(),
  final_decision: Outcome.nullable(),
  occurred_at: IsoTime,
  truncated: Truncated,
});
export type ActionEventValue = z.infer<typeof ActionEventSchema>;

export const EVENT_SCHEMAS = {
  [DECISION_SCHEMA]: DecisionEventSchema,
  [REQUEST_SCHEMA]: RequestEventSchema,
  [ACTION_SCHEMA]: ActionEventSchema,
} as const;

/** A line of the event file. */
export const EventFileLine = z.object({
  topic: z.string(),
  key: z.string(),
  value: z.record(z.string(), z.unknown()),
  ts: IsoTime,
});
export type EventFileLine = z.infer<typeof EventFileLine>;

/** Parses a value by its `schema` field; unknown schemas (newer versions) are not errors for a reader. */
export function parseEventValue(value: unknown):
  | {
      ok: true;
      schema: keyof typeof EVENT_SCHEMAS;
      value: DecisionEvent | RequestEventValue | ActionEventValue;
    }
  | { ok: false; schema: string | null; error: string } {
  const schema =
    value !== null && typeof value === 'object'
      ? (value as { schema?: unknown }).schema
      : undefined;
  if (typeof schema !== 'string' || !(schema in EVENT_SCHEMAS))
    return {
      ok: false,
      schema: typeof schema === 'string' ? schema : null,
      error: 'unknown schema',
    };
  const s = schema as keyof typeof EVENT_SCHEMAS;
  const r = EVENT_SCHEMAS[s].safeParse(value);
  return r.success
    ? { ok: true, schema: s, value: r.data }
    : { ok: false, schema: s, error: z.prettifyError(r.error) };
}

// --- Inputs (what the rest of Vigil holds) ---------------------------------------------------

/** The stored decision (decisions/ports.ts DecisionRecord); only these fields are read. */
export interface DecisionEventInput {
  response: {
    id: string;
    decision: DecisionOutcome;
    context: string;
    ruleset_id: string | null;
    credential_fingerprint: string | null;
    rules: readonly RuleTrace[];
    backend_results: readonly BackendResultTrace[];
    has_errors: boolean;
    degraded: readonly DegradedReason[];
    evaluation_type: EvaluationType;
    workflow_id: string | null;
    elapsed_ms: number;
    final_decision?: DecisionOutcome | undefined;
  };
  /** The decision context (the request body, credential already replaced by its fingerprint). */
  context: Record<string, unknown>;
  session: string | null;
  created_at: string;
}

/** One monitored proxy request (proxy/inline/types.ts RequestEvent). */
export interface RequestEventInput {
  method: string;
  path: string;
  route: string;
  context?: string | null;
  mode?: 'active' | 'passive' | null;
  status: number;
  decision_id: string | null;
  decision: DecisionOutcome | null;
  fail_open?: string | null;
  ip: string | null;
  elapsed_ms: number;
  session: string | null;
  dropped?: readonly string[] | undefined;
  occurred_at?: string;
}

/** One workflow step outcome (activities/deps.ts ActionEvent). */
export interface ActionEventInput {
  workflow_id: string;
  step: string;
  status: string;
  attempts: number;
  integration?: string | undefined;
  action_id?: string | undefined;
  decision_id?: string | undefined;
  error?: { type: string; message: string } | undefined;
  final_decision?: DecisionOutcome | undefined;
  occurred_at: string;
}

export interface BuildOptions {
  /** `$.customer.email`-style paths whose values are replaced by `sha256:<hex>`; or compiled once with compileRedaction. */
  redact?: readonly string[] | Redactor | undefined;
  /** Where the decision came from: api | proxy | authz. */
  source?: string | undefined;
  /** Publish the context's `metadata` map too (off by default: see docs/events.md). */
  includeMetadata?: boolean | undefined;
  limits?: Partial<EventLimits> | undefined;
  /** For tests: the event id and the time used when the input has none. */
  eventId?: () => string;
  now?: () => number;
}

// --- Builders --------------------------------------------------------------------------------

const redactorCache = new Map<string, Redactor>();

function redactorOf(r: BuildOptions['redact']): Redactor | undefined {
  if (!r) return undefined;
  if (!Array.isArray(r)) return r as Redactor;
  const paths = r as readonly string[];
  if (paths.length === 0) return undefined;
  const k = paths.join('\n');
  let c = redactorCache.get(k);
  if (!c) {
    c = compileRedaction(paths);
    // Settings are few; a caller building paths per event would otherwise grow this forever.
    if (redactorCache.size >= 64) redactorCache.clear();
    redactorCache.set(k, c);
  }
  return c;
}

function limitsOf(l: Partial<EventLimits> | undefined): EventLimits {
  return l ? { ...DEFAULT_LIMITS, ...l } : DEFAULT_LIMITS;
}

/** Common start of every builder; a bad redact path is a configuration error, reported once per call. */
function begin(opts: BuildOptions): { b: Budget; redactor: Redactor | undefined } {
  let redactor: Redactor | undefined;
  let extra = 0;
  try {
    redactor = redactorOf(opts.redact);
    extra = redactReserve(redactor);
  } catch {
    // Invalid paths: nothing is redacted by them; compileRedaction at startup reports them.
    redactor = undefined;
  }
  return { b: new Budget(limitsOf(opts.limits), extra), redactor };
}

/** A required string field: coerced, truncated, always kept. */
function str(v: unknown, path: string, b: Budget, fallback = ''): string {
  let raw = fallback;
  if (typeof v === 'string') raw = v;
  else if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint')
    raw = String(v);
  // Anything else in a string field is malformed: the fallback stands in for it, noted.
  else if (v !== null && v !== undefined) b.note(path);
  const s = truncateString(raw, b.limits.maxStringChars);
  if (s !== raw) b.note(path);
  b.force(jsonStringBytes(s) + path.length + 4);
  return s;
}

/**
 * str() at `${p}${key}`, without building that path for a string that fits (the common case:
 * every trace of every published decision comes through here). Same budget, same notes.
 */
function fitStr(v: unknown, p: string, key: string, b: Budget, fallback = ''): string {
  if (typeof v === 'string' && v.length <= b.limits.maxStringChars) {
    b.force(jsonStringBytes(v) + p.length + key.length + 4);
    return v;
  }
  return str(v, `${p}${key}`, b, fallback);
}

function nullableStr(v: unknown, path: string, b: Budget): string | null {
  if (v === null || v === undefined) {
    b.force(path.length + 8);
    return null;
  }
  return str(v, path, b);
}

function num(v: unknown, path: string, b: Budget): number {
  b.force(path.length + 28);
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  b.note(path);
  return 0;
}

function oneOf<T extends string>(
  v: unknown,
  allowed: readonly T[],
  path: string,
  b: Budget,
): T | null {
  b.force(path.length + 20);
  if (v === null || v === undefined) return null;
  if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
  b.note(path);
  return null;
}

const OUTCOMES = ['ALLOW', 'REVIEW', 'BLOCK'] as const;
const DECISION_OUTCOMES = ['ALLOW', 'REVIEW', 'BLOCK', 'PROVISIONAL'] as const;
const EVAL_TYPES = ['RULE_ENGINE', 'BACKEND', 'COMBINED'] as const;
const ON_ERROR = ['allow', 'block', 'review'] as const;

/** An optional string field of a trace: kept only when it is a string and fits. */
function optStr(
  out: Record<string, unknown>,
  key: string,
  v: unknown,
  path: string,
  b: Budget,
): void {
  if (typeof v !== 'string') return;
  const s = sanitize(v, `${path}.${key}`, 0, b);
  if (typeof s === 'string' && b.take(key.length + 4)) out[key] = s;
}

/** Items of a known-shape array, while they fit; the rest are cut and noted. */
function list<T>(
  v: unknown,
  path: string,
  b: Budget,
  item: (x: unknown, p: string) => T | null,
): T[] {
  b.force(path.length + 6);
  if (!Array.isArray(v)) {
    if (v !== undefined && v !== null) b.note(path);
    return [];
  }
  const n = Math.min(v.length, b.limits.maxArrayItems);
  if (n < v.length) b.note(path);
  const out: T[] = [];
  for (let i = 0; i < n; i++) {
    const before = b.left;
    const x = item(v[i], `${path}[${i}]`);
    if (x === null) {
      b.note(path);
      continue;
    }
    if (b.left < 0) {
      // The item did not fit: give its bytes back and stop here.
      b.left = before;
      b.note(path);
      break;
    }
    out.push(x);
  }
  return out;
}

function ruleTrace(x: unknown, p: string, b: Budget): z.infer<typeof RuleTraceEvent> | null {
  if (x === null || typeof x !== 'object') return null;
  const r = x as Record<string, unknown>;
  const out: Record<string, unknown> = {
    rule_id: fitStr(r.rule_id, p, '.rule_id', b),
    result: fitStr(r.result, p, '.result', b, 'error'),
  };
  if (typeof r.action === 'string' && (OUTCOMES as readonly string[]).includes(r.action))
    out.action = r.action;
  optStr(out, 'reason', r.reason, p, b);
  if (r.shadow === true) out.shadow = true;
  b.force(40);
  return out as z.infer<typeof RuleTraceEvent>;
}

/**
 * A rule's entry in the event, kept per engine trace entry. The engine shares one trace entry
 * per rule and outcome across decisions (compile.ts builds them once per ruleset version), and
 * turning 20 of them into event entries (strings measured for the budget, reasons sanitized,
 * a path per item) was a third of building a decision event. Only frozen entries are kept: the
 * engine freezes the ones it shares, while a backend rule's entry or a record read back from the
 * store is a new object each time, and keeping those (a WeakMap entry per rule and decision) made
 * a 20-rule event cost ~27 µs to build instead of ~10. An entry is kept only when it was
 * built whole (nothing cut or noted), and reused only with the same string limit and while the
 * budget has room for all of it; kept entries are frozen and shared by the events that use
 * them, so a redaction reaching into `rules` builds its entries afresh.
 */
interface KeptTrace {
  out: z.infer<typeof RuleTraceEvent>;
  bytes: number;
  maxStringChars: number;
  /** The budget counts the item's path too; an engine entry comes at one index anyway. */
  index: number;
}
const keptTraces = new WeakMap<object, KeptTrace>();

function ruleTraces(
  v: unknown,
  b: Budget,
  redactor: Redactor | undefined,
): z.infer<typeof RuleTraceEvent>[] {
  if (redactor?.paths.some((segs) => segs[0] === 'rules')) {
    return list(v, '$.rules', b, (x, p) => ruleTrace(x, p, b));
  }
  // What list() does, with kept entries used where they fit.
  b.force('$.rules'.length + 6);
  if (!Array.isArray(v)) {
    if (v !== undefined && v !== null) b.note('$.rules');
    return [];
  }
  const n = Math.min(v.length, b.limits.maxArrayItems);
  if (n < v.length) b.note('$.rules');
  const maxChars = b.limits.maxStringChars;
  const out: z.infer<typeof RuleTraceEvent>[] = [];
  for (let i = 0; i < n; i++) {
    const x: unknown = v[i];
    const isObject = x !== null && typeof x === 'object';
    const kept = isObject ? keptTraces.get(x) : undefined;
    if (
      kept !== undefined &&
      kept.index === i &&
      kept.maxStringChars === maxChars &&
      kept.bytes <= b.left
    ) {
      b.left -= kept.bytes;
      out.push(kept.out);
      continue;
    }
    const before = b.left;
    const cuts = b.cuts;
    const t = ruleTrace(x, `$.rules[${i}]`, b);
    if (t === null) {
      b.note('$.rules');
      continue;
    }
    if (b.left < 0) {
      b.left = before;
      b.note('$.rules');
      break;
    }
    if (isObject && b.cuts === cuts && Object.isFrozen(x)) {
      keptTraces.set(x, {
        out: Object.freeze(t),
        bytes: before - b.left,
        maxStringChars: maxChars,
        index: i,
      });
    }
    out.push(t);
  }
  return out;
}

function backendTrace(x: unknown, p: string, b: Budget): z.infer<typeof BackendResultEvent> | null {
  if (x === null || typeof x !== 'object') return null;
  const r = x as Record<string, unknown>;
  const out: Record<string, unknown> = {
    rule_id: str(r.rule_id, `${p}.rule_id`, b),
    integration: str(r.integration, `${p}.integration`, b),
    backend_id: str(r.backend_id, `${p}.backend_id`, b),
    status: str(r.status, `${p}.status`, b, 'error'),
  };
  if (typeof r.outcome === 'string' && (OUTCOMES as readonly string[]).includes(r.outcome))
    out.outcome = r.outcome;
  if (Array.isArray(r.missing)) {
    const missing = list(r.missing, `${p}.missing`, b, (m, mp) =>
      typeof m === 'string' ? str(m, mp, b) : null,
    );
    out.missing = missing;
  }
  optStr(out, 'error', r.error, p, b);
  if (typeof r.on_error === 'string' && (ON_ERROR as readonly string[]).includes(r.on_error))
    out.on_error = r.on_error;
  if (typeof r.latency_ms === 'number' && Number.isFinite(r.latency_ms))
    out.latency_ms = r.latency_ms;
  if (r.shadow === true) out.shadow = true;
  b.force(80);
  return out as z.infer<typeof BackendResultEvent>;
}

/** A free-form context object (transaction, customer): sanitized, or null when absent or cut. */
function freeObject(v: unknown, path: string, b: Budget): Record<string, Json> | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'object' || Array.isArray(v)) {
    b.note(path);
    return null;
  }
  const s = sanitize(v, path, 1, b);
  if (s === OMIT || s === null || typeof s !== 'object' || Array.isArray(s)) return null;
  return s;
}

const DEVICE_FIELDS = ['ip', 'fingerprint', 'session', 'user_agent'] as const;

function device(v: unknown, b: Budget): z.infer<typeof DeviceEvent> | null {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    if (v !== null && v !== undefined) b.note('$.device');
    return null;
  }
  const d = v as Record<string, unknown>;
  const out: Record<string, string> = {};
  for (const f of DEVICE_FIELDS) {
    const x = d[f];
    if (x === undefined || x === null) continue;
    if (typeof x !== 'string' && typeof x !== 'number') {
      b.note(`$.device.${f}`);
      continue;
    }
    const s = sanitize(String(x), `$.device.${f}`, 1, b);
    if (typeof s === 'string' && b.take(f.length + 4)) out[f] = s;
  }
  return out;
}

function metadataMap(v: unknown, b: Budget): Record<string, string> | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const s = sanitize(v, '$.metadata', 1, b);
  if (s === OMIT || s === null || typeof s !== 'object' || Array.isArray(s)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(s)) {
    if (typeof x === 'string') out[k] = x;
    else if (typeof x === 'number' || typeof x === 'boolean') out[k] = String(x);
  }
  return out;
}

// The last time re-emitted, and what it became: the decisions answered in one millisecond share
// their created_at, and parsing and formatting it again was ~2% of an event's build.
let lastIso = '';
let lastCanonical = '';

function isoTime(v: unknown, path: string, b: Budget, now: () => number): string {
  b.force(40);
  if (typeof v === 'string') {
    if (v === lastIso) return lastCanonical;
    const t = Date.parse(v);
    if (Number.isFinite(t)) {
      // Re-emitted in the one canonical form so every consumer parses it the same way.
      lastCanonical = new Date(t).toISOString();
      lastIso = v;
      return lastCanonical;
    }
  }
  if (v !== undefined) b.note(path);
  return new Date(now()).toISOString();
}

const FREE_ROOTS: ReadonlySet<string> = new Set(['transaction', 'customer']);

function finish<T extends Record<string, unknown>>(
  event: T,
  b: Budget,
  redactor: Redactor | undefined,
): T {
  applyRedaction(event, redactor, FREE_ROOTS);
  if (b.notes.length > 0) (event as Record<string, unknown>).truncated = b.notes;
  return event;
}

/** The `vigil.decision/1` value for a decision (or its final outcome, when `final_decision` is set). */
export function decisionEvent(record: DecisionEventInput, opts: BuildOptions = {}): DecisionEvent {
  const { b, redactor } = begin(opts);
  const r = (record?.response ?? {}) as Partial<DecisionEventInput['response']>;
  const ctx: Record<string, unknown> =
    record?.context && typeof record.context === 'object' ? record.context : {};
  const now = opts.now ?? Date.now;
  const decision = oneOf(r.decision, DECISION_OUTCOMES, '$.decision', b);
  const evalType = oneOf(r.evaluation_type, EVAL_TYPES, '$.evaluation_type', b);
  // Core fields first: they are small and bounded, and always kept whole.
  const event: DecisionEvent = {
    schema: DECISION_SCHEMA,
    event_id: (opts.eventId ?? randomUUID)(),
    id: str(r.id, '$.id', b),
    // An unknown outcome cannot come from the engine; REVIEW is the conservative reading.
    decision: decision ?? 'REVIEW',
    final_decision: oneOf(
      r.final_decision === 'PROVISIONAL' ? undefined : r.final_decision,
      OUTCOMES,
      '$.final_decision',
      b,
    ),
    context: str(r.context, '$.context', b, 'default'),
    ruleset_id: nullableStr(r.ruleset_id, '$.ruleset_id', b),
    credential_fingerprint: nullableStr(r.credential_fingerprint, '$.credential_fingerprint', b),
    rules: [],
    backend_results: [],
    degraded: [],
    has_errors: r.has_errors === true,
    evaluation_type: evalType ?? 'RULE_ENGINE',
    workflow_id: nullableStr(r.workflow_id, '$.workflow_id', b),
    elapsed_ms: num(r.elapsed_ms, '$.elapsed_ms', b),
    session: nullableStr(record?.session, '$.session', b),
    source: nullableStr(opts.source, '$.source', b),
    occurred_at: isoTime(record?.created_at, '$.occurred_at', b, now),
    transaction: null,
    customer: null,
    device: null,
  };
  event.degraded = list(r.degraded, '$.degraded', b, (x, p) =>
    typeof x === 'string' ? str(x, p, b) : null,
  );
  // Then the traces, then the context, in the order a consumer would miss them least.
  event.rules = ruleTraces(r.rules, b, redactor);
  event.backend_results = list(r.backend_results, '$.backend_results', b, (x, p) =>
    backendTrace(x, p, b),
  );
  event.device = device(ctx.device, b);
  event.transaction = freeObject(ctx.transaction, '$.transaction', b);
  event.customer = freeObject(ctx.customer, '$.customer', b);
  if (opts.includeMetadata) {
    const m = metadataMap(ctx.metadata, b);
    if (m) event.metadata = m;
  }
  return finish(event, b, redactor);
}

/** The `vigil.request/1` value for one monitored proxy request. */
export function requestEvent(e: RequestEventInput, opts: BuildOptions = {}): RequestEventValue {
  const { b, redactor } = begin(opts);
  const x = (e ?? {}) as Partial<RequestEventInput>;
  const now = opts.now ?? Date.now;
  const rawPath = typeof x.path === 'string' ? x.path : '';
  const q = rawPath.indexOf('?');
  const status = num(x.status, '$.status', b);
  const event: RequestEventValue = {
    schema: REQUEST_SCHEMA,
    event_id: (opts.eventId ?? randomUUID)(),
    method: str(x.method, '$.method', b),
    // The query string may carry anything (emails, tokens): never published.
    path: str(q >= 0 ? rawPath.slice(0, q) : rawPath, '$.path', b),
    route: str(x.route, '$.route', b),
    context: nullableStr(x.context, '$.context', b),
    mode: oneOf(x.mode, ['active', 'passive'] as const, '$.mode', b),
    status: Number.isInteger(status) ? status : 0,
    decision_id: nullableStr(x.decision_id, '$.decision_id', b),
    decision: oneOf(x.decision, DECISION_OUTCOMES, '$.decision', b),
    fail_open: nullableStr(x.fail_open, '$.fail_open', b),
    ip: nullableStr(x.ip, '$.ip', b),
    session: nullableStr(x.session, '$.session', b),
    elapsed_ms: num(x.elapsed_ms, '$.elapsed_ms', b),
    dropped: Array.isArray(x.dropped)
      ? x.dropped.slice(0, 32).map((p, i) => str(p, `$.dropped[${i}]`, b))
      : [],
    occurred_at: isoTime(x.occurred_at, '$.occurred_at', b, now),
  };
  return finish(event, b, redactor);
}

/** The `vigil.action/1` value for one workflow step outcome. */
export function actionEvent(e: ActionEventInput, opts: BuildOptions = {}): ActionEventValue {
  const { b, redactor } = begin(opts);
  const x = (e ?? {}) as Partial<ActionEventInput>;
  const now = opts.now ?? Date.now;
  const attempts = num(x.attempts, '$.attempts', b);
  const err = x.error;
  const event: ActionEventValue = {
    schema: ACTION_SCHEMA,
    event_id: (opts.eventId ?? randomUUID)(),
    workflow_id: str(x.workflow_id, '$.workflow_id', b),
    step: str(x.step, '$.step', b),
    status: str(x.status, '$.status', b, 'failed'),
    attempts: Number.isInteger(attempts) && attempts >= 0 ? attempts : 0,
    integration: nullableStr(x.integration, '$.integration', b),
    action_id: nullableStr(x.action_id, '$.action_id', b),
    decision_id: nullableStr(x.decision_id, '$.decision_id', b),
    error:
      err && typeof err === 'object'
        ? {
            type: str(err.type, '$.error.type', b, 'error'),
            message: str(err.message, '$.error.message', b),
          }
        : null,
    final_decision: oneOf(
      x.final_decision === 'PROVISIONAL' ? undefined : x.final_decision,
      OUTCOMES,
      '$.final_decision',
      b,
    ),
    occurred_at: isoTime(x.occurred_at, '$.occurred_at', b, now),
  };
  return finish(event, b, redactor);
}

// --- Keys ------------------------------------------------------------------------------------

/** A session's decisions share a key, so they stay in order on one partition; the decision id without one. */
export function decisionKey(record: { session: string | null; response: { id: string } }): string {
  return record.session ?? record.response.id;
}

export function requestKey(e: {
  session: string | null;
  decision_id: string | null;
  ip: string | null;
  path: string;
}): string {
  return e.session ?? e.decision_id ?? e.ip ?? e.path;
}

/**
 * Keyed like the decisions (CONTRACT §6): the session, or the decision id without one, read off
 * the case's workflow id (`session-{session}`, `decision-{id}`), so a session's decisions and
 * actions share a key.
 */
export function actionKey(e: { workflow_id: string }): string {
  const w = e.workflow_id;
  if (w.startsWith('session-')) return w.slice('session-'.length);
  if (w.startsWith('decision-')) return w.slice('decision-'.length);
  return w;
}
