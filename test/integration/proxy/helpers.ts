// A real origin, a real decision function and raw-socket tools for the inline proxy tests.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { WebSocketServer } from 'ws';
import {
  createInlineProxy,
  type InlineProxy,
  type InlineProxyOptions,
} from '../../../proxy/inline/server.ts';
import type {
  DecideFn,
  DecideInput,
  ProxyDecision,
  RequestEvent,
} from '../../../proxy/inline/types.ts';
import { silentLogger } from '../../../proxy/inline/types.ts';
import { freePort } from '../../helpers/net.ts';

export { freePort };

export interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  bytes: number;
  sha256: string;
  /** The first MiB of the body. */
  body: Buffer;
}

export interface Origin {
  url: string;
  port: number;
  seen: Seen[];
  /** Requests whose headers arrived (before their bodies finished). */
  started: string[];
  server: http.Server;
  close(): Promise<void>;
}

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/**
 * The test origin. Every request's body is hashed as it arrives; the answer is JSON about what
 * arrived, except on these paths:
 * /slow?ms=N (answers after N ms), /slow-body?ms=N (headers at once, body after N ms),
 * /download?bytes=N (N random bytes, their sha256 in x-sha256), /stream (3 chunks 200 ms apart),
 * /hop (hop-by-hop response headers), /status?code=N, /ws (WebSocket echo).
 */
export async function startOrigin(): Promise<Origin> {
  const seen: Seen[] = [];
  const started: string[] = [];
  const server = http.createServer((req, res) => {
    started.push(`${req.method} ${req.url}`);
    const url = new URL(req.url ?? '/', 'http://origin');
    const hash = createHash('sha256');
    let bytes = 0;
    const keep: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      hash.update(c);
      if (bytes < 1024 * 1024) keep.push(c);
      bytes += c.length;
    });
    req.on('end', () => {
      const s: Seen = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        bytes,
        sha256: hash.digest('hex'),
        body: Buffer.concat(keep),
      };
      seen.push(s);
      void answer(url, s, res);
    });
  });
  const answer = async (url: URL, s: Seen, res: http.ServerResponse) => {
    const ms = Number(url.searchParams.get('ms') ?? 0);
    switch (url.pathname) {
      case '/slow':
        await sleep(ms);
        break;
      case '/slow-body':
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first ');
        await sleep(ms);
        res.end('last');
        return;
      case '/download': {
        const n = Number(url.searchParams.get('bytes'));
        const data = randomBytes(n);
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': n,
          'x-sha256': sha256(data),
        });
        for (let off = 0; off < n; off += 64 * 1024) {
          if (!res.write(data.subarray(off, off + 64 * 1024))) {
            await new Promise((r) => res.once('drain', r));
          }
        }
        res.end();
        return;
      }
      case '/stream':
        res.writeHead(200, { 'content-type': 'text/plain' });
        for (let i = 0; i < 3; i++) {
          res.write(`chunk${i}\n`);
          await sleep(200);
        }
        res.end();
        return;
      case '/hop':
        res.writeHead(200, {
          connection: 'keep-alive, x-internal',
          'x-internal': 'secret',
          'keep-alive': 'timeout=3',
          'proxy-authenticate': 'Basic',
          'x-kept': 'yes',
          'set-cookie': ['a=1', 'b=2'],
          'content-type': 'text/plain',
        });
        res.end('hop');
        return;
      case '/status': {
        const code = Number(url.searchParams.get('code'));
        res.writeHead(code, { 'x-status': String(code) });
        res.end();
        return;
      }
    }
    const body = JSON.stringify({
      method: s.method,
      url: s.url,
      bytes: s.bytes,
      sha256: s.sha256,
      headers: s.headers,
    });
    res.writeHead(200, { 'content-type': 'application/json', 'x-origin': 'yes' });
    res.end(body);
  };
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (ws, req) => {
    ws.send(JSON.stringify({ hello: req.headers['x-vigil-decision'] ?? null }));
    ws.on('message', (m, binary) => ws.send(m, { binary }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    started,
    server,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export type EngineMode = 'normal' | 'throw' | 'hang' | 'slow';

/**
 * The test engine: a real decision function over the extracted context.
 * login: e-mail at fraud.test → BLOCK, starting with "review" → REVIEW, else ALLOW.
 * checkout: card token tok_stolen → BLOCK, amount ≥ 100000 → REVIEW, else ALLOW.
 * Values the proxy left out (`input.dropped`) make an ALLOW a REVIEW, as the
 * `$.metadata.dropped` rule of docs/proxy.md does, and are returned as the decision's.
 */
export function riskEngine() {
  const calls: DecideInput[] = [];
  let n = 0;
  const state = { mode: 'normal' as EngineMode, slowMs: 50 };
  const decide: DecideFn = async (input) => {
    calls.push(input);
    if (state.mode === 'throw') throw new Error('engine unavailable');
    if (state.mode === 'hang') await new Promise(() => {});
    if (state.mode === 'slow') await sleep(state.slowMs);
    const d = rules(input);
    if (!input.dropped?.length) return d;
    return {
      ...d,
      decision: d.decision === 'ALLOW' ? 'REVIEW' : d.decision,
      dropped: [...input.dropped],
    };
  };
  const rules = (input: DecideInput): ProxyDecision => {
    const id = `dec_t${(++n).toString(36)}`;
    const b = input.body as {
      customer?: { email?: unknown };
      transaction?: { amount?: unknown };
      credential_fingerprint?: unknown;
    };
    if (input.context === 'login') {
      const email = typeof b.customer?.email === 'string' ? b.customer.email : '';
      if (email.endsWith('@fraud.test')) return { id, decision: 'BLOCK' };
      if (email.startsWith('review')) return { id, decision: 'REVIEW' };
      return { id, decision: 'ALLOW' };
    }
    if (input.context === 'checkout') {
      if (b.credential_fingerprint === 'tok_stolen') return { id, decision: 'BLOCK' };
      const amount = b.transaction?.amount;
      if (typeof amount === 'number' && amount >= 100_000) return { id, decision: 'REVIEW' };
      return { id, decision: 'ALLOW' };
    }
    return { id, decision: 'ALLOW' };
  };
  return { decide, calls, state };
}

export interface TestProxy {
  proxy: InlineProxy;
  url: string;
  port: number;
  registry: Registry;
  events: RequestEvent[];
  close(): Promise<void>;
}

export async function startProxy(
  opts: Omit<InlineProxyOptions, 'decide'> & { decide?: DecideFn },
): Promise<TestProxy> {
  const registry = opts.registry ?? new Registry();
  const events: RequestEvent[] = [];
  const proxy = createInlineProxy({
    log: silentLogger,
    sighup: false,
    ...opts,
    decide: opts.decide ?? riskEngine().decide,
    registry,
    onRequestEvent: (e) => {
      events.push(e);
      opts.onRequestEvent?.(e);
    },
  });
  const addr = await proxy.listen(0, '127.0.0.1');
  return {
    proxy,
    url: `http://127.0.0.1:${addr.port}`,
    port: addr.port,
    registry,
    events,
    close: () => proxy.close(1_000),
  };
}

/** The value of one metric sample (0 when absent). */
export async function metricValue(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const data = await metric.get();
  let total = 0;
  for (const v of data.values) {
    const l = v.labels as Record<string, string | number>;
    if (Object.entries(labels).every(([k, want]) => String(l[k]) === want)) total += v.value;
  }
  return total;
}

/** Writes bytes on a raw connection and collects what comes back until close or `waitMs`. */
export function rawExchange(
  port: number,
  data: string | Buffer,
  waitMs = 1_500,
): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ text, closed });
    };
    socket.on('connect', () => socket.write(data));
    socket.on('data', (c) => (text += c.toString('latin1')));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    setTimeout(() => finish(false), waitMs).unref();
  });
}

/** Waits until `check` holds, polling; fails after `ms`. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  ms = 5_000,
): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await sleep(25);
  }
  throw new Error('condition not met in time');
}

export interface Nginx {
  port: number;
  dir: string;
  close(): Promise<void>;
}

/**
 * Runs the system nginx on a free loopback port with `server` as its one server block's body
 * (`listen` is added). Everything it writes (logs, pid, temp files) stays in a temp folder.
 */
export async function startNginx(serverBody: string, httpExtra = ''): Promise<Nginx> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vigil-nginx-'));
  const port = await freePort();
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `${t}_temp_path ${dir}/${t};`)
    .join('\n  ');
  const conf = `
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
error_log ${dir}/error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections 1024; }
http {
  access_log ${dir}/access.log;
  ${temp}
  ${httpExtra}
  server {
    listen 127.0.0.1:${port};
    ${serverBody}
  }
}
`;
  writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const child = spawn(
    '/usr/sbin/nginx',
    ['-p', dir, '-c', 'nginx.conf', '-e', `${dir}/error.log`, '-g', 'daemon off;'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    await eventually(
      () =>
        new Promise<boolean>((resolve) => {
          if (child.exitCode !== null) resolve(false);
          const s = net.connect(port, '127.0.0.1');
          s.once('connect', () => {
            s.destroy();
            resolve(true);
          });
          s.once('error', () => resolve(false));
        }),
      10_000,
    );
  } catch {
    let log = '';
    try {
      log = readFileSync(path.join(dir, 'error.log'), 'utf8');
    } catch {
      // no log yet
    }
    child.kill('SIGKILL');
    throw new Error(`nginx did not start: ${stderr}${log}`);
  }
  return {
    port,
    dir,
    close: async () => {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
