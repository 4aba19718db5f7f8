// The decision request's fast check (plainValid) may only say yes where the schema says yes
// and would hand back the same request: every request it accepts is one zod accepts unchanged
// (but for the default context). Held over generated requests that mix valid and invalid
// values in every field the schema knows, and over hand-picked edge cases.
import { describe, expect, it } from 'vitest';
import { DecisionRequest, parseDecisionRequest, plainValid } from '../../../decisions/request.ts';

// A small seeded generator, so a failure names a case that can be replayed.
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const long = (n: number) => 'x'.repeat(n);
// For each field: values the schema accepts and values it refuses (or strips, or coerces).
const CHOICES: Record<string, unknown[]> = {
  context: [
    'checkout',
    'login-2',
    'a',
    long(64),
    undefined,
    'Checkout',
    '',
    '-x',
    long(65),
    7,
    null,
  ],
  transaction: [
    { reference: 'ord_1', amount: 1000, currency: 'EUR' },
    { amount: 0 },
    { reference: null, amount: null, currency: null },
    { amount: Number.MAX_SAFE_INTEGER, extra: { deep: [1, 2] } },
    {},
    { amount: 10.5 },
    { amount: -1 },
    { amount: Number.MAX_SAFE_INTEGER + 1 },
    { amount: '100' },
    { currency: 'eur' },
    { currency: 'EURO' },
    { reference: long(2049) },
    { reference: null },
    [],
    'tx',
    null,
  ],
  credential: [
    { type: 'masked_pan', bin: '411111', last4: '1234', expiry: '12/29' },
    { type: 'masked_pan', bin: '41111111', last4: '0000' },
    { type: 'pan', number: '4111111111111111', expiry: '01/30' },
    { type: 'token', value: 'tok_1' },
    { type: 'token', value: long(256) },
    { type: 'masked_pan', bin: '41111', last4: '1234' },
    { type: 'masked_pan', bin: '411111', last4: '123' },
    { type: 'masked_pan', bin: '411111', last4: '1234', expiry: '13/29' },
    { type: 'masked_pan', bin: '411111', last4: '1234', cvv: '123' },
    { type: 'pan', number: '41111111111' },
    { type: 'token', value: '' },
    { type: 'token', value: long(257) },
    { type: 'iban', value: 'x' },
    { bin: '411111', last4: '1234' },
    [],
    null,
  ],
  credential_fingerprint: [
    'crd_abc',
    '4111111111111111',
    '4111111111111112',
    'a:b.c-d_e',
    long(128),
    '',
    long(129),
    'has space',
    3,
  ],
  customer: [
    { id: 'cus_1', email: 'a@example.com' },
    { id: 'cus_3', email: null },
    { id: null },
    { id: 'cus_2', tier: 'gold' },
    {},
    { id: 5 },
    { email: long(2049) },
    [],
    null,
  ],
  device: [
    { ip: '203.0.113.7', fingerprint: 'dev_1', user_agent: 'ua', session: 's1' },
    { ip: null, fingerprint: null, user_agent: null, session: null },
    { ip: '2001:db8::1' },
    { ip: '::1', session: 's' },
    { ip: '256.1.1.1' },
    { ip: '1.2.3' },
    { ip: '01.2.3.4' },
    { ip: 'example.com' },
    { session: '' },
    { session: long(256) },
    { session: long(257) },
    { fingerprint: 7 },
    { extra: true },
    [],
    null,
  ],
  billing: [{ country: 'FR' }, {}, [], 'FR', null],
  shipping: [{ country: 'DE', line: { a: 1 } }, [], null],
  items: [
    [{ sku: 'a' }, { sku: 'b' }],
    [],
    Array(500).fill({ s: 1 }),
    Array(501).fill({ s: 1 }),
    [1],
    [[]],
    {},
    null,
  ],
  metadata: [
    { channel: 'web' },
    {},
    Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`k${i}`, 'v'])),
    Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])),
    { [long(65)]: 'v' },
    { k: long(513) },
    { k: 1 },
    [],
    null,
  ],
  backends: [undefined, [], { a: 1 }, null],
  other_section: [{ anything: [1, { b: null }] }, 'text', 1, null],
};

function generate(next: () => number): Record<string, unknown> {
  const r: Record<string, unknown> = {};
  for (const [k, values] of Object.entries(CHOICES)) {
    // About half the fields absent; valid values first in each list, so they come up often.
    if (next() < 0.5) continue;
    const i = next() < 0.7 ? Math.floor(next() * 3) : Math.floor(next() * values.length);
    r[k] = structuredClone(values[Math.min(i, values.length - 1)]);
  }
  return r;
}

describe('the decision request fast check', () => {
  it('accepts only what the schema accepts, and the schema would return it unchanged', () => {
    const next = rng(20261205);
    let accepted = 0;
    let refusedBySchema = 0;
    for (let n = 0; n < 20_000; n++) {
      const input = generate(next);
      const zod = DecisionRequest.safeParse(structuredClone(input));
      if (!zod.success) refusedBySchema++;
      if (!plainValid(input)) continue;
      accepted++;
      if (!zod.success)
        throw new Error(`fast check accepted ${JSON.stringify(input).slice(0, 400)}`);
      expect(parseDecisionRequest(input)).toEqual({ success: true, data: zod.data });
    }
    // Not vacuous: both verdicts come up many times.
    expect(accepted).toBeGreaterThan(1_000);
    expect(refusedBySchema).toBeGreaterThan(1_000);
  });

  it('leaves to the schema what it cannot tell, so errors and outputs come from zod', () => {
    const cases: unknown[] = [
      null,
      [],
      'text',
      { device: { ip: '2001:db8::1' } },
      { credential: { type: 'masked_pan', bin: '411111', last4: '1234', cvv: '1' } },
      { credential: { type: 'token', value: 't' }, credential_fingerprint: 'crd_x' },
      { backends: [] },
      { transaction: { amount: 1.5 } },
    ];
    for (const c of cases) expect(plainValid(c), JSON.stringify(c)).toBe(false);
    // IPv6 is valid, through the schema.
    expect(parseDecisionRequest({ device: { ip: '2001:db8::1' } }).success).toBe(true);
    // An unknown key in a credential is stripped by the schema, as before.
    const stripped = parseDecisionRequest({
      credential: { type: 'masked_pan', bin: '411111', last4: '1234', cvv: '1' },
    });
    expect(stripped.success && stripped.data.credential).toEqual({
      type: 'masked_pan',
      bin: '411111',
      last4: '1234',
    });
    const both = parseDecisionRequest({
      credential: { type: 'token', value: 't' },
      credential_fingerprint: 'crd_x',
    });
    expect(both.success).toBe(false);
    expect(!both.success && both.error.issues[0]?.path).toEqual(['credential_fingerprint']);
  });

  it('fills in the default context when the hand check accepts', () => {
    const r = parseDecisionRequest({ transaction: { amount: 1 } });
    expect(r).toEqual({ success: true, data: { context: 'default', transaction: { amount: 1 } } });
  });
});
