// Compile once, evaluate many: a ruleset version becomes closures over compiled accessors when it
// is loaded or activated, never per request (OPA's prepared queries). The closures allocate
// nothing on the common paths: definite paths read one value, wildcard paths stop at the first
// value that matches, and the trace entries a condition rule can produce are built here, frozen,
// and shared by every decision.
import { compilePath, parsePath, scalarKey, type CompiledPath } from './jsonpath.ts';
import type { CounterRequest, Counts, Outcome, RuleTrace } from './ports.ts';
import {
  parseRuleset,
  parseWindow,
  type Condition,
  type GroupMember,
  type Issue,
  type Json,
  type OnError,
  type RulesetDocument,
  type VelocityOp,
} from './schema.ts';

/** Per-evaluation state the condition closures read and flag. */
export interface CondScope {
  counts: Counts | 'unavailable';
  /** Set when a velocity term was reached and the store's answer had no count for it. */
  countMissing: boolean;
}

export type Cond = (ctx: unknown, scope: CondScope) => boolean;

/** A velocity term as the evaluator and counterRequests see it. */
export interface VelocityProbe {
  field: CompiledPath;
  window: number;
  distinct: string | undefined;
}

interface Frozen {
  disabled: RuleTrace;
  notEvaluated: RuleTrace;
}

export interface CompiledLocalRule extends Frozen {
  kind: 'condition' | 'blacklist';
  id: string;
  enabled: boolean;
  live: boolean;
  action: Outcome;
  /** condition rules */
  test: Cond;
  /** Velocity terms of the condition: when the store is down and any of them has a value to
   *  count, the whole rule is skipped, wherever the term sits. */
  probes: VelocityProbe[];
  /** blacklist rules: the path as written (the blacklist is keyed by it) and its accessor */
  fields: { key: string; path: CompiledPath }[];
  matched: RuleTrace;
  notMatched: RuleTrace;
  skippedCounter: RuleTrace;
  skippedBlacklist: RuleTrace;
}

export interface CompiledBackendRule extends Frozen {
  kind: 'backend';
  id: string;
  enabled: boolean;
  live: boolean;
  integration: string;
  backend_id: string;
  on_error: OnError;
  timeout_ms: number | undefined;
  async: boolean;
}

export interface CompiledGroupRule extends Frozen {
  kind: 'group';
  id: string;
  enabled: boolean;
  live: boolean;
  strategy: 'fallback' | 'parallel' | 'split';
  merge: 'most_severe' | 'first_answer';
  on_error: OnError;
  timeout_ms: number | undefined;
  members: GroupMember[];
  /** Sum of the live members' weights (split). */
  totalWeight: number;
}

export type CompiledRule = CompiledLocalRule | CompiledBackendRule | CompiledGroupRule;

export interface BackendRef {
  rule_id: string;
  /** Where in the document: `rules[4]` or `rules[4].members[1]`. */
  path: string;
  integration: string;
  backend_id: string;
}

export interface CompiledRuleset {
  readonly name: string;
  readonly context: string;
  readonly document: RulesetDocument;
  readonly rules: readonly CompiledRule[];
  /** Some enabled rule calls a backend: evaluation may wait, and returns a Promise. */
  readonly hasBackends: boolean;
  readonly backendRefs: readonly BackendRef[];
  /** The countable fields some velocity term counts on (canonical paths). */
  readonly countedFields: readonly string[];
  /** The same, with the windows and distinct paths asked on each (mergeCounting's input). */
  readonly counted: readonly CountedField[];
  /**
   * What to ask the counter store for this decision, in one round trip: every counted field that
   * has a value in `ctx`, with every window and distinct path any rule (disabled and shadow ones
   * included) needs on it. A decision is counted on each of its values once, whichever rule
   * later fires, so a rule enabled in the next version finds the history already there.
   */
  counterRequests(ctx: unknown): CounterRequest[];
}

/** A counted field: its accessor, the windows asked on it, and its distinct counts. */
export interface CountedField {
  readonly key: string;
  readonly one: (ctx: unknown) => unknown;
  readonly windows: readonly number[];
  readonly distinct: readonly {
    readonly key: string;
    readonly one: (ctx: unknown) => unknown;
    readonly windows: readonly number[];
  }[];
}

function requestsOf(counted: readonly CountedField[], ctx: unknown): CounterRequest[] {
  const out: CounterRequest[] = [];
  for (const f of counted) {
    const value = scalarKey(f.one(ctx));
    if (value === undefined) continue;
    out.push({
      field: f.key,
      value,
      windowsMs: f.windows,
      distinct: f.distinct.map((d) => ({
        path: d.key,
        value: scalarKey(d.one(ctx)),
        windowsMs: d.windows,
      })),
    });
  }
  return out;
}

const unionOf = (a: readonly number[], b: readonly number[]) =>
  Object.freeze([...new Set([...a, ...b])].sort((x, y) => x - y));

/**
 * What every decision records, whatever its context: the union of the counted fields of the
 * given rulesets (the ACTIVE ones), with every window and distinct path any of them asks. A
 * velocity term counts the decisions that carried the value (CONTRACT §2), not only those of
 * contexts whose ruleset counts it: a login counts toward the checkout's card velocity.
 */
export function mergeCounting(
  rulesets: readonly Pick<CompiledRuleset, 'counted'>[],
): (ctx: unknown) => CounterRequest[] {
  const counting = rulesets.filter((r) => r.counted.length > 0);
  if (counting.length === 0) return () => [];
  if (counting.length === 1) {
    const only = counting[0]!.counted;
    return (ctx) => requestsOf(only, ctx);
  }
  const byKey = new Map<string, CountedField>();
  for (const r of counting) {
    for (const f of r.counted) {
      const had = byKey.get(f.key);
      if (!had) {
        byKey.set(f.key, f);
        continue;
      }
      const distinct = new Map(had.distinct.map((d) => [d.key, d]));
      for (const d of f.distinct) {
        const dh = distinct.get(d.key);
        distinct.set(d.key, dh ? { ...dh, windows: unionOf(dh.windows, d.windows) } : d);
      }
      byKey.set(f.key, {
        key: f.key,
        one: had.one,
        windows: unionOf(had.windows, f.windows),
        distinct: [...distinct.values()],
      });
    }
  }
  const merged = [...byKey.values()];
  return (ctx) => requestsOf(merged, ctx);
}

export class InvalidRulesetError extends Error {
  readonly code = 'invalid_ruleset';
  readonly issues: Issue[];
  constructor(issues: Issue[]) {
    super(`invalid ruleset: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
    this.name = 'InvalidRulesetError';
    this.issues = issues;
  }
}

// ---------------------------------------------------------------------------------------------
// Expressions

/** Strict JSON equality: same type, same value; arrays in order; objects by own keys. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.hasOwn(b, k)) return false;
    if (!jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) {
      return false;
    }
  }
  return true;
}

interface Compiled {
  fn: Cond;
  /** Rough relative cost, to run cheap terms first inside and/or. */
  cost: number;
}

/** Turns a value predicate into a condition over a path: any value the path yields may match. */
function overPath(path: CompiledPath, pred: (v: unknown) => boolean): Compiled {
  if (path.definite) {
    const one = path.one;
    return {
      fn: (ctx) => {
        const v = one(ctx);
        return v !== undefined && pred(v);
      },
      cost: 1,
    };
  }
  const some = path.some;
  return { fn: (ctx) => some(ctx, pred), cost: 4 };
}

function compare(op: 'lt' | 'lte' | 'gt' | 'gte', n: number): (v: unknown) => boolean {
  // lt/lte/gt/gte compare numbers only: a string that looks like a number is still a string.
  switch (op) {
    case 'lt':
      return (v) => typeof v === 'number' && v < n;
    case 'lte':
      return (v) => typeof v === 'number' && v <= n;
    case 'gt':
      return (v) => typeof v === 'number' && v > n;
    case 'gte':
      return (v) => typeof v === 'number' && v >= n;
  }
}

function threshold(term: { gt?: number; gte?: number; lt?: number; lte?: number }): {
  op: VelocityOp;
  n: number;
} {
  for (const op of ['gt', 'gte', 'lt', 'lte'] as const) {
    const n = term[op];
    if (n !== undefined) return { op, n };
  }
  throw new Error('velocity term without a threshold');
}

function compileCondition(e: Condition, probes: VelocityProbe[]): Compiled {
  if ('and' in e || 'or' in e) {
    const isAnd = 'and' in e;
    const terms = (isAnd ? e.and : e.or).map((x) => compileCondition(x, probes));
    // The terms are pure, so their order never changes the result; a cheap term first lets
    // short-circuiting skip the costly ones.
    terms.sort((a, b) => a.cost - b.cost);
    const fns = terms.map((t) => t.fn);
    const cost = terms.reduce((s, t) => s + t.cost, 0) + 0.5;
    if (fns.length === 1) return { fn: fns[0]!, cost };
    if (fns.length === 2) {
      const [a, b] = fns as [Cond, Cond];
      return {
        fn: isAnd ? (c, s) => a(c, s) && b(c, s) : (c, s) => a(c, s) || b(c, s),
        cost,
      };
    }
    return {
      fn: isAnd
        ? (c, s) => {
            for (const f of fns) if (!f(c, s)) return false;
            return true;
          }
        : (c, s) => {
            for (const f of fns) if (f(c, s)) return true;
            return false;
          },
      cost,
    };
  }
  if ('not' in e) {
    const inner = compileCondition(e.not, probes);
    const f = inner.fn;
    return { fn: (c, s) => !f(c, s), cost: inner.cost + 0.5 };
  }
  if ('velocity' in e) {
    const t = e.velocity;
    const probe: VelocityProbe = {
      field: compilePath(t.field),
      window: parseWindow(t.window) ?? 0,
      distinct: t.distinct === undefined ? undefined : compilePath(t.distinct).path,
    };
    probes.push(probe);
    const { op, n } = threshold(t);
    const ok = compare(op, n);
    const one = probe.field.one;
    const key = probe.field.path;
    const { window, distinct } = probe;
    return {
      fn: (ctx, scope) => {
        const value = scalarKey(one(ctx));
        // No value to count on: nothing was counted, and like any missing path the term is false.
        if (value === undefined) return false;
        const counts = scope.counts;
        const c = counts === 'unavailable' ? undefined : counts.get(key, value, window, distinct);
        if (c === undefined) {
          scope.countMissing = true;
          return false;
        }
        return ok(c);
      },
      cost: 3,
    };
  }
  if ('in' in e) {
    const path = compilePath(e.in.path);
    const prims = new Set<unknown>();
    const objects: Json[] = [];
    for (const v of e.in.values) {
      if (v === null) continue; // a null value never matches (semantic 7)
      if (typeof v === 'object') objects.push(v);
      else prims.add(v);
    }
    const compiled = overPath(
      path,
      objects.length === 0
        ? (v) => prims.has(v)
        : (v) =>
            typeof v === 'object'
              ? v !== null && objects.some((o) => jsonEqual(v, o))
              : prims.has(v),
    );
    return { fn: compiled.fn, cost: compiled.cost + (objects.length > 0 ? 2 : 0.5) };
  }
  if ('eq' in e || 'neq' in e) {
    const isEq = 'eq' in e;
    const { path: p, value } = isEq ? e.eq : e.neq;
    const path = compilePath(p);
    const scalar = value === null || typeof value !== 'object';
    let pred: (v: unknown) => boolean;
    if (isEq) pred = scalar ? (v) => v === value : (v) => jsonEqual(v, value);
    // neq: the path must hold a value, and not null, for the comparison to be true.
    else if (scalar) pred = (v) => v !== null && v !== value;
    else pred = (v) => v !== null && !jsonEqual(v, value);
    const compiled = overPath(path, pred);
    return { fn: compiled.fn, cost: compiled.cost + (scalar ? 0 : 1) };
  }
  const [op, args] = Object.entries(e)[0] as [
    'lt' | 'lte' | 'gt' | 'gte',
    { path: string; value: number },
  ];
  return overPath(compilePath(args.path), compare(op, args.value));
}

// ---------------------------------------------------------------------------------------------
// Rules

function frozen<T extends RuleTrace>(t: T): Readonly<T> {
  return Object.freeze(t);
}

function staticTraces(id: string, live: boolean): Frozen {
  const shadow = live ? {} : { shadow: true as const };
  return {
    disabled: frozen({ rule_id: id, result: 'disabled', ...shadow }),
    notEvaluated: frozen({ rule_id: id, result: 'not_evaluated', ...shadow }),
  };
}

const NEVER: Cond = () => false;

export function compileRuleset(input: unknown): CompiledRuleset {
  // Stored documents were parsed at upload; parsing again (once per version) fills defaults in
  // documents written by hand and refuses anything that slipped past, before it can run.
  const parsed = parseRuleset(input, { edition: 'connect' });
  if (!parsed.ok) throw new InvalidRulesetError(parsed.issues);
  const doc = parsed.value;

  const fields = new Map<
    string,
    {
      path: CompiledPath;
      windows: Set<number>;
      distinct: Map<string, { path: CompiledPath; windows: Set<number> }>;
    }
  >();
  const backendRefs: BackendRef[] = [];
  let hasBackends = false;

  const rules: CompiledRule[] = doc.rules.map((r, k): CompiledRule => {
    const base = { id: r.id, enabled: r.enabled, live: r.live, ...staticTraces(r.id, r.live) };
    const shadow = r.live ? {} : { shadow: true as const };
    if (r.type === 'condition' || r.type === 'blacklist') {
      const probes: VelocityProbe[] = [];
      const test = r.type === 'condition' ? compileCondition(r.condition, probes).fn : NEVER;
      for (const p of probes) {
        let f = fields.get(p.field.path);
        if (!f) {
          f = { path: p.field, windows: new Set(), distinct: new Map() };
          fields.set(p.field.path, f);
        }
        if (p.distinct === undefined) f.windows.add(p.window);
        else {
          let d = f.distinct.get(p.distinct);
          if (!d) {
            d = { path: compilePath(p.distinct), windows: new Set() };
            f.distinct.set(p.distinct, d);
          }
          d.windows.add(p.window);
        }
      }
      return {
        ...base,
        kind: r.type,
        action: r.action,
        test,
        probes,
        fields:
          r.type === 'blacklist' ? r.fields.map((f) => ({ key: f, path: compilePath(f) })) : [],
        matched: frozen({ rule_id: r.id, result: 'matched', action: r.action, ...shadow }),
        notMatched: frozen({ rule_id: r.id, result: 'not_matched', ...shadow }),
        skippedCounter: frozen({
          rule_id: r.id,
          result: 'skipped',
          reason: 'counter_unavailable',
          ...shadow,
        }),
        skippedBlacklist: frozen({
          rule_id: r.id,
          result: 'skipped',
          reason: 'blacklist_unavailable',
          ...shadow,
        }),
      };
    }
    if (r.enabled) hasBackends = true;
    if (r.type === 'backend') {
      backendRefs.push({
        rule_id: r.id,
        path: `rules[${k}]`,
        integration: r.integration,
        backend_id: r.backend_id,
      });
      return {
        ...base,
        kind: 'backend',
        integration: r.integration,
        backend_id: r.backend_id,
        on_error: r.on_error,
        timeout_ms: r.timeout_ms,
        async: r.async,
      };
    }
    r.members.forEach((m, j) =>
      backendRefs.push({
        rule_id: r.id,
        path: `rules[${k}].members[${j}]`,
        integration: m.integration,
        backend_id: m.backend_id,
      }),
    );
    return {
      ...base,
      kind: 'group',
      strategy: r.strategy,
      merge: r.merge,
      on_error: r.on_error,
      timeout_ms: r.timeout_ms,
      members: r.members,
      totalWeight: r.members.reduce((s, m) => s + (m.live ? m.weight : 0), 0),
    };
  });

  // Frozen: handed to the counter stores with every decision, not copied (readonly in the port).
  const sorted = (s: Set<number>) => Object.freeze([...s].sort((a, b) => a - b));
  const counted: CountedField[] = [...fields.values()].map((f) => ({
    key: f.path.path,
    one: f.path.one,
    windows: sorted(f.windows),
    distinct: [...f.distinct].map(([key, d]) => ({
      key,
      one: d.path.one,
      windows: sorted(d.windows),
    })),
  }));

  return {
    name: doc.name,
    context: doc.context,
    document: doc,
    rules,
    hasBackends,
    backendRefs,
    countedFields: counted.map((f) => f.key),
    counted,
    counterRequests: (ctx) => requestsOf(counted, ctx),
  };
}

/** The canonical spelling of a path, as counters key it; undefined if it does not parse. */
export function canonicalPath(path: string): string | undefined {
  const p = parsePath(path);
  return p.ok ? p.canonical : undefined;
}
