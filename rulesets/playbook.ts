// Playbook documents (CONTRACT §4): the zod schema the API validates uploads with and the
// worker re-checks at case start, plus the small pure helpers the case workflow needs to run
// one (step conditions, dotted paths, durations, matching).
//
// The condition evaluator here is deliberately tiny and separate from the ruleset engine's:
// workflow code runs in Temporal's sandbox, where jsonpath-plus cannot be bundled (its Node
// build imports node:vm), and playbook conditions only ever need simple dotted paths. The
// expression shapes and the comparison semantics (CONTRACT §1, semantic 7) are the same.
import { z } from 'zod';

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

// ---- schema ------------------------------------------------------------------------------------

const Path = z.string().refine(isSimplePath, {
  message: 'a simple JSONPath like $.transaction.amount (dotted names and [n] indexes only)',
});
const Ident = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, dot, dash or underscore');
const Duration = z.string().refine((s) => parseDuration(s) !== undefined, {
  message: 'a duration like "250ms", "30s", "15m", "72h" or "7d" (at most 366d)',
});
const Json: z.ZodType<unknown> = z.unknown();

/**
 * `{ key: body }` with exactly one key among `shapes`: each body is parsed by its own schema,
 * so an issue points at `steps[2].ticket.action_id` instead of a union's "invalid input".
 */
function oneKeyOf<T>(
  what: string,
  shapes: Record<string, z.ZodType>,
  refused: Record<string, string> = {},
): z.ZodType<T> {
  const names = Object.keys(shapes);
  return z.unknown().transform((input, ctx) => {
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      ctx.issues.push({ code: 'custom', message: `a ${what} object`, input });
      return z.NEVER;
    }
    const keys = Object.keys(input);
    const key = keys[0];
    if (keys.length !== 1 || key === undefined) {
      ctx.issues.push({
        code: 'custom',
        message: `a ${what} has exactly one key, one of: ${names.join(', ')}`,
        input,
      });
      return z.NEVER;
    }
    const schema = Object.hasOwn(shapes, key) ? shapes[key] : undefined;
    if (!schema) {
      const why = Object.hasOwn(refused, key) ? refused[key] : undefined;
      ctx.issues.push({
        code: 'custom',
        path: [key],
        message: why ?? `unknown ${what} "${key}"; expected one of: ${names.join(', ')}`,
        input,
      });
      return z.NEVER;
    }
    const r = schema.safeParse((input as Record<string, unknown>)[key]);
    if (!r.success) {
      for (const issue of r.error.issues) {
        ctx.issues.push({ ...issue, path: [key, ...issue.path], input } as never);
      }
      return z.NEVER;
    }
    return { [key]: r.data } as T;
  });
}

const NumberCmp = z.strictObject({ path: Path, value: z.number().refine(Number.isFinite) });
const JsonCmp = z.strictObject({ path: Path, value: Json });

export const ConditionSchema: z.ZodType<Condition> = z.lazy(() =>
  oneKeyOf<Condition>(
    'condition',
    {
      eq: JsonCmp,
      neq: JsonCmp,
      lt: NumberCmp,
      lte: NumberCmp,
      gt: NumberCmp,
      gte: NumberCmp,
      in: z.strictObject({ path: Path, values: z.array(Json).min(1) }),
      and: z.array(ConditionSchema).min(1),
      or: z.array(ConditionSchema).min(1),
      not: ConditionSchema,
    },
    {
      velocity:
        'velocity terms belong in rulesets: a playbook condition reads the case, it cannot count',
    },
  ),
);

const IntegrationAction = z.strictObject({ integration: Ident, action_id: Ident });
const ConditionalAction = z.strictObject({
  integration: Ident,
  action_id: Ident,
  condition: ConditionSchema.optional(),
});

const BASE_STEPS = {
  enrich: z.strictObject({ integration: Ident, backend_id: Ident }),
  ticket: IntegrationAction,
  alert: ConditionalAction,
  action: ConditionalAction,
  blacklist_add: z.strictObject({
    field_path: Path,
    ttl_seconds: z
      .int()
      .positive()
      .max(10 * 366 * 86_400)
      .optional(),
  }),
  workflow: z
    .union([Ident, z.strictObject({ name: Ident })])
    .transform((w) => (typeof w === 'string' ? w : w.name)),
};

const WAIT = {
  wait_for_resolution: z.strictObject({
    timeout: Duration,
    on_timeout: z.enum(['escalate', 'accept', 'reject']).default('escalate'),
  }),
};

const NOT_HERE =
  'wait_for_resolution belongs in `steps`: on_resolution and after_decision run after it';

const Step = oneKeyOf<PlaybookStep>('step', { ...BASE_STEPS, ...WAIT });
const LaterStep = oneKeyOf<PlaybookStep>('step', BASE_STEPS, { wait_for_resolution: NOT_HERE });

export const PlaybookSchema: z.ZodType<Playbook> = z
  .strictObject({
    name: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, dot, dash or underscore'),
    description: z.string().max(2000).optional(),
    on: z.strictObject({
      decision: z
        .array(
          z.enum(['REVIEW', 'BLOCK'], {
            message: 'only REVIEW and BLOCK decisions reach playbooks',
          }),
        )
        .min(1),
      contexts: z.array(z.string().min(1).max(100)).optional(),
    }),
    steps: z.array(Step).max(50),
    on_resolution: z
      .strictObject({
        reject: z.array(LaterStep).max(50).optional(),
        accept: z.array(LaterStep).max(50).optional(),
      })
      .optional(),
    after_decision: z.array(LaterStep).max(50).optional(),
    retry: z
      .strictObject({
        initial_interval: Duration.optional(),
        backoff: z.number().min(1).max(10).optional(),
        maximum_interval: Duration.optional(),
        maximum_attempts: z.int().min(1).max(1000).optional(),
      })
      .optional(),
  })
  .superRefine((pb, ctx) => {
    const waits = pb.steps.flatMap((s, i) => ('wait_for_resolution' in s ? [i] : []));
    for (const i of waits.slice(1)) {
      ctx.addIssue({
        code: 'custom',
        path: ['steps', i, 'wait_for_resolution'],
        message: 'a playbook waits for its resolution once',
      });
    }
    const r = pb.retry;
    const initial = r?.initial_interval ? parseDuration(r.initial_interval) : undefined;
    const max = r?.maximum_interval ? parseDuration(r.maximum_interval) : undefined;
    if (initial !== undefined && max !== undefined && max < initial) {
      ctx.addIssue({
        code: 'custom',
        path: ['retry', 'maximum_interval'],
        message: 'maximum_interval is shorter than initial_interval',
      });
    }
  });

/** `['steps', 2, 'ticket', 'action_id']` → `steps[2].ticket.action_id`. */
export function formatIssuePath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

export function parsePlaybook(input: unknown): ParsePlaybookResult {
  const r = PlaybookSchema.safeParse(input);
  if (r.success) return { ok: true, playbook: r.data };
  return {
    ok: false,
    error: {
      error: 'invalid_playbook',
      issues: r.error.issues.map((i) => ({ path: formatIssuePath(i.path), message: i.message })),
    },
  };
}
