// The audit's evasions against the real processes (`vigil api` and `vigil proxy` on one data
// dir, a real origin, the product's engine and decideExtracted): the baseline checkout is REVIEW
// on its amount, and no way of sending it (compressed, after a BOM, under another content type,
// with trailing garbage, with its amount twice, on a backslashed path) gets a clean ALLOW. A body
// the proxy cannot read reaches the rules as `$.metadata.dropped`.
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, rawExchange, startOrigin, type Origin } from './helpers.ts';
import { startVigilProcesses, type VigilProcesses } from './processes.ts';

const TOKEN = 'vigil_test_admin_token_evasion_0123456789ab';
let origin: Origin;
let v: VigilProcesses;
let proxyPort: number;
const api: VigilProcesses['api'] = (...args) => v.api(...args);
const events = () => v.events();

beforeAll(async () => {
  origin = await startOrigin();
  v = await startVigilProcesses({
    name: 'evasion',
    token: TOKEN,
    routes: {
      mode: 'active',
      origins: { shop: origin.url },
      routes: [
        {
          match: { method: 'POST', path: '/checkout/*' },
          origin: 'shop',
          context: 'checkout',
          extract: {
            '$.transaction.amount': { from: 'body', field: 'amount', type: 'integer' },
            '$.transaction.currency': { from: 'body', field: 'currency' },
            '$.credential_fingerprint': { from: 'body', field: 'card_token' },
          },
        },
        { match: { path: '/*' }, origin: 'shop' },
      ],
    },
    rulesets: [
      {
        name: 'checkout',
        context: 'checkout',
        rules: [
          {
            id: 'big-amount',
            type: 'condition',
            action: 'REVIEW',
            condition: { gte: { path: '$.transaction.amount', value: 100000 } },
          },
          {
            id: 'values-dropped',
            type: 'condition',
            action: 'REVIEW',
            condition: { neq: { path: '$.metadata.dropped', value: '' } },
          },
        ],
      },
    ],
  });
  proxyPort = v.proxyPort;
}, 120_000);

afterAll(async () => {
  await v?.close();
  await origin?.close();
});

const cart = JSON.stringify({ amount: 150000, currency: 'EUR', card_token: 'tok_1' });

/** Sends one raw request; what the origin got with it. */
async function send(target: string, headers: string[], body: string | Buffer) {
  const before = origin.seen.length;
  const head =
    `POST ${target} HTTP/1.1\r\nHost: shop\r\n${headers.map((h) => `${h}\r\n`).join('')}` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`;
  const { text } = await rawExchange(
    proxyPort,
    Buffer.concat([Buffer.from(head), Buffer.from(body)]),
  );
  expect(text).toMatch(/^HTTP\/1\.1 200 /);
  expect(origin.seen.length).toBe(before + 1);
  return origin.seen.at(-1)!;
}

const JSON_TYPE = 'Content-Type: application/json';
const ALL = 'transaction.amount,transaction.currency,credential_fingerprint';

it.each([
  ['the baseline', '/checkout/cart', [JSON_TYPE], cart, undefined],
  ['(1) gzip', '/checkout/cart', [JSON_TYPE, 'Content-Encoding: gzip'], gzipSync(cart), ALL],
  ['(2) a BOM', '/checkout/cart', [JSON_TYPE], `\ufeff${cart}`, undefined],
  ['(3) text/plain', '/checkout/cart', ['Content-Type: text/plain'], cart, undefined],
  [
    '(3) application/x-json',
    '/checkout/cart',
    ['Content-Type: application/x-json'],
    cart,
    undefined,
  ],
  ['(3) no content type', '/checkout/cart', [], cart, undefined],
  ['(4) trailing garbage', '/checkout/cart', [JSON_TYPE], `${cart} x`, ALL],
  [
    '(5) a repeated form field',
    '/checkout/cart',
    ['Content-Type: application/x-www-form-urlencoded'],
    'amount=1&amount=150000&currency=EUR&card_token=tok_1',
    'transaction.amount',
  ],
  ['(6) a backslash', '/checkout\\cart', [JSON_TYPE], cart, undefined],
  ['(6) an encoded backslash', '/checkout%5Ccart', [JSON_TYPE], cart, undefined],
])('%s is decided REVIEW', async (_what, target, headers, body, dropped) => {
  const seen = await send(target, headers, body);
  expect(seen.url).toBe(target);
  expect(seen.headers['x-vigil-decision']).toBe('REVIEW');
  const id = String(seen.headers['x-vigil-decision-id']);
  const d = await api('GET', `/api/decisions/${id}`);
  expect(d.status).toBe(200);
  if (dropped === undefined) {
    expect(d.body.degraded ?? []).not.toContain('context_values_dropped');
    return;
  }
  expect(d.body.degraded).toContain('context_values_dropped');
  await eventually(
    () =>
      events().some(
        (e) =>
          e.schema === 'vigil.request/1' && e.decision_id === id && e.dropped.join(',') === dropped,
      ),
    10_000,
  );
});

it('a clean checkout is still ALLOW: neither rule fires on its own', async () => {
  const seen = await send(
    '/checkout/cart',
    [JSON_TYPE],
    JSON.stringify({ amount: 100, currency: 'EUR', card_token: 'tok_1' }),
  );
  expect(seen.headers['x-vigil-decision']).toBe('ALLOW');
});
