import { describe, expect, it } from 'vitest';
import { compileRoutesDocument } from '../../../proxy/inline/config.ts';
import { buildDecisionContext, coerce, cookieValue } from '../../../proxy/inline/extract.ts';

describe('coercion', () => {
  it.each([
    ['integer', '14999', 14999],
    ['integer', ' 42 ', 42],
    ['integer', 42, 42],
    ['integer', '149.99', undefined],
    ['integer', 1.5, undefined],
    ['integer', '99999999999999999999', undefined],
    ['integer', true, undefined],
    ['number', '149.99', 149.99],
    ['number', '1e3', 1000],
    ['number', 'abc', undefined],
    ['number', Number.NaN, undefined],
    ['boolean', 'true', true],
    ['boolean', 'On', true],
    ['boolean', '0', false],
    ['boolean', 1, true],
    ['boolean', 'maybe', undefined],
    ['string', 12, '12'],
    ['string', false, 'false'],
    ['string', { a: 1 }, undefined],
    [undefined, { a: 1 }, { a: 1 }],
    ['string', null, undefined],
  ] as const)('%s ← %j = %j', (type, value, expected) => {
    expect(coerce(value, type)).toEqual(expected);
  });
});

describe('cookies', () => {
  it('finds one cookie among many, unquoted and decoded', () => {
    const h = 'a=1; sid="s%20one"; sidx=2; b=x=y';
    expect(cookieValue(h, 'sid')).toBe('s one');
    expect(cookieValue(h, 'b')).toBe('x=y');
    expect(cookieValue(h, 'missing')).toBeUndefined();
    expect(cookieValue('bad=%E0%A4%A', 'bad')).toBe('%E0%A4%A');
  });
});

describe('decision context', () => {
  const cfg = compileRoutesDocument({
    mode: 'active',
    origins: { shop: 'http://127.0.0.1:1' },
    session: { cookie: 'sid' },
    routes: [
      {
        match: { path: '/checkout/*' },
        origin: 'shop',
        context: 'checkout',
        extract: {
          '$.transaction.amount': { from: 'body', field: 'amount', type: 'integer' },
          '$.transaction.currency': { from: 'body', field: 'currency' },
          '$.customer.email': { from: 'body', field: 'buyer.email' },
          '$.customer.id': { from: 'cookie', name: 'uid' },
          '$.items_count': { from: 'body', field: 'items.length' },
          '$.first_sku': { from: 'body', field: 'items.0.sku' },
          '$.device.fingerprint': { from: 'header', name: 'X-Device-Id' },
          '$.metadata.channel': { from: 'query', field: 'ch' },
          '$.metadata.gift': { from: 'form', field: 'gift', type: 'boolean' },
          '$.transaction.proto': { from: 'body', field: 'toString' },
        },
      },
    ],
  });
  const route = cfg.routes[0]!;
  const build = (headers: Record<string, string>, body?: string, search = '') =>
    buildDecisionContext(
      route.extractors,
      {
        method: 'POST',
        path: '/checkout/pay',
        search,
        headers,
        ip: '203.0.113.7',
        body: body === undefined ? undefined : Buffer.from(body),
      },
      cfg.session,
      route.label,
    );

  it('builds the context from a JSON body, cookies, headers and query', () => {
    const built = build(
      {
        'content-type': 'application/json; charset=utf-8',
        cookie: 'sid=sess_1; uid=cus_7',
        'user-agent': 'test-agent',
        'x-device-id': 'dev_9',
      },
      JSON.stringify({
        amount: '14999',
        currency: 'EUR',
        buyer: { email: 'a@example.com' },
        items: [{ sku: 'sku_1' }],
      }),
      '?ch=web&ch=app',
    );
    expect(built.session).toBe('sess_1');
    expect(built.body).toEqual({
      device: {
        ip: '203.0.113.7',
        user_agent: 'test-agent',
        session: 'sess_1',
        fingerprint: 'dev_9',
      },
      metadata: { route: '/checkout/*', method: 'POST', path: '/checkout/pay', channel: 'web' },
      transaction: { amount: 14999, currency: 'EUR' },
      customer: { email: 'a@example.com', id: 'cus_7' },
      first_sku: 'sku_1',
    });
    // `gift` is a form field: in a JSON body it is out of the proxy's sight, not the origin's.
    expect(built.dropped).toEqual(['metadata.gift']);
  });

  it('reads a form body for body and form extractors', () => {
    const built = build(
      { 'content-type': 'application/x-www-form-urlencoded' },
      'amount=250&currency=USD&gift=yes',
    );
    expect(built.body.transaction).toEqual({ amount: 250, currency: 'USD' });
    expect((built.body.metadata as Record<string, unknown>).gift).toBe('true');
    expect(built.dropped).toEqual([]);
  });

  // PHP reads the last `amount`, Express an array, the proxy used to read the first.
  it('leaves out a form field sent more than once, and lists it as dropped', () => {
    const built = build(
      { 'content-type': 'application/x-www-form-urlencoded' },
      'amount=1&currency=USD&amount=150000&other=1&other=2',
    );
    expect(built.body.transaction).toEqual({ currency: 'USD' });
    expect(built.dropped).toEqual(['transaction.amount']);
  });

  it('leaves out what is missing or of the wrong type, without listing it', () => {
    const missing = build({ 'content-type': 'application/json' }, '{"currency": "EUR"}');
    expect(missing.body.transaction).toEqual({ currency: 'EUR' });
    expect(missing.body.device).toEqual({ ip: '203.0.113.7' });
    const wrong = build({ 'content-type': 'application/json' }, '{"amount": "12.5"}');
    expect(wrong.body.transaction).toBeUndefined();
    expect([missing.dropped, wrong.dropped]).toEqual([['metadata.gift'], ['metadata.gift']]);
    const none = build({ 'content-type': 'application/json' });
    expect([none.bodyUnreadable, none.dropped]).toEqual([false, []]);
  });

  const bodyTargets = [
    'transaction.amount',
    'transaction.currency',
    'customer.email',
    'items_count',
    'first_sku',
    'metadata.gift',
    'transaction.proto',
  ];

  it.each([
    ['JSON with trailing garbage', { 'content-type': 'application/json' }, '{"amount": 5} x'],
    ['JSON cut short', { 'content-type': 'application/json' }, '{"amount": "lots"'],
    ['a gzip body', { 'content-type': 'application/json', 'content-encoding': 'gzip' }, '\x1f\x8b'],
    [
      'a form body, deflated',
      { 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': 'Deflate' },
      'amount=5',
    ],
    ['a form body as text/plain', { 'content-type': 'text/plain' }, 'amount=5'],
    ['a form body without a type', {}, 'amount=5'],
    ['multipart', { 'content-type': 'multipart/form-data; boundary=x' }, '--x\r\n'],
    ['JSON-looking text/plain', { 'content-type': 'text/plain' }, '{"amount": 5'],
  ])('reports %s as unreadable: its body targets are dropped', (_what, headers, body) => {
    const built = build(headers, body);
    expect(built.bodyUnreadable).toBe(true);
    expect(built.body.transaction).toBeUndefined();
    expect(built.dropped).toEqual(bodyTargets);
    expect(built.body.device).toEqual({ ip: '203.0.113.7' });
  });

  it('reads an identity-encoded body', () => {
    const built = build(
      { 'content-type': 'application/json', 'content-encoding': ' Identity ' },
      '{"amount": 5}',
    );
    expect(built.body.transaction).toEqual({ amount: 5 });
  });

  it('reads JSON after a byte order mark, and JSON sent as another type', () => {
    for (const [headers, body] of [
      [{ 'content-type': 'application/json' }, '\ufeff{"amount": 5}'],
      [{ 'content-type': 'text/plain' }, ' \r\n{"amount": 5}'],
      [{ 'content-type': 'application/x-json' }, '\ufeff{"amount": 5}'],
      [{}, '{"amount": 5}'],
    ] as const) {
      const built = build(headers, body);
      expect([built.body.transaction, built.dropped]).toEqual([{ amount: 5 }, ['metadata.gift']]);
    }
  });

  it('lists a form field read from a JSON body as dropped', () => {
    const built = build({ 'content-type': 'application/json' }, '{"amount": 5, "gift": true}');
    expect(built.body.transaction).toEqual({ amount: 5 });
    expect(built.dropped).toEqual(['metadata.gift']);
  });
});
