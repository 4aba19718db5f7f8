// A context built from a client's request (the inline proxy, /api/authz) loses the values the
// decision request refuses, and keeps the rest: one bad value must not leave the request
// without a decision (fail open), which would switch every BLOCK rule off for it.
import { describe, expect, it } from 'vitest';
import {
  looksLikePan,
  parseDecisionRequest,
  parseExtractedContext,
} from '../../../decisions/request.ts';

const base = () => ({
  context: 'checkout',
  transaction: { amount: 100, currency: 'EUR' },
  customer: { email: 'bad@example.com' },
  device: { ip: '203.0.113.7', user_agent: 'curl/8', session: 's1' },
  credential_fingerprint: 'tok_1',
  metadata: { route: '/checkout/*', method: 'POST', path: '/checkout/cart' },
});

describe('parseExtractedContext', () => {
  it('passes a valid context through unchanged, nothing dropped', () => {
    const r = parseExtractedContext(base());
    expect(r?.dropped).toEqual([]);
    expect(r?.data).toMatchObject(base());
  });

  it.each([
    ['a negative amount', (c: any) => (c.transaction.amount = -1), 'transaction.amount'],
    ['a fractional amount', (c: any) => (c.transaction.amount = 1.5), 'transaction.amount'],
    ['a lowercase currency', (c: any) => (c.transaction.currency = 'eur'), 'transaction.currency'],
    [
      'a 3 KB User-Agent',
      (c: any) => (c.device.user_agent = 'u'.repeat(3000)),
      'device.user_agent',
    ],
    ['a 257-char session', (c: any) => (c.device.session = 's'.repeat(257)), 'device.session'],
    ['an object as email', (c: any) => (c.customer.email = { a: 1 }), 'customer.email'],
    ['a number as email', (c: any) => (c.customer.email = 123), 'customer.email'],
    [
      'a token with a space',
      (c: any) => (c.credential_fingerprint = 'tok 1'),
      'credential_fingerprint',
    ],
    [
      'a card number as token',
      (c: any) => (c.credential_fingerprint = '4111111111111111'),
      'credential_fingerprint',
    ],
  ])('drops %s and keeps the rest', (_what, spoil, path) => {
    const ctx = base();
    spoil(ctx);
    const r = parseExtractedContext(ctx);
    expect(r).toBeDefined();
    expect(r!.dropped).toEqual([path]);
    // What is left is exactly what the decision API accepts.
    expect(parseDecisionRequest(structuredClone(r!.data)).success).toBe(true);
    // The rest is still there for the rules: the email a BLOCK rule looks at, the session.
    if (path !== 'customer.email') expect(r!.data.customer?.email).toBe('bad@example.com');
    if (path !== 'device.session') expect(r!.data.device?.session).toBe('s1');
    expect(JSON.stringify(r!.data)).not.toContain('4111111111111111');
  });

  it('drops several bad values at once, and a broken credential whole', () => {
    const ctx: any = base();
    delete ctx.credential_fingerprint;
    ctx.transaction.amount = -5;
    ctx.device.user_agent = 'x'.repeat(5000);
    ctx.credential = { type: 'masked_pan', bin: '41', last4: '1234' };
    const r = parseExtractedContext(ctx);
    expect(r).toBeDefined();
    expect(r!.dropped).toEqual(
      expect.arrayContaining(['transaction.amount', 'device.user_agent', 'credential.bin']),
    );
    expect(r!.data.credential).toBeUndefined();
    expect(r!.data.customer?.email).toBe('bad@example.com');
  });

  it('drops bad items by index and keeps the good ones', () => {
    const ctx: any = base();
    ctx.items = [{ sku: 'a' }, 'not an object', { sku: 'c' }];
    const r = parseExtractedContext(ctx);
    expect(r!.dropped).toEqual(['items[1]']);
    expect(r!.data.items).toEqual([{ sku: 'a' }, { sku: 'c' }]);
  });
});

describe('a card number is never taken as a credential_fingerprint', () => {
  it('refuses Luhn-valid digit strings of card length, with a message that says what to do', () => {
    const r = parseDecisionRequest({ credential_fingerprint: '4111111111111111' });
    expect(r.success).toBe(false);
    if (!r.success) {
      expect(r.error.issues[0]?.path).toEqual(['credential_fingerprint']);
      expect(r.error.issues[0]?.message).toMatch(/card number/);
    }
  });

  it('takes tokens, including format-preserving ones that fail Luhn', () => {
    for (const t of ['4111111111111112', 'crd_abc', '123456', 'tok_4111111111111111'])
      expect(parseDecisionRequest({ credential_fingerprint: t }).success).toBe(true);
  });

  it('knows card numbers by length and Luhn', () => {
    expect(looksLikePan('4111111111111111')).toBe(true);
    expect(looksLikePan('5555555555554444')).toBe(true);
    expect(looksLikePan('378282246310005')).toBe(true); // 15-digit Amex
    expect(looksLikePan('4111111111111112')).toBe(false);
    expect(looksLikePan('41111111111')).toBe(false); // 11 digits
    // Grouped as cards are written: still the card number.
    for (const grouped of ['4111-1111-1111-1111', '4111.1111.1111.1111', '4111_1111_1111_1111'])
      expect(looksLikePan(grouped)).toBe(true);
    // A token that holds digits among other characters is a token.
    expect(looksLikePan('tok-4111-1111-1111-1111')).toBe(false);
  });
});
