// Monitored routes: extract, decide, enforce (active) or record (passive), fail open.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Readable } from 'node:stream';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import {
  eventually,
  metricValue,
  rawExchange,
  riskEngine,
  sha256,
  startOrigin,
  startProxy,
  type Origin,
  type TestProxy,
} from './helpers.ts';

const routes = (mode: 'active' | 'passive', origin: string) => ({
  mode,
  origins: { shop: origin },
  session: { cookie: 'sid' },
  routes: [
    {
      match: { method: 'POST', path: '/login' },
      origin: 'shop',
      context: 'login',
      extract: {
        '$.customer.email': { from: 'body', field: 'email' },
        '$.device.fingerprint': { from: 'header', name: 'x-device-id' },
      },
    },
    {
      match: { method: 'POST', path: '/checkout/*' },
      origin: 'shop',
      context: 'checkout',
      body_limit: 4096,
      extract: {
        '$.transaction.amount': { from: 'body', field: 'amount', type: 'integer' },
        '$.transaction.currency': { from: 'body', field: 'currency' },
        '$.credential_fingerprint': { from: 'body', field: 'card_token' },
        '$.customer.id': { from: 'cookie', name: 'uid' },
        '$.metadata.coupon': { from: 'query', field: 'coupon' },
        '$.gift': { from: 'body', field: 'gift', type: 'boolean' },
      },
    },
    {
      match: { method: 'POST', path: '/challenge' },
      origin: 'shop',
      context: 'login',
      extract: { '$.customer.email': { from: 'form', field: 'email' } },
      block: {
        status: 302,
        content_type: 'text/plain',
        body: 'see /verify ({{decision_id}})',
        headers: { location: '/verify?d={{decision_id}}' },
      },
    },
    {
      match: { method: 'PUT', path: '/avatar' },
      origin: 'shop',
      context: 'login',
      extract: { '$.customer.email': { from: 'query', field: 'email' } },
    },
    { match: { path: '/*' }, origin: 'shop' },
  ],
});

let origin: Origin;
let active: TestProxy;
let passive: TestProxy;
const engine = riskEngine();

beforeAll(async () => {
  origin = await startOrigin();
  active = await startProxy({
    config: routes('active', origin.url),
    decide: engine.decide,
    limits: { decision_timeout_ms: 150 },
  });
  passive = await startProxy({ config: routes('passive', origin.url), decide: engine.decide });
});
afterAll(async () => {
  await active?.close();
  await passive?.close();
  await origin?.close();
});
beforeEach(() => {
  engine.state.mode = 'normal';
});

const json = (body: unknown) => ({
  method: 'POST' as const,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});
const lastCall = () => engine.calls[engine.calls.length - 1]!;

/** A raw connection driven step by step: write, wait for what the proxy answered so far. */
async function rawSession(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  const state = { text: '', closed: false };
  socket.on('data', (c: Buffer) => (state.text += c.toString('latin1')));
  socket.on('close', () => (state.closed = true));
  socket.on('error', () => (state.closed = true));
  await new Promise((r) => socket.once('connect', r));
  return {
    state,
    write: (data: string | Buffer) => socket.write(data),
    async waitFor(re: RegExp, ms = 2_000) {
      const until = Date.now() + ms;
      while (!re.test(state.text) && !state.closed && Date.now() < until) await sleep(10);
      return state.text;
    },
    close: () => socket.destroy(),
  };
}

describe('active mode', () => {
  it('forwards ALLOW with the decision headers and the body byte for byte', async () => {
    const body = `{"email":"ann@example.com",  "note":"spacing \\u00e9 kept"}`;
    const res = await request(`${active.url}/login`, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        cookie: 'sid=sess_42',
        'user-agent': 'vitest-agent',
        'x-device-id': 'dev_1',
      },
    });
    expect(res.statusCode).toBe(200);
    const seen = (await res.body.json()) as {
      sha256: string;
      bytes: number;
      headers: Record<string, string>;
    };
    expect(seen.sha256).toBe(sha256(body));
    expect(seen.headers['content-length']).toBe(String(Buffer.byteLength(body)));
    expect(seen.headers['x-vigil-decision']).toBe('ALLOW');
    expect(seen.headers['x-vigil-decision-id']).toMatch(/^dec_t/);
    expect(lastCall()).toEqual({
      context: 'login',
      source: 'proxy',
      body: {
        customer: { email: 'ann@example.com' },
        device: {
          ip: '127.0.0.1',
          user_agent: 'vitest-agent',
          session: 'sess_42',
          fingerprint: 'dev_1',
        },
        metadata: { route: '/login', method: 'POST', path: '/login' },
      },
    });
    const e = active.events[active.events.length - 1]!;
    expect(e).toMatchObject({
      method: 'POST',
      path: '/login',
      route: '/login',
      context: 'login',
      mode: 'active',
      status: 200,
      decision: 'ALLOW',
      decision_id: seen.headers['x-vigil-decision-id'],
      fail_open: null,
      ip: '127.0.0.1',
      session: 'sess_42',
    });
    expect(e.elapsed_ms).toBeGreaterThan(0);
  });

  it('answers BLOCK with the block response and never calls the origin', async () => {
    const before = origin.started.length;
    const res = await request(`${active.url}/login`, json({ email: 'mallory@fraud.test' }));
    expect(res.statusCode).toBe(403);
    const body = (await res.body.json()) as { error: string; decision_id: string };
    expect(body.error).toBe('blocked');
    expect(body.decision_id).toMatch(/^dec_t/);
    expect(res.headers['x-vigil-decision']).toBe('BLOCK');
    expect(res.headers['x-vigil-decision-id']).toBe(body.decision_id);
    expect(origin.started.length).toBe(before);
    expect(active.events[active.events.length - 1]).toMatchObject({
      status: 403,
      decision: 'BLOCK',
    });
    expect(
      await metricValue(active.registry, 'vigil_proxy_decisions_total', {
        context: 'login',
        decision: 'BLOCK',
      }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('forwards REVIEW with its headers', async () => {
    const res = await request(`${active.url}/checkout/pay?coupon=SPRING`, {
      ...json({ amount: '150000', currency: 'EUR', card_token: 'tok_ok', gift: 'yes' }),
      headers: { 'content-type': 'application/json', cookie: 'uid=cus_7; sid=s9' },
    });
    const seen = (await res.body.json()) as { headers: Record<string, string>; url: string };
    expect(seen.url).toBe('/checkout/pay?coupon=SPRING');
    expect(seen.headers['x-vigil-decision']).toBe('REVIEW');
    expect(lastCall().body).toMatchObject({
      transaction: { amount: 150000, currency: 'EUR' },
      credential_fingerprint: 'tok_ok',
      customer: { id: 'cus_7' },
      metadata: { coupon: 'SPRING', route: '/checkout/*' },
      gift: true,
      device: { session: 's9' },
    });
  });

  it('coerces extracted values or leaves them out', async () => {
    await (
      await request(`${active.url}/checkout/pay`, json({ amount: '12.5', gift: 'perhaps' }))
    ).body.dump();
    const body = lastCall().body;
    expect(body.transaction).toBeUndefined();
    expect(body.gift).toBeUndefined();
    await (await request(`${active.url}/checkout/pay`, json({ amount: 4200 }))).body.dump();
    expect(lastCall().body).toMatchObject({ transaction: { amount: 4200 } });
  });

  it('decides on a form body and sends the custom block response', async () => {
    const before = origin.started.length;
    const res = await request(`${active.url}/challenge`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'email=eve%40fraud.test&remember=1',
    });
    expect(res.statusCode).toBe(302);
    expect(res.headers['content-type']).toBe('text/plain');
    const id = res.headers['x-vigil-decision-id'] as string;
    expect(res.headers.location).toBe(`/verify?d=${id}`);
    expect(await res.body.text()).toBe(`see /verify (${id})`);
    expect(origin.started.length).toBe(before);
  });

  it('re-frames a chunked monitored body with its Content-Length', async () => {
    const payload = JSON.stringify({ email: 'chunky@example.com', pad: 'x'.repeat(3000) });
    function* gen() {
      for (let i = 0; i < payload.length; i += 700) yield Buffer.from(payload.slice(i, i + 700));
    }
    const res = await request(`${active.url}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Readable.from(gen()),
    });
    const seen = (await res.body.json()) as { sha256: string; headers: Record<string, string> };
    expect(seen.sha256).toBe(sha256(payload));
    expect(seen.headers['content-length']).toBe(String(payload.length));
    expect(seen.headers['transfer-encoding']).toBeUndefined();
    expect(lastCall().body).toMatchObject({ customer: { email: 'chunky@example.com' } });
  });

  it('answers 413 over the body limit, by Content-Length or while streaming', async () => {
    const before = origin.started.length;
    const big = JSON.stringify({ amount: 1, pad: 'y'.repeat(5000) });
    const r1 = await request(`${active.url}/checkout/pay`, json(JSON.parse(big)));
    expect(r1.statusCode).toBe(413);
    expect(((await r1.body.json()) as { error: string }).error).toBe('payload_too_large');
    function* gen() {
      for (let i = 0; i < 10; i++) yield Buffer.alloc(1000, 0x20);
    }
    const r2 = await request(`${active.url}/checkout/pay`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Readable.from(gen()),
    }).catch((err: Error) => err);
    if (!(r2 instanceof Error)) {
      expect(r2.statusCode).toBe(413);
      await r2.body.dump();
    }
    expect(origin.started.length).toBe(before);
  });

  it('streams the body of a monitored route that does not read it', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const res = await request(`${active.url}/avatar?email=ok@example.com`, {
      method: 'PUT',
      body: data,
    });
    const seen = (await res.body.json()) as { sha256: string; headers: Record<string, string> };
    expect(seen.sha256).toBe(sha256(data));
    expect(seen.headers['x-vigil-decision']).toBe('ALLOW');
    const blocked = await request(`${active.url}/avatar?email=x@fraud.test`, {
      method: 'PUT',
      body: data,
    });
    expect(blocked.statusCode).toBe(403);
    expect(blocked.headers.connection).toBe('close');
    await blocked.body.dump();
  });

  it('strips forged x-vigil-* headers on monitored routes', async () => {
    const res = await request(`${active.url}/login`, {
      ...json({ email: 'x@fraud.test' }),
      headers: {
        'content-type': 'application/json',
        'x-vigil-decision': 'ALLOW',
        'x-vigil-decision-id': 'dec_forged',
      },
    });
    expect(res.statusCode).toBe(403);
    await res.body.dump();
    engine.state.mode = 'throw';
    const r2 = await request(`${active.url}/login`, {
      ...json({ email: 'x@fraud.test' }),
      headers: { 'content-type': 'application/json', 'x-vigil-decision': 'ALLOW' },
    });
    const seen = (await r2.body.json()) as { headers: Record<string, string> };
    expect(seen.headers['x-vigil-decision']).toBeUndefined();
  });

  it('normalizes the path before matching, so spellings of /login cannot skip the check', async () => {
    for (const path of [
      '//login',
      '/LOGIN',
      '/%6Cogin',
      '/x/../login',
      '/./login/',
      // Path parameters, which Tomcat and Spring drop before routing.
      '/login;x=1',
      '/LOGIN;jsessionid=ABC',
      '/login;/',
      '/x/..;/login',
      '/;a/login;b',
    ]) {
      const { text } = await rawExchange(
        active.port,
        `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
          `Content-Length: 24\r\nConnection: close\r\n\r\n{"email":"m@fraud.test"}`,
      );
      expect(text, path).toMatch(/^HTTP\/1\.1 403 /);
    }
  });

  it('matches without path parameters but forwards them as received', async () => {
    const res = await request(
      `${active.url}/login;jsessionid=ABC?next=/a`,
      json({ email: 'p@example.com' }),
    );
    const seen = (await res.body.json()) as { url: string; headers: Record<string, string> };
    expect(seen.url).toBe('/login;jsessionid=ABC?next=/a');
    expect(seen.headers['x-vigil-decision']).toBe('ALLOW');
    expect(lastCall().body).toMatchObject({ customer: { email: 'p@example.com' } });
  });

  it('neither decides nor forwards what is pipelined behind a block that closes the connection', async () => {
    const calls = engine.calls.length;
    const before = origin.started.length;
    // The route decides on the query: the chunked body is still unread when the block is sent.
    const { text, closed } = await rawExchange(
      active.port,
      'PUT /avatar?email=x@fraud.test HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
        '5\r\nhello\r\n0\r\n\r\n' +
        'GET /after HTTP/1.1\r\nHost: x\r\n\r\n' +
        'PUT /avatar?email=ok@example.com HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n',
    );
    expect(text).toMatch(/^HTTP\/1\.1 403 /);
    expect(text).toMatch(/\r\nconnection: close\r\n/i);
    expect(text.match(/HTTP\/1\.1 \d{3} /g)).toHaveLength(1);
    expect(closed).toBe(true);
    expect(origin.started.slice(before)).toEqual([]);
    expect(engine.calls.slice(calls).map((c) => c.body.customer)).toEqual([
      { email: 'x@fraud.test' },
    ]);
  });

  it('serves what is pipelined behind a block that keeps the connection, after it', async () => {
    const before = origin.started.length;
    const body = '{"email":"m@fraud.test"}';
    const { text } = await rawExchange(
      active.port,
      'POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
        `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n` +
        'GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(text.match(/HTTP\/1\.1 \d{3} /g)).toEqual(['HTTP/1.1 403 ', 'HTTP/1.1 200 ']);
    expect(origin.started.slice(before)).toEqual(['GET /after']);
  });

  it('answers 413 at once, without 100 Continue, to an announced body over the limit', async () => {
    const before = origin.started.length;
    const { text, closed } = await rawExchange(
      active.port,
      'POST /checkout/pay HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
        'Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n',
    );
    expect(text).toMatch(/^HTTP\/1\.1 413 /);
    expect(text).not.toContain('100 Continue');
    expect(closed).toBe(true);
    expect(origin.started.length).toBe(before);
  });

  it('answers a block without 100 Continue when the route decides before the body', async () => {
    const { text } = await rawExchange(
      active.port,
      'PUT /avatar?email=x@fraud.test HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n' +
        'Expect: 100-continue\r\n\r\n',
    );
    expect(text).toMatch(/^HTTP\/1\.1 403 /);
    expect(text).not.toContain('100 Continue');
  });

  it.each([
    [
      'a monitored route that reads the body',
      'POST /login',
      '{"email":"cont@example.com"}',
      'ALLOW',
    ],
    [
      'a monitored route that streams the body',
      'PUT /avatar?email=ok@example.com',
      'x'.repeat(3000),
      'ALLOW',
    ],
    ['a pass-through route', 'POST /upload', 'y'.repeat(3000), undefined],
  ])('sends 100 Continue and then takes the body on %s', async (_name, line, body, decision) => {
    const s = await rawSession(active.port);
    try {
      s.write(
        `${line} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`,
      );
      expect(await s.waitFor(/\r\n\r\n/)).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\n$/);
      s.write(body.slice(0, 1000));
      if (decision === undefined) {
        // Pass-through streams: the origin has the request before the body is complete.
        await eventually(() => origin.started.includes('POST /upload'));
      }
      s.write(body.slice(1000));
      const text = await s.waitFor(/\r\n0\r\n\r\n$/);
      expect(text).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
      const seen = JSON.parse(/\{.*\}/s.exec(text)?.[0] ?? '') as {
        sha256: string;
        headers: Record<string, string>;
      };
      expect(seen.sha256).toBe(sha256(body));
      expect(seen.headers.expect).toBeUndefined();
      expect(seen.headers['x-vigil-decision']).toBe(decision);
    } finally {
      s.close();
    }
  });

  it('fails open when the engine throws, and counts it', async () => {
    const before = await metricValue(active.registry, 'vigil_proxy_fail_open_total', {
      context: 'login',
      reason: 'error',
    });
    engine.state.mode = 'throw';
    const res = await request(`${active.url}/login`, json({ email: 'mallory@fraud.test' }));
    expect(res.statusCode).toBe(200);
    const seen = (await res.body.json()) as { headers: Record<string, string> };
    expect(seen.headers['x-vigil-decision']).toBeUndefined();
    expect(
      await metricValue(active.registry, 'vigil_proxy_fail_open_total', {
        context: 'login',
        reason: 'error',
      }),
    ).toBe(before + 1);
    expect(active.events[active.events.length - 1]).toMatchObject({
      fail_open: 'error',
      decision: null,
    });
  });

  it('fails open when the engine misses its deadline', async () => {
    engine.state.mode = 'hang';
    const t0 = Date.now();
    const res = await request(`${active.url}/login`, json({ email: 'mallory@fraud.test' }));
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(
      await metricValue(active.registry, 'vigil_proxy_fail_open_total', {
        context: 'login',
        reason: 'timeout',
      }),
    ).toBeGreaterThanOrEqual(1);
  });
});

// A security audit's evasions: each variant of the baseline checkout (REVIEW on its amount) was
// decided ALLOW with nothing dropped, its body values out of the rules' sight. Now either the
// proxy reads the body as the origin does, or it lists the body's targets as dropped.
describe('a body the rules cannot see is reported', () => {
  const cart = { amount: 150000, currency: 'EUR', card_token: 'tok_1' };
  const BODY_TARGETS = [
    'transaction.amount',
    'transaction.currency',
    'credential_fingerprint',
    'gift',
  ];
  const checkout = async (body: string | Buffer, headers: Record<string, string>) => {
    const res = await request(`${active.url}/checkout/cart`, { method: 'POST', headers, body });
    const seen = (await res.body.json()) as {
      sha256: string;
      headers: Record<string, string | undefined>;
    };
    expect(res.statusCode).toBe(200);
    // The origin gets the body as sent, whatever the proxy made of it.
    expect(seen.sha256).toBe(sha256(body));
    const id = seen.headers['x-vigil-decision-id'];
    await eventually(() => active.events.some((e) => e.decision_id === id));
    return {
      decision: seen.headers['x-vigil-decision'],
      seen,
      input: lastCall(),
      event: active.events.find((e) => e.decision_id === id)!,
    };
  };

  it('the baseline is decided REVIEW on its amount, nothing dropped', async () => {
    const r = await checkout(JSON.stringify(cart), { 'content-type': 'application/json' });
    expect(r.decision).toBe('REVIEW');
    expect(r.input.body).toMatchObject({ transaction: { amount: 150000 } });
    expect(r.input.dropped).toBeUndefined();
    expect(r.event.dropped).toBeUndefined();
  });

  it.each([
    ['gzip', gzipSync],
    ['deflate', deflateSync],
    ['br', brotliCompressSync],
  ])('(1) a %s-encoded body: its targets are dropped', async (encoding, compress) => {
    const r = await checkout(compress(JSON.stringify(cart)), {
      'content-type': 'application/json',
      'content-encoding': encoding,
    });
    expect(r.decision).toBe('REVIEW');
    expect(r.input.body.transaction).toBeUndefined();
    expect(r.input.dropped).toEqual(BODY_TARGETS);
    expect(r.event.dropped).toEqual(BODY_TARGETS);
    expect(r.seen.headers['content-encoding']).toBe(encoding);
  });

  it('(2) JSON after a byte order mark is read', async () => {
    const r = await checkout(`\ufeff${JSON.stringify(cart)}`, {
      'content-type': 'application/json',
    });
    expect(r.decision).toBe('REVIEW');
    expect(r.input.body).toMatchObject({ transaction: { amount: 150000, currency: 'EUR' } });
    expect(r.input.dropped).toBeUndefined();
  });

  it.each([
    ['text/plain', 'text/plain'],
    ['application/x-json', 'application/x-json'],
    ['text/json', 'text/json; charset=utf-8'],
    ['no type', undefined],
  ])('(3) JSON sent as %s is read as JSON', async (_what, type) => {
    const r = await checkout(` ${JSON.stringify(cart)}`, type ? { 'content-type': type } : {});
    expect(r.seen.headers['content-type']).toBe(type);
    expect(r.decision).toBe('REVIEW');
    expect(r.input.body).toMatchObject({ transaction: { amount: 150000 } });
    expect(r.input.dropped).toBeUndefined();
  });

  it.each([
    ['text/plain', '{"amount":150000,'],
    ['text/plain', 'amount=150000'],
    ['multipart/form-data; boundary=b', '--b\r\ncontent-disposition: form-data; name="amount"'],
  ])('(3) any other body of type %s: its targets are dropped', async (type, body) => {
    const r = await checkout(body, { 'content-type': type });
    expect(r.decision).toBe('REVIEW');
    expect(r.input.dropped).toEqual(BODY_TARGETS);
  });

  it('(4) JSON with trailing garbage: its targets are dropped', async () => {
    const r = await checkout(`${JSON.stringify(cart)} x`, { 'content-type': 'application/json' });
    expect(r.decision).toBe('REVIEW');
    expect(r.input.dropped).toEqual(BODY_TARGETS);
    expect(r.event.dropped).toEqual(BODY_TARGETS);
  });

  it('(5) a form field sent twice is left out and dropped; the others are read', async () => {
    const r = await checkout('amount=1&currency=EUR&amount=150000&card_token=tok_1', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(r.decision).toBe('REVIEW');
    expect(r.input.body).toMatchObject({
      transaction: { currency: 'EUR' },
      credential_fingerprint: 'tok_1',
    });
    expect(r.input.body.transaction).not.toHaveProperty('amount');
    expect(r.input.dropped).toEqual(['transaction.amount']);
    expect(r.event.dropped).toEqual(['transaction.amount']);
  });

  it('(6) a backslash, raw or encoded, routes as a slash; the origin gets it as sent', async () => {
    const body = JSON.stringify(cart);
    for (const path of ['/checkout\\cart', '/checkout%5Ccart', '/CHECKOUT%5c.%5Ccart']) {
      const { text } = await rawExchange(
        active.port,
        `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
      );
      expect(text, path).toMatch(/^HTTP\/1\.1 200 /);
      const seen = origin.seen.at(-1)!;
      expect(seen.url, path).toBe(path);
      expect(seen.headers['x-vigil-decision'], path).toBe('REVIEW');
      expect(lastCall().body, path).toMatchObject({
        transaction: { amount: 150000 },
        metadata: { route: '/checkout/*', path },
      });
    }
  });
});

describe('passive mode', () => {
  it('forwards what active mode would block, with the decision, and records it', async () => {
    const res = await request(`${passive.url}/login`, json({ email: 'mallory@fraud.test' }));
    expect(res.statusCode).toBe(200);
    const seen = (await res.body.json()) as { headers: Record<string, string> };
    expect(seen.headers['x-vigil-decision']).toBe('BLOCK');
    expect(seen.headers['x-vigil-mode']).toBe('passive');
    expect(passive.events[passive.events.length - 1]).toMatchObject({
      mode: 'passive',
      decision: 'BLOCK',
      status: 200,
    });
  });
});

describe('trusted proxies and overload', () => {
  it('takes the client address from X-Forwarded-For only behind a trusted proxy', async () => {
    const trustedP = await startProxy({
      config: routes('active', origin.url),
      decide: engine.decide,
      trustedProxies: ['loopback'],
    });
    try {
      await (
        await request(`${trustedP.url}/login`, {
          ...json({ email: 'a@example.com' }),
          headers: {
            'content-type': 'application/json',
            'x-forwarded-for': '198.51.100.1, 203.0.113.9',
          },
        })
      ).body.dump();
      expect(lastCall().body).toMatchObject({ device: { ip: '203.0.113.9' } });
    } finally {
      await trustedP.close();
    }
    await (
      await request(`${active.url}/login`, {
        ...json({ email: 'a@example.com' }),
        headers: { 'content-type': 'application/json', 'x-forwarded-for': '203.0.113.9' },
      })
    ).body.dump();
    expect(lastCall().body).toMatchObject({ device: { ip: '127.0.0.1' } });
  });

  it.each(['pass_through', 'reject'] as const)(
    'sheds monitored requests over max_inflight_decisions (%s)',
    async (overload) => {
      const slow = riskEngine();
      slow.state.mode = 'slow';
      slow.state.slowMs = 300;
      const t = await startProxy({
        config: {
          ...routes('active', origin.url),
          limits: { max_inflight_decisions: 1, overload },
        },
        decide: slow.decide,
      });
      try {
        const first = request(`${t.url}/login`, json({ email: 'first@fraud.test' }));
        await sleep(50);
        const second = await request(`${t.url}/login`, json({ email: 'second@fraud.test' }));
        if (overload === 'reject') {
          expect(second.statusCode).toBe(503);
          expect(second.headers['retry-after']).toBe('1');
          expect(((await second.body.json()) as { error: string }).error).toBe('overloaded');
        } else {
          expect(second.statusCode).toBe(200);
          const seen = (await second.body.json()) as { headers: Record<string, string> };
          expect(seen.headers['x-vigil-decision']).toBeUndefined();
        }
        expect((await first).statusCode).toBe(403);
        expect(
          await metricValue(t.registry, 'vigil_proxy_overload_total', { policy: overload }),
        ).toBe(1);
        expect(t.events.find((e) => e.fail_open === 'overload')).toBeDefined();
        expect(slow.calls).toHaveLength(1);
      } finally {
        await t.close();
      }
    },
  );
});
