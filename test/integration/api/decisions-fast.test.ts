// POST /api/decisions has two ways in: the fast path on node:http (routes/decisions-fast.ts)
// and the fastify route behind it. The same requests, sent over a real socket and through
// fastify's inject(), must get the same status and the same answer (but for the fresh ids and
// timings); what the fast path takes must never reach fastify, and what it leaves (odd content
// types, chunked or oversized bodies, unknown query strings) must reach it untouched.
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, auth, injectJson, startRuntime } from './helpers.ts';

type Rt = Awaited<ReturnType<typeof startRuntime>>;
let rt: Rt;
let base: string;
let readerToken: string;
// Every request fastify sees, as "METHOD url".
const seenByFastify: string[] = [];

beforeAll(async () => {
  rt = await startRuntime();
  rt.app.addHook('onRequest', (req, _reply, done) => {
    seenByFastify.push(`${req.method} ${req.url}`);
    done();
  });
  await rt.app.listen({ port: 0, host: '127.0.0.1' });
  const addr = rt.app.server.address();
  if (!addr || typeof addr === 'string') throw new Error('no address');
  base = `http://127.0.0.1:${addr.port}`;
  const rs = await injectJson(rt, 'POST', '/api/admin/rulesets', {
    name: 'fast path',
    context: 'checkout',
    rules: [
      { id: 'bl', type: 'blacklist', action: 'BLOCK', fields: ['$.device.ip'] },
      {
        id: 'big',
        type: 'condition',
        action: 'BLOCK',
        condition: { gte: { path: '$.transaction.amount', value: 100_000 } },
      },
      {
        id: 'eur',
        type: 'condition',
        action: 'ALLOW',
        live: false,
        condition: { eq: { path: '$.transaction.currency', value: 'EUR' } },
      },
    ],
  });
  expect(rs.status, rs.text).toBe(201);
  expect((await injectJson(rt, 'POST', `/api/admin/rulesets/${rs.body.id}/activate`)).status).toBe(
    200,
  );
  expect(
    (
      await injectJson(rt, 'POST', '/api/admin/blacklist', {
        field_path: '$.device.ip',
        value: '198.51.100.66',
      })
    ).status,
  ).toBe(201);
  const t = await injectJson(rt, 'POST', '/api/admin/tokens', {
    name: 'reader',
    scopes: ['decisions:read'],
  });
  readerToken = t.body.token as string;
});
afterAll(async () => rt?.close());

interface Req {
  name: string;
  url?: string;
  headers?: Record<string, string>;
  body: string;
  /** Whether the fast path answers it (true) or leaves it to fastify. */
  fast: boolean;
}

const card = { type: 'masked_pan', bin: '411111', last4: '4242', expiry: '12/29' };
const ok = (o: object) => JSON.stringify({ context: 'checkout', ...o });
const CASES: Req[] = [
  { name: 'allow', body: ok({ transaction: { amount: 100, currency: 'EUR' } }), fast: true },
  { name: 'block', body: ok({ transaction: { amount: 200_000 } }), fast: true },
  { name: 'blacklisted ip', body: ok({ device: { ip: '198.51.100.66' } }), fast: true },
  { name: 'ipv6 (zod path)', body: ok({ device: { ip: '2001:db8::66' } }), fast: true },
  { name: 'card', body: ok({ credential: card, customer: { id: 'c1' } }), fast: true },
  { name: 'default context', body: JSON.stringify({ transaction: { amount: 1 } }), fast: true },
  { name: 'dry run', url: '/api/decisions?dry_run=true', body: ok({}), fast: true },
  { name: 'dry run false', url: '/api/decisions?dry_run=false', body: ok({}), fast: true },
  {
    name: 'charset',
    headers: { 'content-type': 'Application/JSON;charset=UTF-8' },
    body: ok({}),
    fast: true,
  },
  { name: 'bad amount', body: ok({ transaction: { amount: 1.5 } }), fast: true },
  { name: 'bad bin', body: ok({ credential: { ...card, bin: '41' } }), fast: true },
  { name: 'bad context', body: JSON.stringify({ context: 'Bad Context' }), fast: true },
  {
    name: 'both credentials',
    body: ok({ credential: card, credential_fingerprint: 'crd_x' }),
    fast: true,
  },
  { name: 'backends set by the caller', body: ok({ backends: [] }), fast: true },
  { name: 'not json', body: '{"context": "checkout",', fast: true },
  { name: 'json array', body: '[1,2]', fast: true },
  { name: 'json string', body: '"x"', fast: true },
  { name: 'proto poisoning', body: '{"context":"checkout","__proto__":{"x":1}}', fast: true },
  {
    name: 'constructor poisoning',
    body: '{"context":"checkout","constructor":{"prototype":{"x":1}}}',
    fast: true,
  },
  {
    name: 'raw PAN refused',
    body: ok({ credential: { type: 'pan', number: '4111111111111111' } }),
    fast: true,
  },
  { name: 'no token', headers: { authorization: '' }, body: ok({}), fast: true },
  { name: 'bad token', headers: { authorization: 'Bearer vgl_nope' }, body: ok({}), fast: true },
  { name: 'wrong scope', headers: { authorization: 'READER' }, body: ok({}), fast: true },
  // Left to fastify.
  { name: 'text/plain', headers: { 'content-type': 'text/plain' }, body: ok({}), fast: false },
  { name: 'no content type', headers: { 'content-type': '' }, body: ok({}), fast: false },
  { name: 'other query', url: '/api/decisions?dry_run=true&x=1', body: ok({}), fast: false },
  { name: 'bad query', url: '/api/decisions?dry_run=yes', body: ok({}), fast: false },
  { name: 'trailing slash', url: '/api/decisions/', body: ok({}), fast: false },
  { name: 'empty body', body: '', fast: false },
  {
    name: 'too large',
    body: ok({ other: 'x'.repeat(1024 * 1024) }),
    fast: false,
  },
];

function headersOf(c: Req): Record<string, string> {
  const h: Record<string, string> = {
    'content-type': 'application/json',
    ...auth(),
    ...c.headers,
  };
  if (h.authorization === 'READER') h.authorization = `Bearer ${readerToken}`;
  for (const k of Object.keys(h)) if (h[k] === '') delete h[k];
  return h;
}

// What may differ between two answers to the same request: fresh ids (the case's too) and timings.
function normalize(text: string): unknown {
  const v = JSON.parse(text) as Record<string, unknown>;
  if (typeof v.id === 'string') v.id = 'dec_*';
  if (typeof v.elapsed_ms === 'number') v.elapsed_ms = 0;
  if (typeof v.workflow_id === 'string') v.workflow_id = v.workflow_id.replace(/dec_\w+/, 'dec_*');
  return v;
}

describe('POST /api/decisions: the fast path and the fastify route answer alike', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const url = c.url ?? '/api/decisions';
    const headers = headersOf(c);
    const before = seenByFastify.length;
    const viaSocket = await request(`${base}${url}`, { method: 'POST', headers, body: c.body });
    const socketText = await viaSocket.body.text();
    const reachedFastify = seenByFastify.slice(before).some((s) => s.startsWith('POST '));
    expect(reachedFastify).toBe(!c.fast);

    const viaFastify = await rt.app.inject({ method: 'POST', url, headers, payload: c.body });
    expect(viaSocket.statusCode, socketText).toBe(viaFastify.statusCode);
    expect(viaSocket.headers['content-type']).toBe(viaFastify.headers['content-type']);
    expect(normalize(socketText)).toEqual(normalize(viaFastify.body));
  });

  it('a chunked body is left to fastify and still decided', async () => {
    const before = seenByFastify.length;
    const res = await request(`${base}/api/decisions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth() },
      // A stream body is sent chunked (no Content-Length).
      body: Readable.from([
        Buffer.from('{"context":"checkout",'),
        Buffer.from('"transaction":{"amount":200000}}'),
      ]),
    });
    expect(res.statusCode).toBe(200);
    expect(((await res.body.json()) as { decision: string }).decision).toBe('BLOCK');
    expect(seenByFastify.slice(before)).toContain('POST /api/decisions');
  });

  it('a fast-path decision is logged, found by id and counted in /metrics', async () => {
    const res = await request(`${base}/api/decisions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth(), 'idempotency-key': 'fast-1' },
      body: ok({ transaction: { amount: 200_000 } }),
    });
    const answer = (await res.body.json()) as { id: string; decision: string };
    expect(answer.decision).toBe('BLOCK');
    // The same key is the same decision, on either path.
    const again = await rt.app.inject({
      method: 'POST',
      url: '/api/decisions',
      headers: { 'content-type': 'application/json', ...auth(), 'idempotency-key': 'fast-1' },
      payload: ok({ transaction: { amount: 200_000 } }),
    });
    expect(JSON.parse(again.body).id).toBe(answer.id);
    const found = await injectJson(rt, 'GET', `/api/decisions/${answer.id}`, undefined, ADMIN);
    expect(found.status).toBe(200);
    expect(found.body.decision).toBe('BLOCK');
    const metrics = (await rt.app.inject({ url: '/metrics' })).body;
    expect(metrics).toMatch(/vigil_decisions_total\{context="checkout",outcome="BLOCK"\} [1-9]/);
    expect(metrics).toMatch(/vigil_api_errors_total\{code="unauthorized"\} [1-9]/);
  });

  it('a client that goes away mid-body leaves the server answering others', async () => {
    const net = await import('node:net');
    const { port } = new URL(base);
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(Number(port), '127.0.0.1', () => {
        s.write(
          `POST /api/decisions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${ADMIN}\r\n` +
            'content-type: application/json\r\ncontent-length: 100\r\n\r\n{"context":',
        );
        setTimeout(() => {
          s.destroy();
          resolve();
        }, 50);
      });
      s.on('error', reject);
    });
    const res = await request(`${base}/api/decisions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth() },
      body: ok({}),
    });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
  });
});
