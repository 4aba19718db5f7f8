// Regression tests for request smuggling, slowloris and header abuse, over raw sockets: what
// an attacker sends is bytes, not what an HTTP client library agrees to produce.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import {
  metricValue,
  rawExchange,
  startOrigin,
  startProxy,
  type Origin,
  type TestProxy,
} from './helpers.ts';

let origin: Origin;
let p: TestProxy;

beforeAll(async () => {
  origin = await startOrigin();
  p = await startProxy({
    config: {
      mode: 'active',
      origins: { shop: origin.url },
      routes: [
        {
          match: { method: 'POST', path: '/login' },
          origin: 'shop',
          context: 'login',
          extract: { '$.customer.email': { from: 'body', field: 'email' } },
        },
        { match: { path: '/*' }, origin: 'shop' },
      ],
      limits: { headers_timeout_ms: 600, max_header_size: 4096, max_headers_count: 30 },
    },
  });
});
afterAll(async () => {
  await p?.close();
  await origin?.close();
});

const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';

const vectors: [string, string][] = [
  [
    'CL.TE: Content-Length with Transfer-Encoding',
    `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  ],
  [
    'TE.CL: Transfer-Encoding then Content-Length',
    `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n${SMUGGLED}0\r\n\r\n`,
  ],
  [
    'duplicate Content-Length, different values',
    `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
  ],
  [
    'duplicate Content-Length, same value',
    `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok${SMUGGLED}`,
  ],
  [
    'Content-Length list',
    `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\nok${SMUGGLED}`,
  ],
  [
    'signed Content-Length',
    `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nok${SMUGGLED}`,
  ],
  ['hex Content-Length', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x2\r\n\r\nok${SMUGGLED}`],
  [
    'obs-fold hiding Transfer-Encoding',
    `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Foo: bar\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  ],
  [
    'obs-fold continuing a header',
    `GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n b\r\n\r\n${SMUGGLED}`,
  ],
  ['bare LF line endings', `GET /a HTTP/1.1\nHost: x\n\n${SMUGGLED}`],
  ['bare LF inside the headers', `GET /a HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n${SMUGGLED}`],
  [
    'space before the colon',
    `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  ],
  [
    'Transfer-Encoding not ending in chunked',
    `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  ],
  [
    'unknown Transfer-Encoding',
    `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  ],
  [
    'two Transfer-Encoding headers',
    `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  ],
  ['NUL in a header value', `GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n${SMUGGLED}`],
  ['missing Host on HTTP/1.1', `GET /a HTTP/1.1\r\n\r\n${SMUGGLED}`],
  ['two Host headers', `GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n${SMUGGLED}`],
  ['two Host headers, cased apart', `GET /a HTTP/1.1\r\nhost: a\r\nHOST: a\r\n\r\n${SMUGGLED}`],
  ['two Host headers on HTTP/1.0', `GET /a HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n${SMUGGLED}`],
  [
    'two Host headers on a monitored route',
    `POST /login HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}${SMUGGLED}`,
  ],
  [
    'two Host headers on an upgrade',
    'GET /ws HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  ],
  ['HTTP/0.9-style request line', `GET /a\r\n\r\n${SMUGGLED}`],
  [
    'CL.TE on a monitored route',
    `POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  ],
];

describe('request smuggling', () => {
  it.each(vectors)(
    '%s → 400, and the origin never sees a smuggled request',
    async (_name, bytes) => {
      const before = origin.started.length;
      const { text, closed } = await rawExchange(p.port, bytes, 2_000);
      expect(text).toMatch(/^HTTP\/1\.1 (400|505) /);
      // One answer and the connection is closed: nothing after the bad message is parsed.
      expect(text.match(/(^|\r\n)HTTP\/1\.1 \d{3} /g)).toHaveLength(1);
      expect(closed).toBe(true);
      expect(origin.started.slice(before)).not.toContain('GET /smuggled');
      expect(origin.started.slice(before)).toEqual([]);
    },
  );

  it('never forwards a pipelined request behind a rejected one', async () => {
    const before = origin.started.length;
    const { text } = await rawExchange(
      p.port,
      `GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx${SMUGGLED}${SMUGGLED}`,
    );
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
    expect(origin.started.length).toBe(before);
  });

  it('answers JSON on a rejected message', async () => {
    const { text } = await rawExchange(p.port, `GET /a HTTP/1.1\nHost: x\n\n`);
    const body = text.split('\r\n\r\n')[1] ?? '';
    expect(JSON.parse(body)).toEqual({ error: 'bad_request', message: 'malformed request' });
  });

  it.each([
    ['two Host headers', 'Host: a\r\nHost: b\r\n', 'more than one Host header'],
    ['no Host', '', 'the Host header is required'],
  ])('answers JSON 400 to %s and calls no origin', async (_name, host, message) => {
    const before = origin.started.length;
    const { text, closed } = await rawExchange(p.port, `GET /x HTTP/1.1\r\n${host}\r\n`);
    const [head, body] = text.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 400 /);
    expect(head).toMatch(/\r\ncontent-type: application\/json\r\n/i);
    expect(head).toMatch(/\r\nconnection: close\r\n/i);
    expect(JSON.parse(body ?? '')).toEqual({ error: 'bad_request', message });
    expect(closed).toBe(true);
    expect(origin.started.length).toBe(before);
  });

  it('serves HTTP/1.0 without Host', async () => {
    const { text } = await rawExchange(p.port, 'GET /old HTTP/1.0\r\n\r\n');
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
    expect(origin.started[origin.started.length - 1]).toBe('GET /old');
  });

  it('keeps serving well-formed pipelined requests', async () => {
    const before = origin.started.length;
    const { text } = await rawExchange(
      p.port,
      'GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(text.match(/HTTP\/1\.1 200 /g)).toHaveLength(2);
    expect(origin.started.slice(before)).toEqual(['GET /one', 'GET /two']);
  });

  it('routes an absolute-form request by its path only', async () => {
    const res = await rawExchange(
      p.port,
      'GET http://169.254.169.254/latest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(res.text).toMatch(/^HTTP\/1\.1 200 /);
    const seen = origin.seen[origin.seen.length - 1]!;
    expect(seen.url).toBe('/latest');
  });

  it('refuses CONNECT', async () => {
    const { text } = await rawExchange(
      p.port,
      'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n',
    );
    expect(text).toMatch(/^HTTP\/1\.1 405 /);
  });
});

describe('header and timing abuse', () => {
  it('cuts a slowloris client that sends its headers byte by byte', async () => {
    const t0 = performance.now();
    const socket = net.connect(p.port, '127.0.0.1');
    const head = 'GET /a HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(200);
    let i = 0;
    let received = '';
    const timer = setInterval(() => {
      if (!socket.destroyed && i < head.length) socket.write(head[i++]!);
    }, 50);
    socket.on('data', (c) => (received += c.toString()));
    await new Promise<void>((resolve) => {
      socket.on('close', () => resolve());
      socket.on('error', () => resolve());
    });
    clearInterval(timer);
    const ms = performance.now() - t0;
    // headers_timeout_ms is 600 here; Node checks it every 150 ms.
    expect(ms).toBeGreaterThanOrEqual(550);
    expect(ms).toBeLessThan(2_000);
    expect(i).toBeLessThan(head.length);
    if (received) expect(received).toMatch(/^HTTP\/1\.1 408 /);
    expect(
      await metricValue(p.registry, 'vigil_proxy_rejected_total', { reason: 'timeout' }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('answers 431 to oversized headers', async () => {
    const res = await request(`${p.url}/a`, { headers: { 'x-big': 'b'.repeat(8192) } });
    expect(res.statusCode).toBe(431);
    expect(((await res.body.json()) as { error: string }).error).toBe(
      'request_header_fields_too_large',
    );
  });

  it('answers 431 to too many headers rather than forwarding them truncated', async () => {
    const before = origin.started.length;
    const headers: Record<string, string> = {};
    for (let i = 0; i < 40; i++) headers[`x-h${i}`] = String(i);
    const res = await request(`${p.url}/a`, { headers });
    expect(res.statusCode).toBe(431);
    await res.body.dump();
    expect(origin.started.length).toBe(before);
  });

  it('survives a client that resets mid-upload', async () => {
    const socket = net.connect(p.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.write(
      'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n' + 'z'.repeat(1000),
    );
    await new Promise((r) => setTimeout(r, 50));
    socket.resetAndDestroy();
    const res = await request(`${p.url}/after-reset`);
    expect(res.statusCode).toBe(200);
    await res.body.dump();
  });
});
