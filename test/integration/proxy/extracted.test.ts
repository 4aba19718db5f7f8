// The proxy's and /api/authz's decisions in the real processes (`vigil api` and `vigil proxy`
// on one data dir), against a real origin:
// - a client value the decision API refuses (a negative amount, a 3 KB User-Agent, a card
//   number as a token) is left out and the rest decided: before, the whole context was refused
//   and the request forwarded without a decision, so any client could switch BLOCK rules off;
// - `vigil api` reads VIGIL_CONFIG for /api/authz: the route's query extractors and session
//   apply, and every check publishes a vigil.requests event.
import { statSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startOrigin, type Origin } from './helpers.ts';
import { startVigilProcesses, type VigilProcesses } from './processes.ts';

const TOKEN = 'vigil_test_admin_token_extracted_0123456789';
let origin: Origin;
let v: VigilProcesses;
let proxyUrl: string;
const api: VigilProcesses['api'] = (...args) => v.api(...args);
const events = () => v.events();

const ruleset = (context: string) => ({
  name: context,
  context,
  rules: [
    {
      id: 'bad-email',
      type: 'condition',
      action: 'BLOCK',
      condition: { eq: { path: '$.customer.email', value: 'bad@example.com' } },
    },
    {
      id: 'values-dropped',
      type: 'condition',
      action: 'REVIEW',
      condition: { neq: { path: '$.metadata.dropped', value: '' } },
    },
  ],
});

beforeAll(async () => {
  origin = await startOrigin();
  v = await startVigilProcesses({
    name: 'extracted',
    token: TOKEN,
    routes: {
      mode: 'active',
      origins: { shop: origin.url },
      session: { cookie: 'sid' },
      routes: [
        {
          match: { method: 'POST', path: '/checkout/*' },
          origin: 'shop',
          context: 'checkout',
          extract: {
            '$.transaction.amount': { from: 'body', field: 'amount', type: 'integer' },
            '$.credential_fingerprint': { from: 'body', field: 'card_token' },
            '$.customer.email': { from: 'body', field: 'email' },
          },
        },
        // The context's first route: authz falls back to it when no route of the context matches.
        { match: { path: '/other/*' }, origin: 'shop', context: 'login' },
        {
          match: { path: '/q/*' },
          origin: 'shop',
          context: 'login',
          extract: { '$.customer.email': { from: 'query', field: 'email' } },
        },
        { match: { path: '/*' }, origin: 'shop' },
      ],
    },
    rulesets: [ruleset('checkout'), ruleset('login')],
  });
  proxyUrl = v.proxyUrl;
}, 120_000);

afterAll(async () => {
  await v?.close();
  await origin?.close();
});

describe('a client value the decision API refuses', () => {
  it.each([
    ['a negative amount', { amount: -1 }, {}, 'transaction.amount'],
    ['a card number as token', { card_token: '4111111111111111' }, {}, 'credential_fingerprint'],
    ['a 3 KB User-Agent', {}, { 'user-agent': 'u'.repeat(3000) }, 'device.user_agent'],
  ])('(%s) is left out, and the BLOCK still blocks', async (_what, extra, headers, dropped) => {
    const before = origin.seen.length;
    const r = await request(`${proxyUrl}/checkout/cart`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({
        amount: 100,
        card_token: 'tok_1',
        email: 'bad@example.com',
        ...extra,
      }),
    });
    const body = (await r.body.json()) as { error: string; decision_id: string };
    expect(r.statusCode).toBe(403);
    expect(body.error).toBe('blocked');
    expect(origin.seen.length).toBe(before);
    const d = await api('GET', `/api/decisions/${body.decision_id}`);
    expect(d.body.decision).toBe('BLOCK');
    expect(d.body.degraded).toContain('context_values_dropped');
    expect(JSON.stringify(d.body)).not.toContain('4111111111111111');
    await eventually(
      () =>
        events().some(
          (e) =>
            e.schema === 'vigil.request/1' &&
            e.decision_id === body.decision_id &&
            e.dropped.includes(dropped),
        ),
      10_000,
    );
  });
});

it('a rule sees which values were left out ($.metadata.dropped)', async () => {
  const send = (amount: number) =>
    request(`${proxyUrl}/checkout/cart`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ amount, card_token: 'tok_2', email: 'good@example.com' }),
    });
  const clean = await send(100);
  await clean.body.dump();
  expect(clean.statusCode).toBe(200);
  expect(origin.seen.at(-1)?.headers['x-vigil-decision']).toBe('ALLOW');
  const spoiled = await send(-1);
  await spoiled.body.dump();
  expect(spoiled.statusCode).toBe(200);
  expect(origin.seen.at(-1)?.headers['x-vigil-decision']).toBe('REVIEW');
});

it('what `vigil api` creates in its data dir is its user’s alone', () => {
  for (const f of ['vigil.sqlite', 'secret.key']) {
    expect((statSync(path.join(v.dir, f)).mode & 0o077).toString(8), f).toBe('0');
  }
});

describe('/api/authz in `vigil api` with VIGIL_CONFIG', () => {
  it('applies the route’s query extractor and session, and publishes the check', async () => {
    const blocked = await api('GET', '/api/authz/login', undefined, {
      'x-original-uri': '/q/x?email=bad@example.com',
      'x-original-method': 'GET',
      cookie: 'sid=sess-authz',
    });
    expect(blocked.status).toBe(403);
    expect(blocked.headers['x-vigil-decision']).toBe('BLOCK');
    const id = String(blocked.headers['x-vigil-decision-id']);
    // Path parameters do not take a request off its route (Tomcat/Spring strip them).
    const params = await api('GET', '/api/authz/login', undefined, {
      'x-original-uri': '/q;a=1/x?email=bad@example.com',
      'x-original-method': 'GET',
    });
    expect(params.status).toBe(403);
    const ok = await api('GET', '/api/authz/login', undefined, {
      'x-original-uri': '/q/x?email=good@example.com',
      'x-original-method': 'GET',
    });
    expect(ok.status).toBe(200);
    await eventually(
      () =>
        events().some(
          (e) =>
            e.schema === 'vigil.request/1' &&
            e.decision_id === id &&
            e.session === 'sess-authz' &&
            e.path === '/q/x',
        ),
      10_000,
    );
  });
});
