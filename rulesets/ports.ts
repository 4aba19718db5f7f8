// The seams between the pure engine and the world. The engine only sees these interfaces;
// storage/ (counters, blacklist) and integrations/ (backends) implement them, decisions/
// wires them. Types only: nothing here runs.

export type Outcome = 'ALLOW' | 'REVIEW' | 'BLOCK';
export type DecisionOutcome = Outcome | 'PROVISIONAL';

export type RuleResult =
  | 'matched'
  | 'not_matched'
  | 'skipped'
  | 'insufficient_context'
  | 'error'
  | 'not_evaluated'
  | 'disabled'
  | 'pending';

export type DegradedReason =
  | 'counter_unavailable'
  | 'blacklist_unavailable'
  | 'backend_timeout'
  | 'backend_error'
  | 'backend_circuit_open'
  | 'deadline_exceeded'
  // Set by the proxy's decide, not the engine: values of the client's request were invalid
  // and left out of the context (decisions/extracted.ts).
  | 'context_values_dropped';

export interface RuleTrace {
  rule_id: string;
  result: RuleResult;
  /** The action the rule took (matched) or would take; for backend rules, the mapped answer. */
  action?: Outcome;
  reason?: string;
  /** Present (true) for rules with `live: false`: evaluated and reported, never deciding. */
  shadow?: true;
}

export type BackendStatus =
  'ok' | 'insufficient_context' | 'error' | 'circuit_open' | 'pending' | 'not_called';

export interface BackendResultTrace {
  rule_id: string;
  integration: string;
  backend_id: string;
  status: BackendStatus;
  outcome?: Outcome;
  missing?: string[];
  /** Stable error code: timeout | connection | http_status | unmappable | egress_refused | … */
  error?: string;
  on_error?: 'allow' | 'block' | 'review';
  latency_ms?: number;
  shadow?: true;
}

/** A velocity count the engine needs: one per (field value, window[, distinct path]). */
export interface CounterRequest {
  /** The countable path, e.g. `$.credential_fingerprint`. */
  field: string;
  /** The value at that path in this decision (stringified JSON scalar). */
  value: string;
  /** Every window (ms) some rule asks for on this field. */
  windowsMs: readonly number[];
  /** Distinct-value counts asked for on this field: one entry per distinct path. */
  distinct: { path: string; value: string | undefined; windowsMs: readonly number[] }[];
}

/** Counts as the counter store returned them, the current decision included. */
export interface Counts {
  get(field: string, value: string, windowMs: number, distinctPath?: string): number | undefined;
}

/**
 * The counter store: records the decision under every requested key and returns the counts,
 * in one round trip, idempotently per decision id. `record: false` (dry run) returns the counts
 * as if the decision were counted, without storing it. `repeatable: false` says the id cannot
 * come again (a fresh random id, not an Idempotency-Key's): a store may then skip remembering
 * it for deduplication; the default is true. Throws (or rejects) when unavailable; the caller
 * turns that into `counter_unavailable`.
 */
export interface CounterStore {
  count(
    decisionId: string,
    nowMs: number,
    requests: CounterRequest[],
    opts: CountOptions,
  ): Promise<Counts>;
  close(): Promise<void>;
}

export interface CountOptions {
  record: boolean;
  repeatable?: boolean;
}

/** The blacklist as the engine sees it: an in-memory index, synchronous. */
export interface BlacklistLookup {
  has(fieldPath: string, value: string, nowMs: number): boolean;
}

export interface BackendCallRequest {
  integration: string;
  backend_id: string;
  /** The decision context (metadata already removed by the caller). */
  context: unknown;
  /** Absolute deadline for this call, ms since epoch on the caller's clock. */
  deadlineMs: number;
  /** The rule's own timeout, ms; the callee takes min(rule, backend, deadline left). */
  timeoutMs: number | undefined;
  signal?: AbortSignal;
}

export type BackendCallResult =
  | { status: 'ok'; outcome: Outcome; response: unknown; latency_ms: number }
  | { status: 'insufficient_context'; missing: string[] }
  | { status: 'error'; error: string; latency_ms: number }
  | { status: 'circuit_open' };

export interface BackendCaller {
  call(req: BackendCallRequest): Promise<BackendCallResult>;
}

/**
 * How a decision was reached. RULE_ENGINE: no live backend rule took part (none was reached, or
 * each lacked context). BACKEND: a live backend rule took part (called, failed or left pending)
 * and no live condition or blacklist rule matched. COMBINED: both.
 */
export type EvaluationType = 'RULE_ENGINE' | 'BACKEND' | 'COMBINED';

/** An `async: true` backend rule left to the decision's workflow, with what it needs to run. */
export interface PendingBackend {
  rule_id: string;
  integration: string;
  backend_id: string;
  on_error: 'allow' | 'block' | 'review';
  timeout_ms?: number;
  shadow?: true;
}
