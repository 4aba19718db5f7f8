import { describe, expect, it } from 'vitest';
import { compileRuleset } from '../../../rulesets/compile.ts';
import {
  evaluate,
  evaluateSync,
  settlePending,
  stableHash,
  type EvalDeps,
  type EvalResult,
} from '../../../rulesets/evaluate.ts';
import type {
  BackendCallRequest,
  BackendCallResult,
  BackendCaller,
} from '../../../rulesets/ports.ts';

const NOW = 1_000_000;
const ok = (outcome: 'ALLOW' | 'REVIEW' | 'BLOCK', response: unknown = {}): BackendCallResult => ({
  status: 'ok',
  outcome,
  response,
  latency_ms: 1,
});

function deps(extra: Partial<EvalDeps> = {}): EvalDeps {
  return {
    counts: { get: () => 0 },
    blacklist: { has: () => false },
    now: () => NOW,
    deadlineMs: NOW + 300,
    ...extra,
  };
}

function caller(
  answer: (req: BackendCallRequest) => BackendCallResult | Promise<BackendCallResult>,
) {
  const seen: BackendCallRequest[] = [];
  const backends: BackendCaller = {
    call: async (req) => {
      seen.push(req);
      return answer(req);
    },
  };
  return { seen, backends };
}

const review = (id: string, path = '$.transaction.amount') => ({
  id,
  type: 'condition',
  action: 'REVIEW',
  condition: { gt: { path, value: 0 } },
});
const backendRule = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  type: 'backend',
  integration: 'acme-risk',
  backend_id: id,
  ...extra,
});
const ruleset = (rules: unknown[]) => compileRuleset({ name: 't', context: 'c', rules });

describe('evaluate: sync and async paths', () => {
  it('returns the result itself when no enabled rule calls a backend', () => {
    const r = evaluate(ruleset([review('r')]), { transaction: { amount: 1 } }, deps());
    expect(r).not.toBeInstanceOf(Promise);
    expect((r as EvalResult).decision).toBe('REVIEW');
    expect(evaluateSync(ruleset([review('r')]), {}, deps()).decision).toBe('ALLOW');
  });

  it('returns a Promise when backends may be called; evaluateSync refuses such a ruleset', async () => {
    const compiled = ruleset([backendRule('score')]);
    const { backends } = caller(() => ok('BLOCK'));
    const r = evaluate(compiled, {}, deps({ backends }));
    expect(r).toBeInstanceOf(Promise);
    expect((await r).decision).toBe('BLOCK');
    expect(() => evaluateSync(compiled, {}, deps())).toThrow(/backends/);
  });

  it('shares no mutable state between decisions', () => {
    const compiled = ruleset([review('r')]);
    const a = evaluateSync(compiled, { transaction: { amount: 1 } }, deps());
    const b = evaluateSync(compiled, {}, deps());
    expect(a.rules).toEqual([{ rule_id: 'r', result: 'matched', action: 'REVIEW' }]);
    expect(b.rules).toEqual([{ rule_id: 'r', result: 'not_matched' }]);
    // Trace entries are shared and frozen: a consumer changing one would change every decision.
    expect(() => {
      (a.rules[0] as { result: string }).result = 'x';
    }).toThrow(TypeError);
  });

  it('lists each degraded reason once, in the order met', () => {
    const compiled = ruleset([
      { id: 'bl', type: 'blacklist', action: 'BLOCK', fields: ['$.device.ip'] },
      {
        id: 'v1',
        type: 'condition',
        action: 'BLOCK',
        condition: { velocity: { field: '$.device.ip', window: '1h', gt: 1 } },
      },
      {
        id: 'v2',
        type: 'condition',
        action: 'BLOCK',
        condition: { velocity: { field: '$.device.ip', window: '1d', gt: 1 } },
      },
    ]);
    const r = evaluateSync(
      compiled,
      { device: { ip: '1.1.1.1' } },
      deps({ counts: 'unavailable', blacklist: 'unavailable' }),
    );
    expect(r.degraded).toEqual(['blacklist_unavailable', 'counter_unavailable']);
  });
});

describe('evaluate: backends', () => {
  it('sends the context without metadata, with earlier live answers, and never changes the caller object', async () => {
    const compiled = ruleset([backendRule('one'), backendRule('two')]);
    const { seen, backends } = caller((req) => ok('REVIEW', { from: req.backend_id }));
    const ctx = {
      customer: { id: 'c1' },
      metadata: { channel: 'web' },
      backends: { forged: true },
    };
    const before = structuredClone(ctx);
    const r = await evaluate(compiled, ctx, deps({ backends }));
    expect(r.decision).toBe('REVIEW');
    expect(seen[0]!.context).toEqual({ customer: { id: 'c1' } });
    expect(seen[1]!.context).toEqual({
      customer: { id: 'c1' },
      backends: { 'acme-risk': { one: { outcome: 'REVIEW', response: { from: 'one' } } } },
    });
    expect(seen[0]).toMatchObject({
      integration: 'acme-risk',
      backend_id: 'one',
      deadlineMs: NOW + 300,
    });
    expect(ctx).toEqual(before);
  });

  it('passes the rule timeout and the decision deadline', async () => {
    const { seen, backends } = caller(() => ok('ALLOW'));
    await evaluate(ruleset([backendRule('s', { timeout_ms: 150 })]), {}, deps({ backends }));
    expect(seen[0]).toMatchObject({ timeoutMs: 150, deadlineMs: NOW + 300 });
  });

  it('turns a throwing caller, an unmappable outcome and a missing caller into errors with on_error', async () => {
    const throwing: BackendCaller = { call: () => Promise.reject(new Error('boom')) };
    const a = await evaluate(
      ruleset([backendRule('s', { on_error: 'block' })]),
      {},
      deps({ backends: throwing }),
    );
    expect(a.decision).toBe('BLOCK');
    expect(a.rules[0]).toEqual({
      rule_id: 's',
      result: 'error',
      action: 'BLOCK',
      reason: 'exception',
    });

    const weird = caller(() => ({
      status: 'ok',
      outcome: 'MAYBE' as 'ALLOW',
      response: {},
      latency_ms: 1,
    }));
    const b = await evaluate(
      ruleset([backendRule('s', { on_error: 'review' })]),
      {},
      deps({ backends: weird.backends }),
    );
    expect(b.decision).toBe('REVIEW');
    expect(b.backend_results[0]).toMatchObject({ status: 'error', error: 'unmappable' });

    const c = await evaluate(ruleset([backendRule('s')]), {}, deps());
    expect(c.rules[0]).toMatchObject({ result: 'error', reason: 'no_backend_caller' });
    expect(c.has_errors).toBe(true);
  });

  it('a shadow member failing is reported (has_errors, degraded) without changing the decision', async () => {
    const compiled = ruleset([
      {
        id: 'g',
        type: 'backend_group',
        strategy: 'parallel',
        members: [
          { integration: 'a', backend_id: 'x' },
          { integration: 'b', backend_id: 'y', live: false },
        ],
      },
    ]);
    const { backends } = caller((req) =>
      req.integration === 'a' ? ok('ALLOW') : { status: 'error', error: 'timeout', latency_ms: 5 },
    );
    const r = await evaluate(compiled, {}, deps({ backends }));
    expect(r.decision).toBe('ALLOW');
    expect(r.has_errors).toBe(true);
    expect(r.degraded).toEqual(['backend_timeout']);
  });
});

describe('evaluate: groups', () => {
  const group = (extra: Record<string, unknown>, members: unknown[]) =>
    ruleset([{ id: 'g', type: 'backend_group', ...extra, members }]);
  const two = [
    { integration: 'a', backend_id: 'x' },
    { integration: 'b', backend_id: 'y' },
  ];

  it('one budget for the whole group: members get min(decision deadline, start + timeout_ms)', async () => {
    const { seen, backends } = caller(() => ({
      status: 'error',
      error: 'connection',
      latency_ms: 1,
    }));
    await evaluate(group({ strategy: 'fallback', timeout_ms: 100 }, two), {}, deps({ backends }));
    expect(seen.map((s) => s.deadlineMs)).toEqual([NOW + 100, NOW + 100]);
    await evaluate(group({ strategy: 'parallel', timeout_ms: 1000 }, two), {}, deps({ backends }));
    expect(seen.slice(2).map((s) => s.deadlineMs)).toEqual([NOW + 300, NOW + 300]);
  });

  it('fallback stops asking once the group budget is spent', async () => {
    let now = NOW;
    const { seen, backends } = caller(() => {
      now += 120;
      return { status: 'error', error: 'timeout', latency_ms: 120 };
    });
    const members = [...two, { integration: 'c', backend_id: 'z' }];
    const r = await evaluate(
      group({ strategy: 'fallback', timeout_ms: 200, on_error: 'review' }, members),
      {},
      deps({ backends, now: () => now }),
    );
    expect(seen.map((s) => s.integration)).toEqual(['a', 'b']);
    expect(r.decision).toBe('REVIEW');
    expect(r.backend_results).toHaveLength(2);
  });

  it('first_answer aborts the calls it no longer waits for', async () => {
    const signals: AbortSignal[] = [];
    const backends: BackendCaller = {
      call: (req) => {
        signals.push(req.signal!);
        if (req.integration === 'a') return Promise.resolve(ok('REVIEW'));
        return new Promise((resolve) =>
          req.signal!.addEventListener('abort', () =>
            resolve({ status: 'error', error: 'aborted', latency_ms: 9 }),
          ),
        );
      },
    };
    const r = await evaluate(
      group({ strategy: 'parallel', merge: 'first_answer' }, two),
      {},
      deps({ backends }),
    );
    expect(r.decision).toBe('REVIEW');
    expect(signals.every((s) => s.aborted)).toBe(true);
    expect(r.backend_results[1]).toMatchObject({
      integration: 'b',
      status: 'error',
      error: 'abandoned',
    });
    expect(r.has_errors).toBe(false);
  });

  it('split is sticky per credential, then per customer, and follows the weights', async () => {
    const members = [
      { integration: 'a', backend_id: 'x', weight: 1 },
      { integration: 'b', backend_id: 'y', weight: 3 },
    ];
    const compiled = group({ strategy: 'split' }, members);
    const { seen, backends } = caller(() => ok('ALLOW'));
    const pick = async (ctx: unknown) => {
      await evaluate(compiled, ctx, deps({ backends }));
      return seen[seen.length - 1]!.integration;
    };
    const first = await pick({ credential_fingerprint: 'crd_42' });
    for (let k = 0; k < 5; k++)
      expect(await pick({ credential_fingerprint: 'crd_42', customer: { id: `c${k}` } })).toBe(
        first,
      );
    const byCustomer = await pick({ customer: { id: 'cus_7' } });
    expect(await pick({ customer: { id: 'cus_7' } })).toBe(byCustomer);

    const tally = { a: 0, b: 0 };
    for (let k = 0; k < 4000; k++)
      tally[(await pick({ credential_fingerprint: `crd_${k}` })) as 'a' | 'b']++;
    expect(tally.b / 4000).toBeGreaterThan(0.7);
    expect(tally.b / 4000).toBeLessThan(0.8);
  });

  it('stableHash is FNV-1a based and stable', () => {
    expect(stableHash('')).toBe(stableHash(''));
    expect(stableHash('a')).not.toBe(stableHash('b'));
    expect(stableHash('split\u0000c:crd_1') % 2).toBe(1);
  });
});

describe('settlePending', () => {
  const asyncRule = (id: string, extra: Record<string, unknown> = {}) =>
    backendRule(id, { async: true, ...extra });

  async function provisional(rules: unknown[], ctx: unknown = { transaction: { amount: 5 } }) {
    return evaluate(ruleset(rules), ctx, deps({ backends: caller(() => ok('ALLOW')).backends }));
  }

  it('applies the answer at the rule position: an async BLOCK blocks', async () => {
    const r = await provisional([asyncRule('deep'), review('r')]);
    expect(r.decision).toBe('PROVISIONAL');
    const s = settlePending(r, { deep: ok('BLOCK') });
    expect(s.decision).toBe('BLOCK');
    expect(s.rules[0]).toEqual({ rule_id: 'deep', result: 'matched', action: 'BLOCK' });
    expect(s.backend_results[0]).toMatchObject({ status: 'ok', outcome: 'BLOCK' });
    expect(s.pending).toEqual([]);
  });

  it('an async ALLOW is terminal where it sits: later REVIEWs no longer count; earlier ones do not change it', async () => {
    expect(
      settlePending(await provisional([asyncRule('deep'), review('r')]), { deep: ok('ALLOW') })
        .decision,
    ).toBe('ALLOW');
    expect(
      settlePending(await provisional([review('r'), asyncRule('deep')]), { deep: ok('REVIEW') })
        .decision,
    ).toBe('REVIEW');
  });

  it('a failure applies on_error; a missing answer is a failure', async () => {
    const r = await provisional([asyncRule('deep', { on_error: 'review' })]);
    const s = settlePending(r, { deep: { status: 'error', error: 'timeout', latency_ms: 5000 } });
    expect(s.decision).toBe('REVIEW');
    expect(s.degraded).toEqual(['backend_timeout']);
    expect(s.has_errors).toBe(true);
    expect(settlePending(r, {}).rules[0]).toMatchObject({
      result: 'error',
      reason: 'no_answer',
      action: 'REVIEW',
    });
  });

  it('keeps a synchronous BLOCK: it was already enforced', async () => {
    const r = await provisional([asyncRule('deep'), { ...review('b'), action: 'BLOCK' }]);
    expect(r.decision).toBe('BLOCK');
    const s = settlePending(r, { deep: ok('ALLOW') });
    expect(s.decision).toBe('BLOCK');
    expect(s.rules[0]).toMatchObject({ result: 'matched', action: 'ALLOW' });
  });
});
