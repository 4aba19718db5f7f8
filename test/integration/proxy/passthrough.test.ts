// Pass-through routes: bytes in, the same bytes out, both ways; hop-by-hop headers gone; origin
// failures answered fast with JSON.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import WebSocket from 'ws';
import {
  freePort,
  metricValue,
  rawExchange,
  sha256,
  startOrigin,
  startProxy,
  type Origin,
  type TestProxy,
} from './helpers.ts';

let origin: Origin;
let p: TestProxy;

beforeAll(async () => {
  origin = await startOrigin();
  const down = await freePort();
  p = await startProxy({
    config: {
      mode: 'active',
      origins: { shop: origin.url, gone: `http://127.0.0.1:${down}` },
      routes: [
        { match: { path: '/gone/*' }, origin: 'gone' },
        { match: { path: '/slow' }, origin: 'shop', timeout_ms: 400 },
        { match: { path: '/slow-body' }, origin: 'shop', timeout_ms: 400 },
        { match: { path: '/*' }, origin: 'shop' },
      ],
    },
  });
});

afterAll(async () => {
  await p?.close();
  await origin?.close();
});

const lastSeen = () => origin.seen[origin.seen.length - 1]!;

describe('pass-through', () => {
  it('forwards a GET with its query and headers, and the answer back', async () => {
    const res = await request(`${p.url}/products/42?color=red&size=m`, {
      headers: { accept: 'application/json', 'x-custom': 'v1', cookie: 'sid=abc' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-origin']).toBe('yes');
    const body = (await res.body.json()) as { url: string; headers: Record<string, string> };
    expect(body.url).toBe('/products/42?color=red&size=m');
    expect(body.headers['x-custom']).toBe('v1');
    expect(body.headers.cookie).toBe('sid=abc');
    expect(body.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(body.headers['x-forwarded-proto']).toBe('http');
    expect(body.headers['x-forwarded-host']).toBe(`127.0.0.1:${p.port}`);
    expect(body.headers.host).toBe(`127.0.0.1:${origin.port}`);
  });

  it('streams an 8 MiB upload with Content-Length unchanged', async () => {
    const data = randomBytes(8 * 1024 * 1024);
    const res = await request(`${p.url}/upload`, { method: 'POST', body: data });
    const body = (await res.body.json()) as {
      bytes: number;
      sha256: string;
      headers: Record<string, string>;
    };
    expect(body.bytes).toBe(data.length);
    expect(body.sha256).toBe(sha256(data));
    expect(body.headers['content-length']).toBe(String(data.length));
  });

  it('streams a chunked upload of unknown length', async () => {
    const parts = Array.from({ length: 40 }, () => randomBytes(256 * 1024));
    function* gen() {
      for (const part of parts) yield part;
    }
    const res = await request(`${p.url}/upload-chunked`, {
      method: 'PUT',
      body: Readable.from(gen()),
    });
    const body = (await res.body.json()) as {
      bytes: number;
      sha256: string;
      headers: Record<string, string>;
    };
    expect(body.bytes).toBe(40 * 256 * 1024);
    expect(body.sha256).toBe(sha256(Buffer.concat(parts)));
    expect(body.headers['transfer-encoding']).toBe('chunked');
  });

  it('streams a 32 MiB download unchanged', async () => {
    const res = await request(`${p.url}/download?bytes=${32 * 1024 * 1024}`);
    const got = Buffer.from(await res.body.arrayBuffer());
    expect(got.length).toBe(32 * 1024 * 1024);
    expect(sha256(got)).toBe(res.headers['x-sha256']);
  });

  it('passes response chunks on as they come (no buffering)', async () => {
    const t0 = performance.now();
    const res = await request(`${p.url}/stream`);
    const it = res.body[Symbol.asyncIterator]();
    const first = await it.next();
    const firstAt = performance.now() - t0;
    expect(String(first.value)).toContain('chunk0');
    expect(firstAt).toBeLessThan(350);
    let rest = '';
    for (let n = await it.next(); !n.done; n = await it.next()) rest += String(n.value);
    expect(rest).toContain('chunk2');
  });

  it('strips hop-by-hop headers both ways and forged x-vigil-* headers', async () => {
    // Raw bytes: HTTP clients (undici too) refuse to send some of these headers themselves.
    const { text } = await rawExchange(
      p.port,
      'GET /hop HTTP/1.1\r\nHost: x\r\nConnection: close, X-Drop-Me\r\nX-Drop-Me: 1\r\n' +
        'Proxy-Authorization: Basic x\r\nTE: trailers\r\nKeep-Alive: timeout=9\r\n' +
        'X-Vigil-Decision: ALLOW\r\nx-vigil-decision-id: dec_forged\r\nX-Kept-Too: 1\r\n\r\n',
    );
    const [head = '', body] = text.split('\r\n\r\n');
    const lines = head.toLowerCase().split('\r\n');
    expect(lines[0]).toBe('http/1.1 200 ok');
    expect(body).toContain('hop');
    expect(lines).toContain('x-kept: yes');
    expect(lines).toContain('set-cookie: a=1');
    expect(lines).toContain('set-cookie: b=2');
    expect(lines.some((l) => l.startsWith('x-internal'))).toBe(false);
    expect(lines.some((l) => l.startsWith('proxy-authenticate'))).toBe(false);
    expect(lines.some((l) => l.startsWith('keep-alive'))).toBe(false);
    const seen = lastSeen();
    expect(seen.url).toBe('/hop');
    expect(seen.headers['x-kept-too']).toBe('1');
    for (const h of [
      'x-drop-me',
      'proxy-authorization',
      'te',
      'keep-alive',
      'x-vigil-decision',
      'x-vigil-decision-id',
    ]) {
      expect(seen.headers[h]).toBeUndefined();
    }
  });

  it('appends to X-Forwarded-For and keeps HEAD, 204 and 304 bodiless', async () => {
    const r1 = await request(`${p.url}/x`, { headers: { 'x-forwarded-for': '203.0.113.1' } });
    const b1 = (await r1.body.json()) as { headers: Record<string, string> };
    expect(b1.headers['x-forwarded-for']).toBe('203.0.113.1, 127.0.0.1');
    const head = await request(`${p.url}/download?bytes=1000`, { method: 'HEAD' });
    expect(head.statusCode).toBe(200);
    expect(await head.body.text()).toBe('');
    for (const code of [204, 304, 404, 500]) {
      const r = await request(`${p.url}/status?code=${code}`);
      expect(r.statusCode).toBe(code);
      expect(r.headers['x-status']).toBe(String(code));
      await r.body.dump();
    }
  });

  it('tries routes in order and answers 404 JSON when none takes the request', async () => {
    const t = await startProxy({
      config: {
        mode: 'active',
        origins: { shop: origin.url },
        routes: [{ match: { path: '/only-get', method: 'GET' }, origin: 'shop' }],
      },
    });
    try {
      const ok = await request(`${t.url}/only-get`);
      expect(ok.statusCode).toBe(200);
      await ok.body.dump();
      const res = await request(`${t.url}/only-get`, { method: 'DELETE' });
      expect(res.statusCode).toBe(404);
      // Nothing left unread on the connection: it stays open for the next request.
      expect(res.headers.connection).toBe('keep-alive');
      expect(await res.body.json()).toEqual({
        error: 'not_found',
        message: 'no route for this request',
      });
    } finally {
      await t.close();
    }
  });

  it('passes a WebSocket through, both directions, byte for byte', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${p.port}/ws`);
    const messages: (Buffer | string)[] = [];
    const waiters: (() => void)[] = [];
    ws.on('message', (m: Buffer, binary: boolean) => {
      messages.push(binary ? m : m.toString());
      waiters.shift()?.();
    });
    const next = () => new Promise<void>((r) => waiters.push(r));
    const hello = next();
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    await hello;
    expect(JSON.parse(messages[0] as string)).toEqual({ hello: null });
    const text = next();
    ws.send('ping through the proxy');
    await text;
    expect(messages[1]).toBe('ping through the proxy');
    const blob = randomBytes(1024 * 1024);
    const bin = next();
    ws.send(blob);
    await bin;
    expect(sha256(messages[2] as Buffer)).toBe(sha256(blob));
    ws.close();
  });

  it('relays a refused upgrade and closes the connection (no raw tunnel)', async () => {
    const { text, closed } = await rawExchange(
      p.port,
      'GET /not-ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n' +
        'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
    expect(closed).toBe(true);
    expect(origin.started).not.toContain('GET /smuggled');
  });
});

describe('origin failures', () => {
  it('answers 502 JSON at once when the origin is down', async () => {
    const before = await metricValue(p.registry, 'vigil_proxy_upstream_errors_total', {
      origin: 'gone',
    });
    const t0 = performance.now();
    const res = await request(`${p.url}/gone/x`);
    const ms = performance.now() - t0;
    expect(res.statusCode).toBe(502);
    expect(await res.body.json()).toEqual({
      error: 'bad_gateway',
      message: 'origin gone is unavailable',
    });
    expect(ms).toBeLessThan(500);
    expect(
      await metricValue(p.registry, 'vigil_proxy_upstream_errors_total', { origin: 'gone' }),
    ).toBe(before + 1);
  });

  it('answers 504 JSON within the route timeout when the origin is slow', async () => {
    const t0 = performance.now();
    const res = await request(`${p.url}/slow?ms=3000`);
    const ms = performance.now() - t0;
    expect(res.statusCode).toBe(504);
    expect(((await res.body.json()) as { error: string }).error).toBe('gateway_timeout');
    expect(ms).toBeGreaterThanOrEqual(390);
    expect(ms).toBeLessThan(1_000);
  });

  it('does not time out an answer that has started', async () => {
    const res = await request(`${p.url}/slow-body?ms=700`);
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('first last');
  });

  it('survives a client that leaves mid-download', async () => {
    const ac = new AbortController();
    const res = await request(`${p.url}/download?bytes=${16 * 1024 * 1024}`, { signal: ac.signal });
    const it = res.body[Symbol.asyncIterator]();
    await it.next();
    ac.abort();
    await expect(it.next()).rejects.toThrow();
    const again = await request(`${p.url}/x`);
    expect(again.statusCode).toBe(200);
    await again.body.dump();
  });
});

describe('TLS origins', () => {
  let dir: string;
  let server: https.Server;
  let port: number;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'vigil-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        path.join(dir, 'key.pem'),
        '-out',
        path.join(dir, 'cert.pem'),
        '-days',
        '1',
        '-subj',
        '/CN=vigil-test-origin',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    server = https.createServer(
      {
        key: readFileSync(path.join(dir, 'key.pem')),
        cert: readFileSync(path.join(dir, 'cert.pem')),
      },
      (_req, res) => res.end('tls ok'),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses an origin whose certificate it cannot verify, and trusts a configured CA', async () => {
    const t = await startProxy({
      config: {
        mode: 'active',
        origins: {
          unverified: `https://127.0.0.1:${port}`,
          pinned: { url: `https://127.0.0.1:${port}`, ca_file: path.join(dir, 'cert.pem') },
        },
        routes: [
          { match: { path: '/unverified' }, origin: 'unverified' },
          { match: { path: '/pinned' }, origin: 'pinned' },
        ],
      },
    });
    try {
      const bad = await request(`${t.url}/unverified`);
      expect(bad.statusCode).toBe(502);
      await bad.body.dump();
      const good = await request(`${t.url}/pinned`);
      expect(good.statusCode).toBe(200);
      expect(await good.body.text()).toBe('tls ok');
    } finally {
      await t.close();
    }
  });
});
