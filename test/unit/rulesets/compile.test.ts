import { describe, expect, it } from 'vitest';
import { compileRuleset, InvalidRulesetError, jsonEqual } from '../../../rulesets/compile.ts';
import { evaluate } from '../../../rulesets/evaluate.ts';
import type { Counts } from '../../../rulesets/ports.ts';

const velocity = (field: string, window: string, extra: Record<string, unknown> = {}) => ({
  velocity: { field, window, gt: 1, ...extra },
});
const rule = (id: string, condition: unknown, extra: Record<string, unknown> = {}) => ({
  id,
  type: 'condition',
  action: 'REVIEW',
  condition,
  ...extra,
});

describe('counterRequests', () => {
  const compiled = compileRuleset({
    name: 't',
    context: 'checkout',
    velocity_fields: ['$.customer.email'],
    rules: [
      rule('a', velocity('$.credential_fingerprint', '1h')),
      rule('b', {
        and: [{ gt: { path: '$.x', value: 1 } }, velocity('$.credential_fingerprint', '24h')],
      }),
      rule('c', velocity('$.device.ip', '24h', { distinct: '$.credential_fingerprint' })),
      rule('d', velocity('$.device.ip', '1h', { distinct: "$['credential_fingerprint']" })),
      rule('e', { not: velocity('$.customer.email', '7d') }, { enabled: false }),
      rule('f', velocity("$['customer']['email']", '1h'), { live: false }),
      rule('g', velocity('$.customer.id', '1h')),
      rule('h', velocity('$.credential_fingerprint', '1h')),
    ],
  });

  it('asks once per counted field with a value, every window and distinct path any rule needs', () => {
    const reqs = compiled.counterRequests({
      credential_fingerprint: 'crd_1',
      device: { ip: '203.0.113.7' },
      customer: { email: 'a@example.com' },
    });
    expect(reqs).toEqual([
      {
        field: '$.credential_fingerprint',
        value: 'crd_1',
        windowsMs: [3_600_000, 86_400_000],
        distinct: [],
      },
      {
        field: '$.device.ip',
        value: '203.0.113.7',
        windowsMs: [],
        distinct: [
          { path: '$.credential_fingerprint', value: 'crd_1', windowsMs: [3_600_000, 86_400_000] },
        ],
      },
      // Disabled and shadow rules count too: counting never depends on which rule fires.
      {
        field: '$.customer.email',
        value: 'a@example.com',
        windowsMs: [3_600_000, 604_800_000],
        distinct: [],
      },
    ]);
    expect(compiled.countedFields).toEqual([
      '$.credential_fingerprint',
      '$.device.ip',
      '$.customer.email',
      '$.customer.id',
    ]);
  });

  it('skips fields without a countable value and reports a missing distinct value as undefined', () => {
    const reqs = compiled.counterRequests({
      credential_fingerprint: '',
      device: { ip: 7 },
      customer: { id: { nested: true }, email: null },
    });
    expect(reqs).toEqual([
      {
        field: '$.device.ip',
        value: '7',
        windowsMs: [],
        distinct: [
          {
            path: '$.credential_fingerprint',
            value: undefined,
            windowsMs: [3_600_000, 86_400_000],
          },
        ],
      },
    ]);
    expect(compiled.counterRequests({})).toEqual([]);
    expect(compiled.counterRequests(null)).toEqual([]);
  });

  it('hands out window lists that cannot be changed, shared by every decision', () => {
    const ctx = { credential_fingerprint: 'crd_1' };
    const [first] = compiled.counterRequests(ctx);
    expect(() => (first!.windowsMs as number[]).push(1)).toThrow(TypeError);
    expect(compiled.counterRequests(ctx)[0]!.windowsMs).toEqual([3_600_000, 86_400_000]);
  });
});

describe('compileRuleset', () => {
  it('refuses an invalid document with the parse issues', () => {
    try {
      compileRuleset({
        name: 'x',
        context: 'c',
        rules: [rule('a', { gt: { path: '$..a', value: 1 } })],
      });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidRulesetError);
      expect((err as InvalidRulesetError).code).toBe('invalid_ruleset');
      expect((err as InvalidRulesetError).issues[0]!.path).toBe('rules[0].condition.gt.path');
    }
  });

  it('lists backend references and knows when evaluation may wait', () => {
    const compiled = compileRuleset({
      name: 'x',
      context: 'c',
      rules: [
        rule('a', { gt: { path: '$.a', value: 1 } }),
        { id: 'b', type: 'backend', integration: 'acme', backend_id: 'score', enabled: false },
        {
          id: 'g',
          type: 'backend_group',
          strategy: 'fallback',
          members: [
            { integration: 'x', backend_id: 'one' },
            { integration: 'y', backend_id: 'two', live: false },
          ],
        },
      ],
    });
    expect(compiled.backendRefs).toEqual([
      { rule_id: 'b', path: 'rules[1]', integration: 'acme', backend_id: 'score' },
      { rule_id: 'g', path: 'rules[2].members[0]', integration: 'x', backend_id: 'one' },
      { rule_id: 'g', path: 'rules[2].members[1]', integration: 'y', backend_id: 'two' },
    ]);
    expect(compiled.hasBackends).toBe(true);
  });

  it('a disabled backend rule alone keeps evaluation synchronous', () => {
    const compiled = compileRuleset({
      name: 'x',
      context: 'c',
      rules: [
        { id: 'b', type: 'backend', integration: 'acme', backend_id: 'score', enabled: false },
      ],
    });
    expect(compiled.hasBackends).toBe(false);
  });
});

describe('term order inside and/or never changes the result', () => {
  // Cheap terms are moved first; this checks the compiled result against a direct reading of
  // the expression on many contexts, with the terms written in every order.
  const terms = [
    { gt: { path: '$.amount', value: 50 } },
    { in: { path: '$.tags[*]', values: ['x', { k: 1 }] } },
    { velocity: { field: '$.customer.id', window: '1h', gte: 3 } },
    { not: { eq: { path: '$.country', value: 'FR' } } },
  ];
  interface Ctx {
    amount: number | string;
    tags: unknown[];
    customer?: { id: string };
    country: string;
    count: number;
  }
  const direct = (i: number, ctx: Ctx, count: number): boolean => {
    switch (i) {
      case 0:
        return typeof ctx.amount === 'number' && ctx.amount > 50;
      case 1:
        return ctx.tags.some((t) => t === 'x' || jsonEqual(t, { k: 1 }));
      case 2:
        return ctx.customer?.id !== undefined && count >= 3;
      default:
        return !(ctx.country === 'FR');
    }
  };
  const orders = [
    [0, 1, 2, 3],
    [3, 2, 1, 0],
    [2, 0, 3, 1],
  ];
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const contexts: Ctx[] = Array.from({ length: 200 }, () => ({
    amount: rand() < 0.1 ? '100' : Math.floor(rand() * 100),
    tags:
      rand() < 0.5 ? ['y', rand() < 0.5 ? 'x' : { k: 1 }].slice(0, 1 + Math.floor(rand() * 2)) : [],
    ...(rand() < 0.8 ? { customer: { id: 'c1' } } : {}),
    country: rand() < 0.5 ? 'FR' : 'DE',
    count: Math.floor(rand() * 6),
  }));

  it.each(['and', 'or'] as const)('%s', (op) => {
    for (const order of orders) {
      const compiled = compileRuleset({
        name: 't',
        context: 'c',
        rules: [rule('r', { [op]: order.map((i) => terms[i]) })],
      });
      for (const ctx of contexts) {
        const counts: Counts = { get: () => ctx.count };
        const r = evaluate(compiled, ctx, {
          counts,
          blacklist: 'unavailable',
          now: () => 0,
          deadlineMs: 1,
        });
        const values = order.map((i) => direct(i, ctx, ctx.count));
        const want = op === 'and' ? values.every(Boolean) : values.some(Boolean);
        expect('decision' in r && r.decision, JSON.stringify({ order, ctx })).toBe(
          want ? 'REVIEW' : 'ALLOW',
        );
      }
    }
  });
});

describe('jsonEqual', () => {
  it('is strict JSON equality', () => {
    expect(jsonEqual({ a: [1, { b: null }] }, { a: [1, { b: null }] })).toBe(true);
    expect(jsonEqual({ a: 1, b: 2 }, { b: 2, a: 1 })).toBe(true);
    expect(jsonEqual([1, 2], [2, 1])).toBe(false);
    expect(jsonEqual({ a: undefined }, {})).toBe(false);
    expect(jsonEqual([], {})).toBe(false);
    expect(jsonEqual(1, '1')).toBe(false);
    expect(jsonEqual(null, {})).toBe(false);
  });
});
