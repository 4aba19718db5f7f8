// Table-driven decision semantics (CONTRACT §1): each case in test/fixtures/semantics/*.json is a
// ruleset, a context, what the ports answer, and the expected decision and trace. Cases name the
// numbered semantic they pin down; each is written so that a plausible wrong engine fails it.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileRuleset } from '../../../rulesets/compile.ts';
import { evaluate } from '../../../rulesets/evaluate.ts';
import type { BackendCallResult, Counts } from '../../../rulesets/ports.ts';
import { parseRuleset, parseWindow } from '../../../rulesets/schema.ts';

type Answer = BackendCallResult & { delay_ms?: number };

interface Case {
  name: string;
  /** A whole document, or only its rules (name and context are filled in). */
  ruleset?: Record<string, unknown>;
  rules?: unknown[];
  context: Record<string, unknown>;
  /** `field|value|window[|distinct path]` → count; the window as "1h" or in ms. */
  counts?: 'unavailable' | Record<string, number>;
  /** [field path, value] pairs listed in the blacklist. */
  blacklist?: 'unavailable' | [string, string][];
  /** `integration/backend_id` → what the backend answers (unlisted: a connection error). */
  backends?: Record<string, Answer>;
  random?: number;
  /** The decision deadline, ms after now (default 300). */
  deadline_ms?: number;
  expect: {
    decision: string;
    /** Exact traces, in order. */
    rules?: unknown[];
    /** rule id → result, for every rule. */
    results?: Record<string, string>;
    reasons?: Record<string, string>;
    shadow?: string[];
    /** Each entry matched partially, same length and order. */
    backend_results?: Record<string, unknown>[];
    pending?: unknown[];
    degraded?: string[];
    has_errors?: boolean;
    evaluation_type?: string;
    /** The backends called, in the order the calls started. */
    calls?: string[];
    backend_calls?: number;
  };
}

const NOW = 1_700_000_000_000;
const dir = path.resolve(import.meta.dirname, '../../fixtures/semantics');
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
const cases: [string, Case][] = files.flatMap((f) =>
  (JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as Case[]).map(
    (c) => [`${f}: ${c.name}`, c] as [string, Case],
  ),
);

function countsFrom(spec: Record<string, number>): Counts {
  const table = new Map<string, number>();
  for (const [key, n] of Object.entries(spec)) {
    const [field, value, window, distinct] = key.split('|') as [string, string, string, string?];
    const ms = /^\d+$/.test(window) ? Number(window) : parseWindow(window);
    if (ms === undefined) throw new Error(`bad window in counts key ${key}`);
    table.set([field, value, ms, distinct ?? ''].join('|'), n);
  }
  return {
    get: (field, value, windowMs, distinct) =>
      table.get([field, value, windowMs, distinct ?? ''].join('|')),
  };
}

describe('decision semantics (fixtures)', () => {
  it('has the fixture cases', () => expect(cases.length).toBeGreaterThanOrEqual(60));

  it.each(cases)('%s', async (_name, c) => {
    const doc = c.ruleset ?? { name: 't', context: 'checkout', rules: c.rules };
    const parsed = parseRuleset(doc, { edition: 'connect' });
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
    const compiled = compileRuleset(parsed.value);
    const listed = new Set(
      (c.blacklist === 'unavailable' ? [] : (c.blacklist ?? [])).map(([p, v]) => `${p}|${v}`),
    );
    const calls: string[] = [];
    const original = structuredClone(c.context);
    const pending = evaluate(compiled, c.context, {
      counts: c.counts === 'unavailable' ? 'unavailable' : countsFrom(c.counts ?? {}),
      blacklist:
        c.blacklist === 'unavailable'
          ? 'unavailable'
          : { has: (p, v, now) => now === NOW && listed.has(`${p}|${v}`) },
      backends: {
        call: async (req) => {
          const key = `${req.integration}/${req.backend_id}`;
          calls.push(key);
          // Backends never see metadata (CONTRACT §1).
          expect(req.context).not.toHaveProperty('metadata');
          expect(req.deadlineMs).toBeLessThanOrEqual(NOW + (c.deadline_ms ?? 300));
          const { delay_ms, ...answer } = c.backends?.[key] ?? {
            status: 'error',
            error: 'connection',
            latency_ms: 0,
          };
          if (delay_ms) await new Promise((r) => setTimeout(r, delay_ms));
          return answer;
        },
      },
      now: () => NOW,
      deadlineMs: NOW + (c.deadline_ms ?? 300),
      ...(c.random !== undefined ? { random: () => c.random! } : {}),
    });
    // Rulesets without backend rules answer synchronously.
    if (!compiled.hasBackends) expect(pending).not.toBeInstanceOf(Promise);
    const result = await pending;
    const e = c.expect;

    expect(result.decision).toBe(e.decision);
    if (e.rules) expect(result.rules).toEqual(e.rules);
    if (e.results) {
      expect(Object.fromEntries(result.rules.map((r) => [r.rule_id, r.result]))).toEqual(e.results);
    }
    for (const [id, reason] of Object.entries(e.reasons ?? {})) {
      expect(result.rules.find((r) => r.rule_id === id)?.reason).toBe(reason);
    }
    for (const id of e.shadow ?? []) {
      expect(result.rules.find((r) => r.rule_id === id)?.shadow).toBe(true);
    }
    if (e.backend_results) expect(result.backend_results).toMatchObject(e.backend_results);
    if (e.pending) expect(result.pending).toEqual(e.pending);
    if (e.degraded) expect(result.degraded).toEqual(e.degraded);
    if (e.has_errors !== undefined) expect(result.has_errors).toBe(e.has_errors);
    if (e.evaluation_type) expect(result.evaluation_type).toBe(e.evaluation_type);
    if (e.calls) expect(calls).toEqual(e.calls);
    if (e.backend_calls !== undefined) expect(calls).toHaveLength(e.backend_calls);
    // Every rule is reported once, in document order.
    expect(result.rules.map((r) => r.rule_id)).toEqual(parsed.value.rules.map((r) => r.id));
    // The caller's context is never changed (backend answers go into a copy).
    expect(c.context).toEqual(original);
  });
});
