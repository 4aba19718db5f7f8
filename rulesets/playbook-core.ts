// The pure half of playbooks (CONTRACT §4): their types and the small helpers the case workflow
// needs to run one (step conditions, dotted paths, durations, matching). No zod here: workflow
// code is evaluated again in every new workflow's sandbox context, and the schemas' construction
// cost the worker ~6 ms per case opened. The schemas and the parser are in playbook.ts.
//
// The condition evaluator here is deliberately tiny and separate from the ruleset engine's:
// workflow code runs in Temporal's sandbox, where jsonpath-plus cannot be bundled (its Node
// build imports node:vm), and playbook conditions only ever need simple dotted paths. The
// expression shapes and the comparison semantics (CONTRACT §1, semantic 7) are the same.

export type Outcome = 'ALLOW' | 'REVIEW' | 'BLOCK';

export type Condition =
  | { eq: { path: string; value: unknown } }
  | { neq: { path: string; value: unknown } }
  | { lt: { path: string; value: number } }
  | { lte: { path: string; value: number } }
  | { gt: { path: string; value: number } }
  | { gte: { path: string; value: number } }
  | { in: { path: string; values: unknown[] } }
  | { and: Condition[] }
  | { or: Condition[] }
  | { not: Condition };

export interface RetrySpec {
  initial_interval?: string;
  backoff?: number;
  maximum_interval?: string;
  maximum_attempts?: number;
}

export type OnTimeout = 'escalate' | 'accept' | 'reject';
export type Resolution = 'accept' | 'reject';

export type PlaybookStep =
  | { enrich: { integration: string; backend_id: string } }
  | { ticket: { integration: string; action_id: string } }
  | { alert: { integration: string; action_id: string; condition?: Condition } }
  | { action: { integration: string; action_id: string; condition?: Condition } }
  | { blacklist_add: { field_path: string; ttl_seconds?: number } }
  | { workflow: string }
  | { wait_for_resolution: { timeout: string; on_timeout: OnTimeout } };

export type StepKind =
  'enrich' | 'ticket' | 'alert' | 'action' | 'blacklist_add' | 'workflow' | 'wait_for_resolution';

export interface Playbook {
  name: string;
  on: { decision: ('REVIEW' | 'BLOCK')[]; contexts?: string[] };
  steps: PlaybookStep[];
  on_resolution?: { reject?: PlaybookStep[]; accept?: PlaybookStep[] };
  after_decision?: PlaybookStep[];
  retry?: RetrySpec;
  description?: string;
}

/** A playbook as the store keeps it: its version is fixed for a case once the case loaded it. */
export interface LoadedPlaybook {
  name: string;
  version: number;
  document: Playbook;
}

export interface PlaybookIssue {
  path: string;
  message: string;
}

export interface InvalidPlaybook {
  error: 'invalid_playbook';
  issues: PlaybookIssue[];
}

export type ParsePlaybookResult =
  { ok: true; playbook: Playbook } | { ok: false; error: InvalidPlaybook };

/** What a playbook retries with when its document says nothing (the contract's example values). */
export const DEFAULT_RETRY: Required<RetrySpec> = {
  initial_interval: '1s',
  backoff: 2,
  maximum_interval: '5m',
  maximum_attempts: 20,
};

// ---- durations ---------------------------------------------------------------------------------

const DURATION_RE = /^(\d{1,9})(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
/** A year: longer waits are almost certainly a typo (72d for 72h). */
const MAX_DURATION_MS = 366 * UNIT_MS.d;

/** `"250ms" "30s" "15m" "72h" "7d"` → milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION_RE.exec(text);
  if (!m) return undefined;
  const ms = Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  return ms > 0 && ms <= MAX_DURATION_MS ? ms : undefined;
}

// ---- paths -------------------------------------------------------------------------------------

// `$.a.b-c.d[0]`: dotted segments (integration slugs carry dashes) and array indexes. No
// wildcards, filters or scripts: nothing in a playbook can run code or fan out.
const PATH_RE = /^\$(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*|\[\d{1,6}\])+$/;
const SEGMENT_RE = /\.([A-Za-z0-9_][A-Za-z0-9_-]*)|\[(\d{1,6})\]/g;

export function isSimplePath(path: string): boolean {
  return PATH_RE.test(path);
}

/** The value at a simple `$.a.b[0]` path, or undefined when any segment is missing. */
export function valueAt(data: unknown, path: string): unknown {
  if (!PATH_RE.test(path)) return undefined;
  let cur: unknown = data;
  for (const m of path.slice(1).matchAll(SEGMENT_RE)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    if (m[2] !== undefined) {
      if (!Array.isArray(cur)) return undefined;
      cur = cur[Number(m[2])];
    } else {
      if (Array.isArray(cur)) return undefined;
      const key = m[1] as string;
      if (!Object.hasOwn(cur, key)) return undefined;
      cur = (cur as Record<string, unknown>)[key];
    }
  }
  return cur;
}

// ---- conditions --------------------------------------------------------------------------------

/** Strict JSON equality: same type, same scalars, same keys and items, recursively. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return (
    ka.length === kb.length &&
    ka.every(
      (k) =>
        Object.hasOwn(b, k) &&
        jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]),
    )
  );
}

function present(v: unknown): boolean {
  return v !== undefined && v !== null;
}

/**
 * Evaluates a playbook condition against the case data. A missing or null path is false for
 * every operator, `neq` included; `lt/lte/gt/gte` compare numbers only (CONTRACT §1, 7).
 */
export function evaluateCondition(expr: Condition, data: unknown): boolean {
  if ('and' in expr) return expr.and.every((e) => evaluateCondition(e, data));
  if ('or' in expr) return expr.or.some((e) => evaluateCondition(e, data));
  if ('not' in expr) return !evaluateCondition(expr.not, data);
  if ('in' in expr) {
    const v = valueAt(data, expr.in.path);
    return present(v) && expr.in.values.some((x) => jsonEqual(v, x));
  }
  if ('eq' in expr) {
    const v = valueAt(data, expr.eq.path);
    return present(v) && jsonEqual(v, expr.eq.value);
  }
  if ('neq' in expr) {
    const v = valueAt(data, expr.neq.path);
    return present(v) && !jsonEqual(v, expr.neq.value);
  }
  const [op, cmp] = Object.entries(expr)[0] as [
    'lt' | 'lte' | 'gt' | 'gte',
    { path: string; value: number },
  ];
  const v = valueAt(data, cmp.path);
  if (typeof v !== 'number' || !Number.isFinite(v)) return false;
  switch (op) {
    case 'lt':
      return v < cmp.value;
    case 'lte':
      return v <= cmp.value;
    case 'gt':
      return v > cmp.value;
    case 'gte':
      return v >= cmp.value;
  }
}

// ---- matching ----------------------------------------------------------------------------------

/** A playbook runs for a decision when its outcome is listed and its context is (or none are). */
export function playbookMatches(pb: Playbook, outcome: string, context: string): boolean {
  if (!(pb.on.decision as string[]).includes(outcome)) return false;
  const contexts = pb.on.contexts;
  return !contexts || contexts.length === 0 || contexts.includes(context);
}

export function stepKind(step: PlaybookStep): StepKind {
  return Object.keys(step)[0] as StepKind;
}
