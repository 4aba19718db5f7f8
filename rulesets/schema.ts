// Ruleset documents as users write them (CONTRACT §2, §3), parsed once at upload. Everything is
// bounded, every object is strict (a misspelt key is an error, not a silently ignored rule), and
// every issue carries a path in the form users see in the API: `rules[3].condition.gt.path`.
//
// Rule-level shapes are zod schemas; condition expressions are checked by a small recursive
// validator instead, because "exactly one operator key per node" read through a zod union gives
// one vague issue at the node, while users need the issue at the operator that is wrong.
import { z } from 'zod';
import { parsePath } from './jsonpath.ts';
import type { Outcome } from './ports.ts';

export const LIMITS = {
  rules: 1_000,
  depth: 32,
  inValues: 10_000,
  /** Condition nodes and `in` values over the whole ruleset: bounds compile time and memory. */
  nodesPerRuleset: 50_000,
  inValuesPerRuleset: 200_000,
  andOrTerms: 256,
  idLength: 64,
  nameLength: 200,
  descriptionLength: 2_000,
  stringValueLength: 4_096,
  jsonValueNodes: 10_000,
  velocityFields: 32,
  blacklistFields: 16,
  groupMembers: 16,
  issues: 100,
  windowMs: 90 * 86_400_000,
  timeoutMs: 60_000,
  velocityThreshold: 1_000_000_000,
  memberWeight: 1_000_000,
  ttlSeconds: 10 * 365 * 86_400,
} as const;

export const DEFAULT_COUNTABLE_FIELDS = [
  '$.credential_fingerprint',
  '$.device.ip',
  '$.device.fingerprint',
  '$.customer.id',
] as const;

export const LIFECYCLE_EVENT_TYPES = [
  'authorization',
  'capture',
  'refund',
  'void',
  'chargeback',
  'fraud_report',
  'failed',
] as const;
export type LifecycleEventType = (typeof LIFECYCLE_EVENT_TYPES)[number];

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type CompareOp = 'eq' | 'neq' | 'lt' | 'lte' | 'gt' | 'gte';
export type VelocityOp = 'gt' | 'gte' | 'lt' | 'lte';

export interface VelocityTerm {
  field: string;
  window: string;
  distinct?: string;
  gt?: number;
  gte?: number;
  lt?: number;
  lte?: number;
}

export type Condition =
  | { eq: { path: string; value: Json } }
  | { neq: { path: string; value: Json } }
  | { lt: { path: string; value: number } }
  | { lte: { path: string; value: number } }
  | { gt: { path: string; value: number } }
  | { gte: { path: string; value: number } }
  | { in: { path: string; values: Json[] } }
  | { and: Condition[] }
  | { or: Condition[] }
  | { not: Condition }
  | { velocity: VelocityTerm };

export type OnError = 'allow' | 'block' | 'review';

interface RuleBase {
  id: string;
  enabled: boolean;
  live: boolean;
  name?: string;
  description?: string;
}

export interface ConditionRule extends RuleBase {
  type: 'condition';
  action: Outcome;
  condition: Condition;
}

export interface BlacklistRule extends RuleBase {
  type: 'blacklist';
  action: Outcome;
  fields: string[];
  ttl_seconds?: number;
  populate_on?: LifecycleEventType[];
}

export interface BackendRule extends RuleBase {
  type: 'backend';
  integration: string;
  backend_id: string;
  on_error: OnError;
  timeout_ms?: number;
  async: boolean;
}

export interface GroupMember {
  integration: string;
  backend_id: string;
  live: boolean;
  /** Share of the traffic in a split group (default 1); other strategies ignore it. */
  weight: number;
}

export interface BackendGroupRule extends RuleBase {
  type: 'backend_group';
  strategy: 'fallback' | 'parallel' | 'split';
  /** How a parallel group merges its live answers (default most_severe); others ignore it. */
  merge: 'most_severe' | 'first_answer';
  on_error: OnError;
  timeout_ms?: number;
  members: GroupMember[];
}

export type Rule = ConditionRule | BlacklistRule | BackendRule | BackendGroupRule;
export type RuleType = Rule['type'];

export interface RulesetDocument {
  name: string;
  context: string;
  description?: string;
  velocity_fields?: string[];
  rules: Rule[];
}

export interface Issue {
  path: string;
  message: string;
}

export type ParseResult =
  | { ok: true; value: RulesetDocument }
  | { ok: false; error: 'invalid_ruleset'; issues: Issue[] }
  | { ok: false; error: 'edition_required'; edition: 'connect'; issues: Issue[] };

export type Edition = 'core' | 'connect';

// ---------------------------------------------------------------------------------------------
// Leaves

type PathPart = string | number;

export function formatIssuePath(parts: readonly PropertyKey[]): string {
  let out = '';
  for (const p of parts) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (typeof p === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(p)) {
      out += out ? `.${p}` : p;
    } else out += `[${JSON.stringify(String(p))}]`;
  }
  return out;
}

const WINDOW = /^([1-9][0-9]{0,6})(s|m|h|d)$/;
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `"30s" "15m" "1h" "7d"` → milliseconds; undefined when malformed or out of bounds. */
export function parseWindow(w: string): number | undefined {
  const m = WINDOW.exec(w);
  if (!m) return undefined;
  const ms = Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  return ms <= LIMITS.windowMs ? ms : undefined;
}

// Slugs appear in the context at `$.backends.{integration}.{backend_id}`: no dots, no leading
// underscore (so never `__proto__`), nothing a path would need to quote.
const SLUG = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
const Slug = (what: string) =>
  z
    .string()
    .min(1)
    .max(LIMITS.idLength)
    .regex(SLUG, {
      error: `${what}: letters, digits, '_' and '-', starting with a letter or digit`,
    });

const RuleId = z
  .string()
  .min(1)
  .max(LIMITS.idLength)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]*$/, {
    error: "rule id: letters, digits, '_', '-', '.' and ':', starting with a letter or digit",
  });

const Path = z.string().superRefine((s, ctx) => {
  const p = parsePath(s);
  if (!p.ok) ctx.addIssue({ code: 'custom', message: p.message });
});

/** A path that yields at most one value: counters and distinct counts need one key. */
const DefinitePath = z.string().superRefine((s, ctx) => {
  const p = parsePath(s);
  if (!p.ok) ctx.addIssue({ code: 'custom', message: p.message });
  else if (!p.definite) {
    ctx.addIssue({ code: 'custom', message: 'a counted path cannot contain wildcards' });
  }
});

const Action = z.enum(['ALLOW', 'REVIEW', 'BLOCK']);
const OnErrorSchema = z.enum(['allow', 'block', 'review']).default('allow');
const TimeoutMs = z.number().int().min(1).max(LIMITS.timeoutMs);

const common = {
  enabled: z.boolean().default(true),
  live: z.boolean().default(true),
  name: z.string().max(LIMITS.nameLength).optional(),
  description: z.string().max(LIMITS.descriptionLength).optional(),
};

const RuleSchemas = {
  condition: z.strictObject({
    id: RuleId,
    type: z.literal('condition'),
    ...common,
    action: Action,
    // Checked by checkCondition, which reports a missing condition itself.
    condition: z.unknown().optional(),
  }),
  blacklist: z.strictObject({
    id: RuleId,
    type: z.literal('blacklist'),
    ...common,
    action: Action,
    fields: z.array(Path).min(1).max(LIMITS.blacklistFields),
    ttl_seconds: z.number().int().min(1).max(LIMITS.ttlSeconds).optional(),
    populate_on: z
      .array(z.enum(LIFECYCLE_EVENT_TYPES))
      .max(LIFECYCLE_EVENT_TYPES.length)
      .optional(),
  }),
  backend: z.strictObject({
    id: RuleId,
    type: z.literal('backend'),
    ...common,
    integration: Slug('integration'),
    backend_id: Slug('backend_id'),
    on_error: OnErrorSchema,
    timeout_ms: TimeoutMs.optional(),
    async: z.boolean().default(false),
  }),
  backend_group: z.strictObject({
    id: RuleId,
    type: z.literal('backend_group'),
    ...common,
    strategy: z.enum(['fallback', 'parallel', 'split']),
    merge: z.enum(['most_severe', 'first_answer']).optional(),
    on_error: OnErrorSchema,
    timeout_ms: TimeoutMs.optional(),
    members: z
      .array(
        z.strictObject({
          integration: Slug('integration'),
          backend_id: Slug('backend_id'),
          live: z.boolean().default(true),
          weight: z.number().int().min(1).max(LIMITS.memberWeight).optional(),
        }),
      )
      .min(1)
      .max(LIMITS.groupMembers),
  }),
} as const;

// Fields the API adds when it shows a ruleset: a document fetched, edited and sent back must
// not be refused for carrying them. They are dropped, never stored from the body.
const READ_ONLY_KEYS = new Set([
  'id',
  'status',
  'version',
  'created_at',
  'updated_at',
  'activated_at',
]);

const Top = z.strictObject({
  name: z.string().trim().min(1).max(LIMITS.nameLength),
  // As a decision names it (decisions/request.ts): a context no decision can send would hold an
  // ACTIVE ruleset nothing ever reaches.
  context: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, {
    error: 'context: lowercase letters, digits, - and _ (at most 64), as decisions send it',
  }),
  description: z.string().max(LIMITS.descriptionLength).optional(),
  velocity_fields: z.array(DefinitePath).max(LIMITS.velocityFields).optional(),
  rules: z.array(z.unknown()).max(LIMITS.rules),
});

// ---------------------------------------------------------------------------------------------
// The validator

// zod says "expected string, received undefined" for a missing key; users read "required".
const PARSE_OPTIONS = {
  error: (iss: { code?: string; input?: unknown }) =>
    iss.input === undefined && (iss.code === 'invalid_type' || iss.code === 'invalid_value')
      ? 'required'
      : undefined,
};

class Issues {
  list: Issue[] = [];
  get full(): boolean {
    return this.list.length >= LIMITS.issues;
  }
  add(path: readonly PathPart[], message: string): void {
    if (!this.full) this.list.push({ path: formatIssuePath(path), message });
  }
  fromZod(base: readonly PathPart[], error: z.ZodError): void {
    for (const i of error.issues) {
      const at = [...base, ...(i.path as PathPart[])];
      // One issue per unknown key, at the key, reads better than one list at the object.
      if (i.code === 'unrecognized_keys') {
        for (const k of i.keys) this.add([...at, k], `unknown key '${k}'`);
      } else {
        this.add(at, i.message);
      }
    }
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Checks a JSON literal in a condition: JSON types only, bounded in size and depth. */
function checkJson(
  v: unknown,
  path: PathPart[],
  issues: Issues,
  budget: { nodes: number },
  depth = 0,
) {
  if (--budget.nodes < 0) {
    if (budget.nodes === -1)
      issues.add(path, `value is larger than ${LIMITS.jsonValueNodes} nodes`);
    return;
  }
  if (depth > LIMITS.depth) return issues.add(path, `value is nested deeper than ${LIMITS.depth}`);
  if (v === null || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) issues.add(path, 'numbers must be finite');
    return;
  }
  if (typeof v === 'string') {
    if (v.length > LIMITS.stringValueLength) {
      issues.add(path, `string is longer than ${LIMITS.stringValueLength}`);
    }
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, k) => checkJson(x, [...path, k], issues, budget, depth + 1));
    return;
  }
  if (isPlainObject(v)) {
    for (const [k, x] of Object.entries(v)) checkJson(x, [...path, k], issues, budget, depth + 1);
    return;
  }
  issues.add(path, 'not a JSON value');
}

const COMPARE_OPS = new Set(['eq', 'neq', 'lt', 'lte', 'gt', 'gte']);
const VELOCITY_OPS = ['gt', 'gte', 'lt', 'lte'] as const;
const OPERATORS = ['eq', 'neq', 'lt', 'lte', 'gt', 'gte', 'in', 'and', 'or', 'not', 'velocity'];

interface ConditionCheck {
  issues: Issues;
  countable: Set<string>;
  nodes: number;
  inValues: number;
}

function checkPath(v: unknown, path: PathPart[], issues: Issues): void {
  if (typeof v !== 'string') return issues.add(path, 'expected a JSONPath string');
  const p = parsePath(v);
  if (!p.ok) issues.add(path, p.message);
}

function unknownKeys(
  o: Record<string, unknown>,
  allowed: readonly string[],
  path: PathPart[],
  c: ConditionCheck,
) {
  for (const k of Object.keys(o))
    if (!allowed.includes(k)) c.issues.add([...path, k], `unknown key '${k}'`);
}

function checkCondition(node: unknown, path: PathPart[], c: ConditionCheck, depth: number): void {
  if (c.issues.full) return;
  if (++c.nodes === LIMITS.nodesPerRuleset + 1) {
    c.issues.add(path, `the ruleset has more than ${LIMITS.nodesPerRuleset} condition nodes`);
  }
  if (c.nodes > LIMITS.nodesPerRuleset) return;
  if (depth > LIMITS.depth) {
    return c.issues.add(path, `conditions are nested deeper than ${LIMITS.depth}`);
  }
  if (node === undefined) return c.issues.add(path, 'required');
  if (!isPlainObject(node)) {
    return c.issues.add(path, `expected an expression object such as {"eq": {"path", "value"}}`);
  }
  const keys = Object.keys(node);
  if (keys.length !== 1) {
    return c.issues.add(
      path,
      keys.length === 0
        ? `empty expression: one of ${OPERATORS.join(', ')}`
        : `exactly one operator per expression (got ${keys.map((k) => `'${k}'`).join(', ')})`,
    );
  }
  const op = keys[0]!;
  const args = node[op];
  const at = [...path, op];
  if (COMPARE_OPS.has(op)) {
    if (!isPlainObject(args)) return c.issues.add(at, `expected {"path", "value"}`);
    unknownKeys(args, ['path', 'value'], at, c);
    checkPath(args.path, [...at, 'path'], c.issues);
    if (!('value' in args) || args.value === undefined)
      return c.issues.add([...at, 'value'], 'value is required');
    const value = args.value;
    if (op === 'eq' || op === 'neq') {
      // A null or missing path is false for every operator, so `eq null` could never match.
      if (value === null && op === 'eq') {
        return c.issues.add(
          [...at, 'value'],
          'eq null never matches: a null or missing path is false',
        );
      }
      checkJson(value, [...at, 'value'], c.issues, { nodes: LIMITS.jsonValueNodes });
    } else if (typeof value !== 'number' || !Number.isFinite(value)) {
      c.issues.add([...at, 'value'], `${op} compares numbers only: value must be a finite number`);
    }
    return;
  }
  switch (op) {
    case 'in': {
      if (!isPlainObject(args)) return c.issues.add(at, `expected {"path", "values"}`);
      unknownKeys(args, ['path', 'values'], at, c);
      checkPath(args.path, [...at, 'path'], c.issues);
      const values = args.values;
      if (!Array.isArray(values) || values.length === 0) {
        return c.issues.add([...at, 'values'], 'expected a non-empty array of values');
      }
      if (values.length > LIMITS.inValues) {
        return c.issues.add([...at, 'values'], `more than ${LIMITS.inValues} values`);
      }
      c.inValues += values.length;
      if (c.inValues > LIMITS.inValuesPerRuleset) {
        return c.issues.add(
          [...at, 'values'],
          `the ruleset has more than ${LIMITS.inValuesPerRuleset} 'in' values`,
        );
      }
      const budget = { nodes: LIMITS.jsonValueNodes * 4 };
      values.forEach((v, k) => checkJson(v, [...at, 'values', k], c.issues, budget));
      return;
    }
    case 'and':
    case 'or': {
      if (!Array.isArray(args) || args.length === 0) {
        return c.issues.add(at, 'expected a non-empty array of expressions');
      }
      if (args.length > LIMITS.andOrTerms)
        return c.issues.add(at, `more than ${LIMITS.andOrTerms} terms`);
      args.forEach((x, k) => checkCondition(x, [...at, k], c, depth + 1));
      return;
    }
    case 'not':
      return checkCondition(args, at, c, depth + 1);
    case 'velocity': {
      if (!isPlainObject(args))
        return c.issues.add(at, 'expected {"field", "window", "gt"|"gte"|"lt"|"lte"}');
      unknownKeys(args, ['field', 'window', 'distinct', ...VELOCITY_OPS], at, c);
      const field = args.field;
      if (typeof field !== 'string') c.issues.add([...at, 'field'], 'expected a JSONPath string');
      else {
        const p = parsePath(field);
        if (!p.ok) c.issues.add([...at, 'field'], p.message);
        else if (!c.countable.has(p.canonical)) {
          c.issues.add(
            [...at, 'field'],
            `'${field}' is not countable: use ${DEFAULT_COUNTABLE_FIELDS.join(', ')} or list it in velocity_fields`,
          );
        }
      }
      if (typeof args.window !== 'string' || parseWindow(args.window) === undefined) {
        c.issues.add([...at, 'window'], 'a window such as "30s", "15m", "1h" or "7d", at most 90d');
      }
      if (args.distinct !== undefined) {
        if (typeof args.distinct !== 'string')
          c.issues.add([...at, 'distinct'], 'expected a JSONPath string');
        else {
          const p = parsePath(args.distinct);
          if (!p.ok) c.issues.add([...at, 'distinct'], p.message);
          else if (!p.definite)
            c.issues.add([...at, 'distinct'], 'a counted path cannot contain wildcards');
        }
      }
      const ops = VELOCITY_OPS.filter((o) => o in args);
      if (ops.length !== 1) {
        return c.issues.add(
          at,
          ops.length === 0
            ? 'one threshold is required: gt, gte, lt or lte'
            : `exactly one threshold (got ${ops.join(', ')})`,
        );
      }
      const n = args[ops[0]!];
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > LIMITS.velocityThreshold) {
        c.issues.add([...at, ops[0]!], `a whole number from 0 to ${LIMITS.velocityThreshold}`);
      }
      return;
    }
    default:
      return c.issues.add(at, `unknown operator '${op}' (one of ${OPERATORS.join(', ')})`);
  }
}

const BACKEND_TYPES = new Set(['backend', 'backend_group']);

/**
 * Parses a ruleset document. On the Core edition a document with backend rules is refused with
 * `edition_required` before anything else is checked: fixing its other issues would not help.
 */
export function parseRuleset(doc: unknown, opts: { edition: Edition }): ParseResult {
  const rawRules = isPlainObject(doc) && Array.isArray(doc.rules) ? (doc.rules as unknown[]) : [];
  if (opts.edition === 'core') {
    const issues: Issue[] = [];
    rawRules.forEach((r, k) => {
      if (isPlainObject(r) && typeof r.type === 'string' && BACKEND_TYPES.has(r.type)) {
        issues.push({
          path: `rules[${k}].type`,
          message: `${r.type} rules need the Connect edition (VIGIL_EDITION=connect)`,
        });
      }
    });
    if (issues.length > 0) {
      return {
        ok: false,
        error: 'edition_required',
        edition: 'connect',
        issues: issues.slice(0, LIMITS.issues),
      };
    }
  }

  const issues = new Issues();
  let body = doc;
  if (isPlainObject(doc)) {
    body = Object.fromEntries(Object.entries(doc).filter(([k]) => !READ_ONLY_KEYS.has(k)));
  }
  const top = Top.safeParse(body, PARSE_OPTIONS);
  if (!top.success) issues.fromZod([], top.error);
  if (!isPlainObject(doc) || !Array.isArray(doc.rules)) {
    return { ok: false, error: 'invalid_ruleset', issues: issues.list };
  }
  if (rawRules.length > LIMITS.rules) {
    return { ok: false, error: 'invalid_ruleset', issues: issues.list };
  }

  const countable = new Set<string>(DEFAULT_COUNTABLE_FIELDS);
  if (Array.isArray(doc.velocity_fields)) {
    for (const f of doc.velocity_fields) {
      const p = parsePath(f);
      if (p.ok && p.definite) countable.add(p.canonical);
    }
  }
  const check: ConditionCheck = { issues, countable, nodes: 0, inValues: 0 };
  const rules: Rule[] = [];
  const seen = new Map<string, number>();
  rawRules.forEach((raw, k) => {
    if (issues.full) return;
    const at: PathPart[] = ['rules', k];
    if (!isPlainObject(raw)) return issues.add(at, 'expected a rule object');
    const type = raw.type;
    if (typeof type !== 'string' || !Object.hasOwn(RuleSchemas, type)) {
      return issues.add(
        [...at, 'type'],
        `unknown rule type ${JSON.stringify(type)?.slice(0, 40) ?? 'undefined'} (condition, blacklist, backend, backend_group)`,
      );
    }
    if (type === 'backend' && 'action' in raw) {
      issues.add(
        [...at, 'action'],
        'backend rules take their action from the mapped answer: no action',
      );
    }
    const schema = RuleSchemas[type as RuleType];
    const parsed = schema.safeParse(raw, PARSE_OPTIONS);
    if (!parsed.success) {
      issues.fromZod(at, type === 'backend' ? withoutActionKey(parsed.error) : parsed.error);
    }
    if (typeof raw.id === 'string') {
      const first = seen.get(raw.id);
      if (first !== undefined) {
        issues.add([...at, 'id'], `duplicate rule id '${raw.id}' (also rules[${first}])`);
      } else seen.set(raw.id, k);
    }
    if (type === 'condition') checkCondition(raw.condition, [...at, 'condition'], check, 0);
    if (!parsed.success) return;
    const rule = parsed.data;
    if (rule.type === 'backend_group') {
      if (!rule.members.some((m) => m.live)) {
        issues.add([...at, 'members'], 'a group needs at least one live member');
      }
      rules.push({
        ...rule,
        merge: rule.merge ?? 'most_severe',
        members: rule.members.map((m) => ({ ...m, weight: m.weight ?? 1 })),
      });
      return;
    }
    rules.push(
      type === 'condition' ? ({ ...rule, condition: raw.condition } as Rule) : (rule as Rule),
    );
  });

  if (issues.list.length > 0 || !top.success) {
    return { ok: false, error: 'invalid_ruleset', issues: issues.list };
  }
  const t = top.data;
  const value: RulesetDocument = { name: t.name, context: t.context, rules };
  if (t.description !== undefined) value.description = t.description;
  if (t.velocity_fields !== undefined) value.velocity_fields = t.velocity_fields;
  return { ok: true, value };
}

// The explicit "no action" issue above replaces zod's generic unknown-key one for `action`.
function withoutActionKey(error: z.ZodError): z.ZodError {
  const issues = error.issues.flatMap((i) => {
    if (i.code !== 'unrecognized_keys' || i.path.length > 0) return [i];
    const keys = i.keys.filter((k) => k !== 'action');
    return keys.length ? [{ ...i, keys }] : [];
  });
  return new z.ZodError(issues);
}

/** The integrations a ruleset calls, for checking that they are registered. */
export function backendReferences(
  doc: RulesetDocument,
): { rule_id: string; path: string; integration: string; backend_id: string }[] {
  const out: { rule_id: string; path: string; integration: string; backend_id: string }[] = [];
  doc.rules.forEach((r, k) => {
    if (r.type === 'backend') {
      out.push({
        rule_id: r.id,
        path: `rules[${k}]`,
        integration: r.integration,
        backend_id: r.backend_id,
      });
    } else if (r.type === 'backend_group') {
      r.members.forEach((m, j) =>
        out.push({
          rule_id: r.id,
          path: `rules[${k}].members[${j}]`,
          integration: m.integration,
          backend_id: m.backend_id,
        }),
      );
    }
  });
  return out;
}
