// Playbook documents (CONTRACT §4): the zod schema the API validates uploads with and the
// worker re-checks at case start. The types and the pure helpers a case runs with are in
// playbook-core.ts (re-exported here), which the workflow code imports instead.
import { z } from 'zod';
import {
  isSimplePath,
  parseDuration,
  type Condition,
  type ParsePlaybookResult,
  type Playbook,
  type PlaybookStep,
} from './playbook-core.ts';

export * from './playbook-core.ts';

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
      // An unknown key is named in the path, as integrations and rulesets do.
      issues: r.error.issues.flatMap((i) =>
        i.code === 'unrecognized_keys'
          ? i.keys.map((k) => ({
              path: formatIssuePath([...i.path, k]),
              message: `unknown key '${k}'`,
            }))
          : [{ path: formatIssuePath(i.path), message: i.message }],
      ),
    },
  };
}
