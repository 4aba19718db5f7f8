// The engine on the answer path: a 50-rule ruleset (comparisons, and/or/not, wildcards, velocity
// terms on prefetched in-process counts, blacklist lookups) over varied contexts, timed per
// decision with process.hrtime.bigint. Target: p99 ≤ 50 µs per decision (counter requests plus
// evaluation). Anchor: the same rules read through jsonpath-plus at request time (script
// evaluation off), the interpreter the compiled accessors replace; printed as a ratio.
//
//   node --experimental-strip-types bench/engine.ts [decisions]
import { JSONPath } from 'jsonpath-plus';
import { fileURLToPath } from 'node:url';
import { compileRuleset, jsonEqual } from '../rulesets/compile.ts';
import { scalarKey } from '../rulesets/jsonpath.ts';
import { evaluate, type EvalDeps, type EvalResult } from '../rulesets/evaluate.ts';
import type { BlacklistLookup, Counts } from '../rulesets/ports.ts';
import { parseWindow, type Condition, type RulesetDocument } from '../rulesets/schema.ts';

export interface EngineBenchOptions {
  /** Timed decisions (default 200,000). */
  decisions?: number;
  /** Untimed decisions first, so the JIT has compiled the hot paths (default 20,000). */
  warmup?: number;
  /** Distinct contexts cycled through (default 1,000). */
  contexts?: number;
  /** Decisions for the jsonpath-plus anchor (default 5,000; 0 skips it). */
  anchorDecisions?: number;
  targetP99Us?: number;
  log?: (line: string) => void;
}

export interface EngineBenchResult {
  rules: number;
  decisions: number;
  median_us: number;
  p99_us: number;
  p999_us: number;
  max_us: number;
  mean_us: number;
  decisions_per_s: number;
  outcomes: Record<string, number>;
  anchor_median_us: number | null;
  anchor_ratio: number | null;
  target_p99_us: number;
  pass: boolean;
}

// Deterministic inputs: the same contexts and counts on every run.
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const COUNTRIES = ['FR', 'DE', 'US', 'GB', 'NG', 'BR', 'IN', 'ES'];
const CATEGORIES = ['book', 'toy', 'gift_card', 'electronics', 'food', 'crypto'];

export function benchRuleset(): RulesetDocument {
  const rules: unknown[] = [];
  const cond = (id: string, action: string, condition: unknown) =>
    rules.push({ id, type: 'condition', action, condition });
  cond('vip', 'ALLOW', { in: { path: '$.customer.id', values: ['cus_vip_1', 'cus_vip_2'] } });
  rules.push({
    id: 'known-bad',
    type: 'blacklist',
    action: 'BLOCK',
    fields: ['$.credential_fingerprint', '$.device.ip'],
  });
  for (let k = 0; k < 8; k++) {
    cond(`amount-${k}`, 'REVIEW', {
      and: [
        { gte: { path: '$.transaction.amount', value: 200_000 + k * 10_000 } },
        { eq: { path: '$.transaction.currency', value: k % 2 ? 'USD' : 'EUR' } },
      ],
    });
  }
  for (let k = 0; k < 8; k++) {
    cond(`geo-${k}`, 'REVIEW', {
      and: [
        { neq: { path: '$.billing.country', value: COUNTRIES[k]! } },
        { eq: { path: '$.device.country', value: COUNTRIES[(k + 3) % 8]! } },
        { gt: { path: '$.transaction.amount', value: 90_000 } },
      ],
    });
  }
  for (let k = 0; k < 6; k++) {
    cond(`items-${k}`, 'REVIEW', {
      or: [
        { eq: { path: '$.items[*].category', value: CATEGORIES[k]! } },
        { gt: { path: '$.items[*].quantity', value: 40 + k } },
      ],
    });
  }
  for (let k = 0; k < 6; k++) {
    cond(`card-testing-${k}`, 'BLOCK', {
      and: [
        { lt: { path: '$.transaction.amount', value: 300 + k * 100 } },
        {
          velocity: {
            field: '$.credential_fingerprint',
            window: ['1h', '24h', '7d'][k % 3]!,
            gt: 8 + k,
          },
        },
      ],
    });
  }
  for (let k = 0; k < 6; k++) {
    cond(`many-cards-${k}`, 'REVIEW', {
      velocity: {
        field: k % 2 ? '$.device.ip' : '$.device.fingerprint',
        distinct: '$.credential_fingerprint',
        window: ['1h', '24h', '7d'][k % 3]!,
        gte: 6 + k,
      },
    });
  }
  for (let k = 0; k < 6; k++) {
    cond(`customer-velocity-${k}`, 'REVIEW', {
      not: {
        or: [
          { velocity: { field: '$.customer.id', window: ['15m', '1h', '1d'][k % 3]!, lt: 30 + k } },
          { in: { path: '$.metadata.channel', values: ['pos', 'moto'] } },
        ],
      },
    });
  }
  for (let k = 0; k < 6; k++) {
    cond(`shadow-${k}`, 'BLOCK', {
      and: [
        { gte: { path: '$.transaction.amount', value: 150_000 } },
        { eq: { path: '$.customer.email_domain', value: `temp${k}.example` } },
      ],
    });
    (rules[rules.length - 1] as { live: boolean }).live = false;
  }
  cond('email-velocity', 'REVIEW', {
    velocity: { field: '$.customer.email', window: '1d', gt: 20 },
  });
  cond('huge', 'BLOCK', { gte: { path: '$.transaction.amount', value: 5_000_000 } });
  return {
    name: 'bench',
    context: 'checkout',
    velocity_fields: ['$.customer.email'],
    rules: rules as RulesetDocument['rules'],
  };
}

export function benchContexts(n: number, seed = 42): Record<string, unknown>[] {
  const r = prng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  return Array.from({ length: n }, (_, i) => ({
    context: 'checkout',
    transaction: {
      reference: `ord_${i}`,
      amount: Math.floor(r() ** 3 * 400_000),
      currency: pick(['EUR', 'USD', 'GBP']),
    },
    credential_fingerprint: `crd_${Math.floor(r() * 300)}`,
    customer: {
      id: r() < 0.01 ? 'cus_vip_1' : `cus_${Math.floor(r() * 500)}`,
      email: `u${Math.floor(r() * 800)}@example.com`,
      email_domain: r() < 0.05 ? 'temp1.example' : 'example.com',
    },
    device: {
      ip: `203.0.${Math.floor(r() * 8)}.${Math.floor(r() * 250)}`,
      fingerprint: `dev_${Math.floor(r() * 400)}`,
      country: pick(COUNTRIES),
      session: `sess_${i}`,
    },
    billing: { country: pick(COUNTRIES), zip: '75001' },
    items: Array.from({ length: 1 + Math.floor(r() * 4) }, () => ({
      sku: `sku_${Math.floor(r() * 1000)}`,
      category: pick(CATEGORIES),
      quantity: 1 + Math.floor(r() * 50),
    })),
    metadata: { channel: pick(['web', 'app', 'pos']) },
  }));
}

/** Counts as a counter store would return them: keyed exactly as the engine asks. */
class BenchCounts implements Counts {
  readonly map = new Map<string, number>();
  get(field: string, value: string, windowMs: number, distinct?: string): number | undefined {
    return this.map.get(`${field}\u0000${value}\u0000${windowMs}\u0000${distinct ?? ''}`);
  }
}

const quantile = (sorted: Float64Array, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const round = (x: number) => Math.round(x * 100) / 100;

export function runEngineBench(opts: EngineBenchOptions = {}): EngineBenchResult {
  const decisions = opts.decisions ?? 200_000;
  const warmup = opts.warmup ?? 20_000;
  const nContexts = opts.contexts ?? 1_000;
  const anchorDecisions = opts.anchorDecisions ?? 5_000;
  const target = opts.targetP99Us ?? 50;
  const log = opts.log ?? (() => {});

  const doc = benchRuleset();
  const compiled = compileRuleset(doc);
  const contexts = benchContexts(nContexts);
  const r = prng(7);
  // Prefetched per context, as decisions/ passes them after its one round trip.
  const counts = contexts.map((ctx) => {
    const c = new BenchCounts();
    for (const req of compiled.counterRequests(ctx)) {
      for (const w of req.windowsMs) {
        c.map.set(`${req.field}\u0000${req.value}\u0000${w}\u0000`, 1 + Math.floor(r() * 14));
      }
      for (const d of req.distinct) {
        for (const w of d.windowsMs) {
          c.map.set(
            `${req.field}\u0000${req.value}\u0000${w}\u0000${d.path}`,
            1 + Math.floor(r() * 10),
          );
        }
      }
    }
    return c;
  });
  const listed = new Set(['$.device.ip\u0000203.0.1.17', '$.credential_fingerprint\u0000crd_13']);
  const blacklist: BlacklistLookup = { has: (p, v) => listed.has(`${p}\u0000${v}`) };
  const base: Omit<EvalDeps, 'counts'> = {
    blacklist,
    now: () => 1_700_000_000_000,
    deadlineMs: 1_700_000_000_300,
  };

  const once = (k: number): EvalResult => {
    const ctx = contexts[k % nContexts]!;
    compiled.counterRequests(ctx);
    return evaluate(compiled, ctx, { ...base, counts: counts[k % nContexts]! }) as EvalResult;
  };

  for (let k = 0; k < warmup; k++) once(k);
  const samples = new Float64Array(decisions);
  const outcomes: Record<string, number> = {};
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < decisions; k++) {
    const start = process.hrtime.bigint();
    const res = once(k);
    samples[k] = Number(process.hrtime.bigint() - start) / 1_000;
    sink += res.rules.length;
    outcomes[res.decision] = (outcomes[res.decision] ?? 0) + 1;
  }
  const totalS = Number(process.hrtime.bigint() - t0) / 1e9;
  if (sink === 0) throw new Error('no rules were evaluated');
  samples.sort();
  const mean = samples.reduce((s, x) => s + x, 0) / decisions;

  let anchorMedian: number | null = null;
  if (anchorDecisions > 0) {
    const a = new Float64Array(anchorDecisions);
    for (let k = 0; k < anchorDecisions; k++) {
      const start = process.hrtime.bigint();
      interpret(doc, contexts[k % nContexts]!, counts[k % nContexts]!, blacklist);
      a[k] = Number(process.hrtime.bigint() - start) / 1_000;
    }
    a.sort();
    anchorMedian = quantile(a, 0.5);
  }

  const median = quantile(samples, 0.5);
  const p99 = quantile(samples, 0.99);
  const result: EngineBenchResult = {
    rules: doc.rules.length,
    decisions,
    median_us: round(median),
    p99_us: round(p99),
    p999_us: round(quantile(samples, 0.999)),
    max_us: round(samples[decisions - 1]!),
    mean_us: round(mean),
    decisions_per_s: Math.round(decisions / totalS),
    outcomes,
    anchor_median_us: anchorMedian === null ? null : round(anchorMedian),
    anchor_ratio: anchorMedian === null ? null : round(anchorMedian / median),
    target_p99_us: target,
    pass: p99 <= target,
  };
  log(
    `engine: ${result.rules} rules, ${decisions} decisions: median ${result.median_us} µs, ` +
      `p99 ${result.p99_us} µs, p99.9 ${result.p999_us} µs (${result.decisions_per_s}/s)`,
  );
  if (anchorMedian !== null) {
    log(
      `anchor (jsonpath-plus at request time): median ${result.anchor_median_us} µs ` +
        `→ compiled engine ${result.anchor_ratio}× faster`,
    );
  }
  log(`target p99 ≤ ${target} µs: ${result.pass ? 'PASS' : 'FAIL'}`);
  return result;
}

// The anchor: the same semantics, read through a general JSONPath evaluator on every request.
// Good enough to time; the engine's tests, not this, define the semantics.
function interpret(
  doc: RulesetDocument,
  ctx: unknown,
  counts: Counts,
  blacklist: BlacklistLookup,
): string {
  const values = (path: string) =>
    (JSONPath({ path, json: ctx as object, eval: false, wrap: true }) as unknown[]).filter(
      (v) => v !== null && v !== undefined,
    );
  const test = (e: Condition): boolean => {
    if ('and' in e) return e.and.every(test);
    if ('or' in e) return e.or.some(test);
    if ('not' in e) return !test(e.not);
    if ('velocity' in e) {
      const v = scalarKey(values(e.velocity.field)[0]);
      if (v === undefined) return false;
      const n =
        counts.get(e.velocity.field, v, parseWindow(e.velocity.window)!, e.velocity.distinct) ?? 0;
      const t = e.velocity;
      return t.gt !== undefined
        ? n > t.gt
        : t.gte !== undefined
          ? n >= t.gte
          : t.lt !== undefined
            ? n < t.lt
            : n <= t.lte!;
    }
    if ('in' in e) return values(e.in.path).some((v) => e.in.values.some((x) => jsonEqual(v, x)));
    if ('eq' in e) return values(e.eq.path).some((v) => jsonEqual(v, e.eq.value));
    if ('neq' in e) return values(e.neq.path).some((v) => !jsonEqual(v, e.neq.value));
    const [op, arg] = Object.entries(e)[0] as [string, { path: string; value: number }];
    return values(arg.path).some(
      (v) =>
        typeof v === 'number' &&
        (op === 'lt'
          ? v < arg.value
          : op === 'lte'
            ? v <= arg.value
            : op === 'gt'
              ? v > arg.value
              : v >= arg.value),
    );
  };
  let review = false;
  for (const rule of doc.rules) {
    if (rule.type === 'blacklist') {
      if (rule.fields.some((f) => values(f).some((v) => blacklist.has(f, scalarKey(v) ?? '', 0))))
        return rule.action;
      continue;
    }
    if (rule.type !== 'condition' || !test(rule.condition) || !rule.live) continue;
    if (rule.action === 'REVIEW') review = true;
    else return rule.action;
  }
  return review ? 'REVIEW' : 'ALLOW';
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const n = Number(process.argv[2]);
  const result = runEngineBench({
    ...(Number.isFinite(n) && n > 0 ? { decisions: n } : {}),
    log: (line) => console.log(line),
  });
  process.exitCode = result.pass ? 0 : 1;
}
