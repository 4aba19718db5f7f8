// The inline proxy under load, beside its anchors, measured in the same run on this machine:
// - direct: the origin alone (node:http answering a small body);
// - bare: a minimal node:http + undici reverse proxy written here, the reference;
// - Vigil pass-through, and Vigil on a monitored route deciding with a 20-rule ruleset: the
//   product itself, `vigil proxy` in one process (VIGIL_PROXY_WORKERS=1, like the one-process
//   bare reference), with its embedded store, in-process velocity, decision log and event file;
// - nginx as a plain reverse proxy;
// - nginx + auth_request → a stub answering 204, and → Vigil's /api/authz/{context}.
// Targets (issue "The inline proxy"): pass-through ≥ 0.9× bare; monitored ≥ 0.75× bare;
// p99 added over direct ≤ 2 ms at half of the pass-through's max throughput;
// nginx+auth_request→Vigil ≥ 0.6× nginx+auth_request→stub.
//
// Loopback only, bounded in time (about 2 minutes with the defaults). The load comes from wrk
// when it is installed (a C load generator costs the servers least CPU), else from an undici
// load generator in its own process. Every server runs in its own process, Vigil's too (like
// the bare reference it is compared with), unless a DecideFn is passed in
// (runProxyBench({ decide })): then the inline proxy runs in this one with that engine. The
// half-load runs put the same
// request through direct and through each proxy at the same rate, POST /login through the
// bare proxy too, so the monitored route's added latency has a reference on its own request.
//
//   node --experimental-strip-types bench/proxy.ts [--seconds 3] [--rounds 3] [--connections 32]
//     [--only 'pass-through,bare proxy GET']   only the scenarios whose names contain one of these
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { Registry } from 'prom-client';
import { Pool } from 'undici';
import { authzRoutes } from '../proxy/authz.ts';
import { freePort, spawnVigil, startVigil, TOKEN } from './api.ts';
import { compileRoutesDocument } from '../proxy/inline/config.ts';
import { createInlineProxy } from '../proxy/inline/server.ts';
import { silentLogger, type DecideFn } from '../proxy/inline/types.ts';
import {
  fixedRateGenerator,
  loadgenBin,
  loadgenOpenLoop,
  vegetaBin,
  vegetaOpenLoop,
} from './load.ts';
import { IpcCounterStore, serveCount } from '../storage/counters/ipc.ts';
import { MemoryCounterStore } from '../storage/counters/memory.ts';

const SELF = fileURLToPath(import.meta.url);
const ORIGIN_BODY = 'hello from the origin\n';
const LOGIN_BODY = JSON.stringify({ email: 'ann@example.com', password: 'correct horse' });

// ───────────────────────────── child roles ─────────────────────────────

/** The origin: a small body, keep-alive, the request body (if any) drained first. */
function runOrigin(): http.Server {
  return http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, {
        'content-type': 'text/plain',
        'content-length': Buffer.byteLength(ORIGIN_BODY),
      });
      res.end(ORIGIN_BODY);
    });
  });
}

/** The auth stub for nginx: 204 to everything. */
function runStub(): http.Server {
  return http.createServer((req, res) => {
    req.resume();
    res.writeHead(204);
    res.end();
  });
}

const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'expect',
]);

/**
 * The reference: the smallest correct reverse proxy on node:http and undici (hop-by-hop
 * headers dropped, bodies streamed both ways, 502 on error), what one would write by hand.
 */
function runBare(originUrl: string): http.Server {
  const pool = new Pool(originUrl, { connections: 256, pipelining: 1 });
  return http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined && !HOP.has(k)) headers[k] = v;
    }
    const hasBody =
      req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    pool
      .request({
        method: req.method as 'GET',
        path: req.url ?? '/',
        headers,
        body: hasBody ? req : null,
      })
      .then(
        (up) => {
          const out: Record<string, string | string[]> = {};
          for (const [k, v] of Object.entries(up.headers)) {
            if (v !== undefined && !HOP.has(k)) out[k] = v;
          }
          res.writeHead(up.statusCode, out);
          up.body.pipe(res);
        },
        () => {
          res.writeHead(502);
          res.end();
        },
      );
  });
}

interface LoadSpec {
  url: string;
  method: 'GET' | 'POST';
  path: string;
  body?: string | undefined;
  headers?: Record<string, string> | undefined;
  connections: number;
  seconds: number;
}

export interface LoadFigures {
  requests: number;
  rps: number;
  errors: number;
  non2xx: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  /** CPU (user + system) the process under test spent per request, when measured. */
  cpu_us_per_req?: number;
}

/** utime + stime of a process, in microseconds (from /proc; NaN elsewhere). */
function childCpuMicros(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat (utime, stime), in clock ticks of 10 ms on Linux.
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return NaN;
  }
}

/** The fallback load generator (no wrk): closed loop on an undici Pool, in its own process. */
async function runLoad(spec: LoadSpec): Promise<LoadFigures> {
  const pool = new Pool(spec.url, { connections: spec.connections, pipelining: 1 });
  const lat: number[] = [];
  let errors = 0;
  let non2xx = 0;
  const loop = async (until: number, record: boolean) => {
    await Promise.all(
      Array.from({ length: spec.connections }, async () => {
        while (performance.now() < until) {
          const t0 = performance.now();
          try {
            const r = await pool.request({
              method: spec.method,
              path: spec.path,
              headers: spec.headers,
              body: spec.body,
            });
            await r.body.dump();
            if (record && (r.statusCode < 200 || r.statusCode > 299)) non2xx++;
          } catch {
            if (record) errors++;
          }
          if (record) lat.push(performance.now() - t0);
        }
      }),
    );
  };
  await loop(performance.now() + 1000, false);
  const start = performance.now();
  await loop(start + spec.seconds * 1000, true);
  const seconds = (performance.now() - start) / 1000;
  await pool.close();
  return summarize(lat, seconds, errors, non2xx);
}

const round = (x: number) => Math.round(x * 1000) / 1000;

function summarize(lat: number[], seconds: number, errors: number, non2xx: number): LoadFigures {
  const s = Float64Array.from(lat).sort();
  const pct = (p: number) =>
    round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN);
  return {
    requests: lat.length,
    rps: Math.round(lat.length / seconds),
    errors,
    non2xx,
    p50_ms: pct(50),
    p90_ms: pct(90),
    p99_ms: pct(99),
    max_ms: round(s[s.length - 1] ?? NaN),
  };
}

/**
 * Open loop at a fixed rate, in its own process: each request's latency counts from when it
 * was due, not from when a connection was free, so queueing shows (no coordinated omission).
 * Requests go out in 1 ms batches; that jitter is the same for every target compared.
 */
async function runOpenLoop(spec: LoadSpec & { rps: number }): Promise<LoadFigures> {
  const pool = new Pool(spec.url, { connections: 256, pipelining: 1 });
  const phase = async (seconds: number, record: boolean) => {
    const lat: number[] = [];
    let errors = 0;
    let non2xx = 0;
    const total = Math.round(spec.rps * seconds);
    const gap = 1000 / spec.rps;
    const pending = new Set<Promise<void>>();
    const start = performance.now();
    let sent = 0;
    while (sent < total) {
      const due = Math.min(total, Math.floor((performance.now() - start) / gap) + 1);
      for (; sent < due; sent++) {
        const scheduled = start + sent * gap;
        const p: Promise<void> = pool
          .request({ method: spec.method, path: spec.path, headers: spec.headers, body: spec.body })
          .then(async (r) => {
            await r.body.dump();
            if (r.statusCode < 200 || r.statusCode > 299) non2xx++;
          })
          .catch(() => {
            errors++;
          })
          .finally(() => {
            if (record) lat.push(performance.now() - scheduled);
            pending.delete(p);
          });
        pending.add(p);
      }
      await sleep(1);
    }
    await Promise.all(pending);
    return summarize(lat, (performance.now() - start) / 1000, errors, non2xx);
  };
  await phase(1, false);
  const figures = await phase(spec.seconds, true);
  await pool.close();
  return figures;
}

// ───────────────────────────── orchestration ─────────────────────────────

interface Child {
  port: number;
  proc: ChildProcess;
}

async function startChild(role: string, ...args: string[]): Promise<Child> {
  const proc = spawn(process.execPath, [...process.execArgv, SELF, '--role', role, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout }).once('line', resolve);
    proc.once('exit', (code) => reject(new Error(`${role} exited with ${code}`)));
  });
  return { port: (JSON.parse(line) as { port: number }).port, proc };
}

async function stopChild(c: Child | undefined): Promise<void> {
  if (!c || c.proc.exitCode !== null) return;
  const exited = new Promise((r) => c.proc.once('exit', r));
  c.proc.kill('SIGTERM');
  await exited;
}

const WRK_DONE = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"max":%d}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max))
end
`;

async function wrk(spec: LoadSpec, scratch: string): Promise<LoadFigures> {
  const lua = path.join(scratch, `wrk-${Math.random().toString(36).slice(2)}.lua`);
  let script = WRK_DONE;
  script += `wrk.method = "${spec.method}"\n`;
  if (spec.body !== undefined) script += `wrk.body = ${JSON.stringify(spec.body)}\n`;
  for (const [k, v] of Object.entries(spec.headers ?? {})) {
    script += `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}\n`;
  }
  writeFileSync(lua, script);
  const run = (seconds: number) =>
    new Promise<string>((resolve, reject) => {
      const p = spawn(
        'wrk',
        ['-t1', `-c${spec.connections}`, `-d${seconds}s`, '-s', lua, `${spec.url}${spec.path}`],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      p.stdout.on('data', (c: Buffer) => (out += c.toString()));
      p.stderr.on('data', (c: Buffer) => (out += c.toString()));
      p.once('exit', (code) =>
        code === 0 ? resolve(out) : reject(new Error(`wrk failed: ${out}`)),
      );
    });
  await run(1); // warm-up: JIT, pools, keep-alive connections
  const out = await run(spec.seconds);
  const m = /WRKJSON (\{.*\})/.exec(out);
  if (!m) throw new Error(`no wrk summary in: ${out}`);
  const j = JSON.parse(m[1]!) as Record<string, number>;
  const us = (k: string) => round((j[k] ?? NaN) / 1000);
  return {
    requests: j.requests!,
    rps: Math.round(j.requests! / (j.duration_us! / 1e6)),
    errors: j.errors!,
    non2xx: j.non2xx!,
    p50_ms: us('p50'),
    p90_ms: us('p90'),
    p99_ms: us('p99'),
    max_ms: us('max'),
  };
}

async function inChild(role: string, spec: object): Promise<LoadFigures> {
  const child = spawn(
    process.execPath,
    [...process.execArgv, SELF, '--role', role, JSON.stringify(spec)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => code !== 0 && reject(new Error(`${role} exited with ${code}`)));
  });
  return JSON.parse(line) as LoadFigures;
}

function hasTool(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A fixed request rate with h2load (`--rps` per client over HTTP/1.1): the generator costs
 * the servers little CPU, which on a small machine is what keeps "half load" at half load.
 * Latencies come from its per-request log.
 */
async function h2loadOpen(spec: LoadSpec, rps: number, scratch: string): Promise<LoadFigures> {
  const clients = Math.min(spec.connections, Math.max(1, Math.floor(rps / 20)));
  const perClient = Math.max(1, Math.round(rps / clients));
  const log = path.join(scratch, `h2load-${Math.random().toString(36).slice(2)}.log`);
  const args = [
    '--h1',
    '-t1',
    `-c${clients}`,
    `--rps=${perClient}`,
    `-D${spec.seconds}`,
    '--warm-up-time=1',
    `--log-file=${log}`,
  ];
  for (const [k, v] of Object.entries(spec.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (spec.body !== undefined) {
    const file = `${log}.body`;
    writeFileSync(file, spec.body);
    args.push('-d', file);
  }
  args.push(`${spec.url}${spec.path}`);
  await new Promise<void>((resolve, reject) => {
    const p = spawn('h2load', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`h2load failed: ${err}`))));
  });
  const lat: number[] = [];
  let non2xx = 0;
  for (const row of readFileSync(log, 'utf8').split('\n')) {
    const [, status, us] = row.split('\t');
    if (us === undefined) continue;
    lat.push(Number(us) / 1000);
    if (!status?.startsWith('2')) non2xx++;
  }
  return summarize(lat, spec.seconds, 0, non2xx);
}

/**
 * loadgen or vegeta (bench/load.ts): constant-rate generators in Go, far lighter than the undici open loop,
 * whose own timer and event-loop lateness was tens of ms at p99 here. Warmed up at the same rate
 * first, so connections are open and the servers' code optimized before timing.
 */
async function goOpen(
  bin: string,
  spec: LoadSpec,
  rps: number,
  run: typeof vegetaOpenLoop = vegetaOpenLoop,
): Promise<LoadFigures> {
  const t = {
    url: spec.url,
    method: spec.method,
    path: spec.path,
    headers: spec.headers ?? {},
    ...(spec.body !== undefined ? { body: () => spec.body! } : {}),
  };
  await run(bin, t, rps, 2, spec.connections);
  const r = await run(bin, t, rps, spec.seconds, spec.connections);
  let non2xx = 0;
  for (const [code, n] of Object.entries(r.statuses)) if (!code.startsWith('2')) non2xx += n;
  return {
    requests: r.requests,
    rps: r.rps,
    errors: r.errors,
    non2xx,
    p50_ms: r.p50_ms,
    p90_ms: r.p90_ms,
    p99_ms: r.p99_ms,
    max_ms: r.max_ms,
  };
}

type FixedRateGenerator = 'loadgen' | 'vegeta' | 'h2load' | 'undici';

/** A fixed rate: loadgen or vegeta, else h2load when installed, else the undici open loop in a process. */
function openLoad(
  spec: LoadSpec,
  rps: number,
  gen: { kind: FixedRateGenerator; bin?: string | undefined },
  scratch: string,
) {
  if (gen.kind === 'loadgen') return goOpen(gen.bin!, spec, rps, loadgenOpenLoop);
  if (gen.kind === 'vegeta') return goOpen(gen.bin!, spec, rps);
  return gen.kind === 'h2load' ? h2loadOpen(spec, rps, scratch) : inChild('open', { ...spec, rps });
}

/** Maximum throughput: closed loop, every connection sending back to back. */
function load(spec: LoadSpec, useWrk: boolean, scratch: string): Promise<LoadFigures> {
  return useWrk ? wrk(spec, scratch) : inChild('load', spec);
}

interface Nginx {
  port: number;
  close(): Promise<void>;
}

async function startNginx(
  scratch: string,
  name: string,
  server: string,
  upstreams: string,
): Promise<Nginx> {
  const dir = path.join(scratch, `nginx-${name}`);
  execFileSync('mkdir', ['-p', dir]);
  const probe = http.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `${t}_temp_path ${dir}/${t};`)
    .join(' ');
  writeFileSync(
    path.join(dir, 'nginx.conf'),
    `${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
error_log ${dir}/error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  ${temp}
  ${upstreams}
  server {
    listen 127.0.0.1:${port};
    ${server}
  }
}
`,
  );
  if (!existsSync('/usr/sbin/nginx'))
    throw new Error('nginx is not installed: run `bash scripts/services.sh install` first');
  const proc = spawn(
    '/usr/sbin/nginx',
    ['-p', dir, '-c', 'nginx.conf', '-e', `${dir}/error.log`, '-g', 'daemon off;'],
    { stdio: 'ignore' },
  );
  const until = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const r = http.get({ host: '127.0.0.1', port, path: '/__probe' }, (res) => {
        res.resume();
        resolve(true);
      });
      r.on('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > until || proc.exitCode !== null)
      throw new Error(`nginx ${name} did not start`);
    await sleep(50);
  }
  return {
    port,
    close: async () => {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

export interface ProxyBenchOptions {
  /** Seconds per measured run (after a 1 s warm-up). */
  seconds?: number;
  connections?: number;
  /** Interleaved rounds; each figure is the median over them. */
  rounds?: number;
  /**
   * An engine to put behind the monitored route and authz, run in this process; by default the
   * product decides (`vigil proxy` and `vigil api` in child processes, the login ruleset).
   */
  decide?: DecideFn;
  /** Progress lines (default: stderr). */
  progress?: (line: string) => void;
  /**
   * Only the scenarios whose names contain one of these (e.g. `['GET']`); targets whose runs
   * were left out read null and FAIL. For iterating on one path; the targets need the full run.
   */
  only?: string[];
}

export interface ProxyBenchResult {
  load_generator: 'wrk' | 'undici';
  fixed_rate_generator: FixedRateGenerator;
  seconds: number;
  connections: number;
  runs: Record<string, LoadFigures>;
  half_load: { target_rps: { get: number; post: number }; runs: Record<string, LoadFigures> };
  load_average: { before: string; after: string };
  ratios: {
    passthrough_vs_bare: number;
    monitored_vs_bare_post: number;
    nginx_authz_vigil_vs_stub: number;
    vigil_passthrough_vs_nginx: number;
  };
  added_p99_ms_at_half_load: {
    bare_reference: number;
    bare_reference_post: number;
    passthrough: number;
    monitored: number;
  };
  cpu_us_per_req: Record<string, number>;
  targets: Record<string, { value: number; target: string; ok: boolean }>;
}

const loadavg = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

const line = (name: string, r: LoadFigures) =>
  `${name.padEnd(36)} ${String(r.rps).padStart(7)} req/s  p50 ${r.p50_ms.toFixed(2)} ms  ` +
  `p99 ${r.p99_ms.toFixed(2)} ms` +
  (r.cpu_us_per_req !== undefined ? `  cpu ${r.cpu_us_per_req.toFixed(1)} µs/req` : '') +
  (r.errors || r.non2xx ? `  errors ${r.errors} non-2xx ${r.non2xx}` : '');

/** The run whose `key` is the median of the rounds (the whole run, so its figures agree). */
function medianRun(list: LoadFigures[], key: 'rps' | 'p99_ms' = 'rps'): LoadFigures {
  const sorted = [...list].sort((a, b) => a[key] - b[key]);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

const BENCH_ROUTES = (originUrl: string) => ({
  mode: 'active',
  origins: { shop: originUrl },
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
    { match: { path: '/*' }, origin: 'shop' },
  ],
});

/**
 * The monitored route's ruleset: 20 rules over what the route extracts (email, device, session)
 * — blacklists, velocity (counts and a distinct count) and conditions — none of which fires on
 * the bench's requests, so every request is decided in full and forwarded.
 */
export function loginRuleset(): object {
  const rules: object[] = [
    {
      id: 'bad-email',
      type: 'blacklist',
      action: 'BLOCK',
      fields: ['$.customer.email', '$.device.fingerprint'],
    },
    {
      id: 'email-hour',
      type: 'condition',
      action: 'BLOCK',
      condition: { velocity: { field: '$.customer.email', window: '1h', gt: 1_000_000_000 } },
    },
    {
      id: 'device-emails',
      type: 'condition',
      action: 'REVIEW',
      condition: {
        velocity: {
          field: '$.device.fingerprint',
          distinct: '$.customer.email',
          window: '24h',
          gte: 1000,
        },
      },
    },
    {
      id: 'session-hour',
      type: 'condition',
      action: 'REVIEW',
      condition: { velocity: { field: '$.device.session', window: '1h', gt: 1_000_000_000 } },
    },
  ];
  for (let i = 0; rules.length < 20; i++) {
    rules.push({
      id: `login-${i}`,
      type: 'condition',
      action: i % 3 === 0 ? 'REVIEW' : 'BLOCK',
      condition: {
        or: [
          { in: { path: '$.customer.email', values: [`x${i}@example.net`, `y${i}@example.net`] } },
          {
            and: [
              { eq: { path: '$.device.fingerprint', value: `dev_bad_${i}` } },
              { neq: { path: '$.device.session', value: `s${i}` } },
            ],
          },
        ],
      },
    });
  }
  return {
    name: 'bench-login-20',
    context: 'login',
    velocity_fields: ['$.customer.email', '$.device.session'],
    rules,
  };
}

/**
 * `vigil proxy` in one process (VIGIL_PROXY_WORKERS=1) with the bench routes, deciding with the
 * login ruleset, which a `vigil api` on the same data dir activated; that API also answers
 * nginx's auth_request, as a split deployment would.
 */
export async function startVigilProduct(
  originUrl: string,
  scratch: string,
): Promise<{
  port: number;
  apiPort: number;
  apiPid: number;
  pid: number;
  stop(): Promise<void>;
}> {
  const routesFile = path.join(scratch, 'routes.json');
  writeFileSync(routesFile, JSON.stringify(BENCH_ROUTES(originUrl)));
  const api = await startVigil({ REDIS_URL: '', VIGIL_CONFIG: routesFile }, 'api', {
    ruleset: loginRuleset(),
  });
  const port = await freePort();
  try {
    const proxy = await spawnVigil(
      'proxy',
      {
        PORT: String(port),
        VIGIL_CONFIG: routesFile,
        VIGIL_PROXY_WORKERS: '1',
        REDIS_URL: '',
        VIGIL_DATA_DIR: api.dataDir,
      },
      'proxy',
    );
    return {
      port,
      apiPort: Number(new URL(api.url).port),
      apiPid: api.pid,
      pid: proxy.pid,
      stop: async () => {
        await proxy.stop();
        await api.stop();
      },
    };
  } catch (err) {
    await api.stop();
    throw err;
  }
}

/** Runs every scenario and returns the figures (also printed when run from the command line). */
export async function runProxyBench(opts: ProxyBenchOptions = {}): Promise<ProxyBenchResult> {
  const seconds = opts.seconds ?? 3;
  const connections = opts.connections ?? 32;
  const rounds = Math.max(1, opts.rounds ?? 3);
  const loadBefore = loadavg();
  const say = opts.progress ?? ((l: string) => process.stderr.write(`${l}\n`));
  const useWrk = hasTool('wrk');
  // loadgen (bench/loadgen), else vegeta, else h2load; BENCH_GENERATOR picks one.
  const gen = fixedRateGenerator();
  const fixedRate: { kind: FixedRateGenerator; bin?: string | undefined } =
    gen === 'loadgen'
      ? { kind: 'loadgen', bin: loadgenBin() }
      : gen === 'vegeta'
        ? { kind: 'vegeta', bin: vegetaBin() }
        : { kind: hasTool('h2load') ? 'h2load' : 'undici' };
  const scratch = mkdtempSync(path.join(tmpdir(), 'vigil-bench-proxy-'));
  const cleanup: (() => Promise<void>)[] = [];
  try {
    const origin = await startChild('origin');
    cleanup.push(() => stopChild(origin));
    const originUrl = `http://127.0.0.1:${origin.port}`;
    const bare = await startChild('bare', originUrl);
    cleanup.push(() => stopChild(bare));
    const stub = await startChild('stub');
    cleanup.push(() => stopChild(stub));

    const routes = BENCH_ROUTES(originUrl);
    let vigilPort: number;
    let vigilCpu: () => number;
    // Where nginx's auth_request goes: Vigil's /api/authz/{context}.
    let authzPort: number;
    let authzHeaders = '';
    // The CPU of whatever answers the auth_request subrequests.
    let authzCpu: () => number;
    if (opts.decide) {
      const decide = opts.decide;
      const vigil = createInlineProxy({
        config: routes,
        decide,
        registry: new Registry(),
        log: silentLogger,
        watch: false,
        sighup: false,
      });
      vigilPort = (await vigil.listen(0, '127.0.0.1')).port;
      cleanup.push(() => vigil.close(1_000));
      vigilCpu = () => {
        const u = process.cpuUsage();
        return u.user + u.system;
      };
      const api = Fastify({ logger: false });
      await authzRoutes(api, {
        decide,
        registry: new Registry(),
        config: compileRoutesDocument(routes),
      });
      await api.listen({ port: 0, host: '127.0.0.1' });
      authzPort = (api.server.address() as AddressInfo).port;
      cleanup.push(() => api.close());
      authzCpu = vigilCpu;
    } else {
      const product = await startVigilProduct(originUrl, scratch);
      cleanup.push(() => product.stop());
      vigilPort = product.port;
      vigilCpu = () => childCpuMicros(product.pid);
      authzPort = product.apiPort;
      authzCpu = () => childCpuMicros(product.apiPid);
      // The product's authz route wants a decisions:write token, as nginx would be given.
      authzHeaders = `proxy_set_header Authorization "Bearer ${TOKEN}";`;
    }

    const upstreams = `
  upstream origin { server 127.0.0.1:${origin.port}; keepalive 64; }
  upstream stub { server 127.0.0.1:${stub.port}; keepalive 64; }
  upstream vigil { server 127.0.0.1:${authzPort}; keepalive 64; }`;
    const auth = (up: string, uri: string) => `
    location = /_auth {
      internal;
      proxy_pass http://${up}${uri};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      ${up === 'vigil' ? authzHeaders : ''}
    }
    location / {
      auth_request /_auth;
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }`;
    const nginxPlain = await startNginx(
      scratch,
      'plain',
      'location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }',
      upstreams,
    );
    cleanup.push(() => nginxPlain.close());
    const nginxStub = await startNginx(scratch, 'stub', auth('stub', '/'), upstreams);
    cleanup.push(() => nginxStub.close());
    const nginxVigil = await startNginx(
      scratch,
      'vigil',
      auth('vigil', '/api/authz/login'),
      upstreams,
    );
    cleanup.push(() => nginxVigil.close());

    const at = (port: number) => `http://127.0.0.1:${port}`;
    const get = (port: number, extra: Partial<LoadSpec> = {}): LoadSpec => ({
      url: at(port),
      method: 'GET',
      path: '/catalog/item?id=42',
      connections,
      seconds,
      ...extra,
    });
    const post = (port: number, extra: Partial<LoadSpec> = {}): LoadSpec => ({
      url: at(port),
      method: 'POST',
      path: '/login',
      body: LOGIN_BODY,
      headers: { 'content-type': 'application/json', 'x-device-id': 'dev_bench', cookie: 'sid=s1' },
      connections,
      seconds,
      ...extra,
    });

    // The CPU a proxy spends per request is measured beside its throughput: unlike req/s it
    // barely moves when something else on the machine takes cores away.
    const bareCpu = () => childCpuMicros(bare.proc.pid);
    const originCpu = () => childCpuMicros(origin.proc.pid);
    const wanted = (name: string) => !opts.only?.length || opts.only.some((o) => name.includes(o));
    const allScenarios: [string, LoadSpec, (() => number) | null][] = [
      ['direct GET', get(origin.port), originCpu],
      ['bare proxy GET', get(bare.port), bareCpu],
      ['vigil pass-through GET', get(vigilPort), vigilCpu],
      ['bare proxy POST /login', post(bare.port), bareCpu],
      ['vigil monitored POST /login', post(vigilPort), vigilCpu],
      ['nginx proxy GET', get(nginxPlain.port), null],
      ['nginx+auth_request→stub', get(nginxStub.port), null],
      ['nginx+auth_request→vigil', get(nginxVigil.port), authzCpu],
    ];
    const scenarios = allScenarios.filter(([name]) => wanted(name));
    say(
      `[bench/proxy] ${useWrk ? 'wrk' : 'undici'} load, ${connections} connections, ` +
        `${rounds} interleaved rounds of ${seconds} s, load average ${loadavg()}`,
    );
    // Rounds interleave the scenarios, and each figure is the median of its rounds: a burst of
    // load from elsewhere on the machine then hits every scenario alike instead of one of them.
    const samples = new Map<string, LoadFigures[]>();
    for (let n = 1; n <= rounds; n++) {
      for (const [name, spec, cpu] of scenarios) {
        const cpu0 = cpu?.() ?? 0;
        const r = await load(spec, useWrk, scratch);
        // The warm-up second is in the CPU total too: divide by all requests served.
        if (cpu)
          r.cpu_us_per_req = round((cpu() - cpu0) / (r.requests * ((seconds + 1) / seconds)));
        samples.set(name, [...(samples.get(name) ?? []), r]);
        say(`  round ${n} ${line(name, r)}`);
      }
    }
    const runs: Record<string, LoadFigures> = {};
    for (const [name, list] of samples) {
      const m = { ...medianRun(list) };
      const cpus = list
        .map((r) => r.cpu_us_per_req ?? NaN)
        .filter(Number.isFinite)
        .sort((a, b) => a - b);
      if (cpus.length) m.cpu_us_per_req = cpus[Math.floor((cpus.length - 1) / 2)]!;
      runs[name] = m;
    }
    say('medians:');
    for (const [name, r] of Object.entries(runs)) say(`  ${line(name, r)}`);
    // A scenario left out by `only` reads NaN (null in JSON) and fails its target.
    const NOT_RUN: LoadFigures = {
      requests: 0,
      rps: NaN,
      errors: 0,
      non2xx: 0,
      p50_ms: NaN,
      p90_ms: NaN,
      p99_ms: NaN,
      max_ms: NaN,
    };
    const pass = runs['vigil pass-through GET'] ?? NOT_RUN;
    const monitored = runs['vigil monitored POST /login'] ?? NOT_RUN;
    const bareGet = runs['bare proxy GET'] ?? NOT_RUN;
    const barePost = runs['bare proxy POST /login'] ?? NOT_RUN;
    const ngx = runs['nginx proxy GET'] ?? NOT_RUN;
    const ngxStub = runs['nginx+auth_request→stub'] ?? NOT_RUN;
    const ngxVigil = runs['nginx+auth_request→vigil'] ?? NOT_RUN;

    // Latency at half of Vigil's maximum, open loop at a fixed rate, direct beside proxied at
    // the same rate: what the proxy adds when it is not the bottleneck.
    const half: Record<string, LoadFigures> = {};
    const halfRates = { get: Math.round(pass.rps / 2), post: Math.round(monitored.rps / 2) };
    const allPairs: [string, LoadSpec, number][] = [
      ['direct GET', get(origin.port), halfRates.get],
      ['bare proxy GET', get(bare.port), halfRates.get],
      ['vigil pass-through GET', get(vigilPort), halfRates.get],
      ['direct POST /login', post(origin.port), halfRates.post],
      ['bare proxy POST /login', post(bare.port), halfRates.post],
      ['vigil monitored POST /login', post(vigilPort), halfRates.post],
    ];
    const pairs = allPairs.filter(([name, , rps]) => wanted(name) && Number.isFinite(rps));
    const halfSamples = new Map<string, LoadFigures[]>();
    for (let n = 1; n <= rounds; n++) {
      for (const [name, spec, rps] of pairs) {
        const r = await openLoad(spec, rps, fixedRate, scratch);
        halfSamples.set(name, [...(halfSamples.get(name) ?? []), r]);
        say(`  half-load round ${n} ${line(`${name} @ ${rps}/s`, r)}`);
      }
    }
    for (const [name, list] of halfSamples) half[name] = medianRun(list, 'p99_ms');
    const r2 = (x: number) => Math.round(x * 100) / 100;
    const p99 = (name: string) => half[name]?.p99_ms ?? NaN;
    const ratios = {
      passthrough_vs_bare: r2(pass.rps / bareGet.rps),
      monitored_vs_bare_post: r2(monitored.rps / barePost.rps),
      nginx_authz_vigil_vs_stub: r2(ngxVigil.rps / ngxStub.rps),
      vigil_passthrough_vs_nginx: r2(pass.rps / ngx.rps),
    };
    const added = {
      bare_reference: r2(p99('bare proxy GET') - p99('direct GET')),
      bare_reference_post: r2(p99('bare proxy POST /login') - p99('direct POST /login')),
      passthrough: r2(p99('vigil pass-through GET') - p99('direct GET')),
      monitored: r2(p99('vigil monitored POST /login') - p99('direct POST /login')),
    };
    const targets = {
      passthrough_vs_bare: {
        value: ratios.passthrough_vs_bare,
        target: '≥ 0.9',
        ok: ratios.passthrough_vs_bare >= 0.9,
      },
      monitored_vs_bare: {
        value: ratios.monitored_vs_bare_post,
        target: '≥ 0.75',
        ok: ratios.monitored_vs_bare_post >= 0.75,
      },
      added_p99_passthrough_ms: {
        value: added.passthrough,
        target: '≤ 2',
        ok: added.passthrough <= 2,
      },
      added_p99_monitored_ms: { value: added.monitored, target: '≤ 2', ok: added.monitored <= 2 },
      nginx_authz_vigil_vs_stub: {
        value: ratios.nginx_authz_vigil_vs_stub,
        target: '≥ 0.6',
        ok: ratios.nginx_authz_vigil_vs_stub >= 0.6,
      },
    };
    return {
      load_generator: useWrk ? 'wrk' : 'undici',
      fixed_rate_generator: fixedRate.kind,
      seconds,
      connections,
      runs,
      half_load: { target_rps: halfRates, runs: half },
      load_average: { before: loadBefore, after: loadavg() },
      ratios,
      added_p99_ms_at_half_load: added,
      cpu_us_per_req: Object.fromEntries(
        Object.entries(runs)
          .filter(([, r]) => r.cpu_us_per_req !== undefined)
          .map(([k, r]) => [k, r.cpu_us_per_req!]),
      ),
      targets,
    };
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    rmSync(scratch, { recursive: true, force: true });
  }
}

// ───────────────────────────── counters across processes ─────────────────────────────
// Where proxy workers without Redis count: in the primary over IPC (what ships), or in the shared
// SQLite file (a counter table keyed by decision id, one write transaction per decision). Every
// worker counts the same card (the hot key a card-testing attack makes), `concurrency` counts in
// flight per worker; each figure is per count: its latency and the count rate of all workers.

interface CounterFigures {
  counts_per_s: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  errors: number;
}

const COUNT_REQUEST = [
  { field: '$.credential_fingerprint', value: 'tok_hot', windowsMs: [3_600_000], distinct: [] },
];

async function counterWorker(kind: string, seconds: number, concurrency: number, db: string) {
  const lat: number[] = [];
  let errors = 0;
  let n = 0;
  const id = () => `${process.pid}-${++n}`;
  const start = performance.now();
  const until = start + seconds * 1000;
  if (kind === 'ipc') {
    const store = new IpcCounterStore({ timeoutMs: 1_000 });
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < until) {
          const t0 = performance.now();
          try {
            await store.count(id(), Date.now(), COUNT_REQUEST, { record: true });
          } catch {
            errors++;
          }
          lat.push(performance.now() - t0);
        }
      }),
    );
    await store.close();
  } else {
    // better-sqlite3 is synchronous: one count at a time per process, however many wait.
    const { default: Database } = await import('better-sqlite3');
    const sql = new Database(db);
    sql.pragma('journal_mode = WAL');
    sql.pragma('synchronous = NORMAL');
    sql.pragma('busy_timeout = 5000');
    const insert = sql.prepare('INSERT OR IGNORE INTO counts (key, id, ts) VALUES (?, ?, ?)');
    const count = sql.prepare('SELECT count(*) AS n FROM counts WHERE key = ? AND ts > ?');
    const tx = sql.transaction((key: string, decision: string, now: number) => {
      insert.run(key, decision, now);
      return (count.get(key, now - 3_600_000) as { n: number }).n;
    });
    while (performance.now() < until) {
      const t0 = performance.now();
      try {
        tx.immediate('tok_hot', id(), Date.now());
      } catch {
        errors++;
      }
      lat.push(performance.now() - t0);
      // Let the loop breathe like a server would between requests.
      if (n % 64 === 0) await sleep(0);
    }
    sql.close();
  }
  return { lat, errors, seconds: (performance.now() - start) / 1000 };
}

/** Both ways, with `workers` processes (default 2), `concurrency` counts in flight each. */
export async function runCounterBench(
  opts: { workers?: number; seconds?: number; concurrency?: number } = {},
): Promise<Record<'ipc' | 'sqlite', CounterFigures>> {
  const workers = opts.workers ?? 2;
  const seconds = opts.seconds ?? 3;
  const concurrency = opts.concurrency ?? 32;
  const scratch = mkdtempSync(path.join(tmpdir(), 'vigil-bench-counters-'));
  const db = path.join(scratch, 'counters.db');
  try {
    const { default: Database } = await import('better-sqlite3');
    const init = new Database(db);
    init.pragma('journal_mode = WAL');
    init.exec(
      'CREATE TABLE counts (key TEXT NOT NULL, id TEXT NOT NULL, ts INTEGER NOT NULL, ' +
        'PRIMARY KEY (key, id)) WITHOUT ROWID; CREATE INDEX counts_key_ts ON counts (key, ts);',
    );
    init.close();
    const out: Partial<Record<'ipc' | 'sqlite', CounterFigures>> = {};
    for (const kind of ['ipc', 'sqlite'] as const) {
      const primary = new MemoryCounterStore();
      const results = await Promise.all(
        Array.from({ length: workers }, () => {
          const child = fork(
            SELF,
            ['--role', 'counter', kind, String(seconds), String(concurrency), db],
            { execArgv: process.execArgv, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] },
          );
          child.on('message', (m: unknown) =>
            serveCount(primary, { send: (r) => child.send(r as object) }, m),
          );
          return new Promise<{ lat: number[]; errors: number; seconds: number }>(
            (resolve, reject) => {
              let text = '';
              child.stdout!.on('data', (c: Buffer) => (text += c.toString()));
              child.once('exit', (code) =>
                code === 0
                  ? resolve(JSON.parse(text) as { lat: number[]; errors: number; seconds: number })
                  : reject(new Error(`counter worker exited with ${code}`)),
              );
            },
          );
        }),
      );
      const lat = results.flatMap((r) => r.lat);
      const f = summarize(lat, Math.max(...results.map((r) => r.seconds)), 0, 0);
      out[kind] = {
        counts_per_s: f.rps,
        p50_ms: f.p50_ms,
        p99_ms: f.p99_ms,
        max_ms: f.max_ms,
        errors: results.reduce((a, r) => a + r.errors, 0),
      };
    }
    return out as Record<'ipc' | 'sqlite', CounterFigures>;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

// ───────────────────────────── entry ─────────────────────────────

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? undefined : process.argv[i + 1];
}

async function serveRole(role: string): Promise<void> {
  if (role === 'counter') {
    const at = process.argv.indexOf(role);
    const [kind = 'ipc', seconds = '3', concurrency = '32', db = ''] = process.argv.slice(at + 1);
    const r = await counterWorker(kind, Number(seconds), Number(concurrency), db);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    process.disconnect?.();
    return;
  }
  if (role === 'load' || role === 'open') {
    const spec = JSON.parse(process.argv[process.argv.indexOf(role) + 1]!) as LoadSpec & {
      rps: number;
    };
    const figures = role === 'load' ? await runLoad(spec) : await runOpenLoop(spec);
    process.stdout.write(`${JSON.stringify(figures)}\n`);
    return;
  }
  const target = process.argv[process.argv.indexOf(role) + 1] ?? '';
  const server = role === 'origin' ? runOrigin() : role === 'stub' ? runStub() : runBare(target);
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
  process.once('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === SELF) {
  const role = arg('role');
  if (role) {
    await serveRole(role);
  } else if (process.argv.includes('--counters')) {
    const r = await runCounterBench({
      workers: Number(arg('workers') ?? 2),
      seconds: Number(arg('seconds') ?? 3),
      concurrency: Number(arg('concurrency') ?? 32),
    });
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  } else {
    const result = await runProxyBench({
      seconds: Number(arg('seconds') ?? 3),
      connections: Number(arg('connections') ?? 32),
      rounds: Number(arg('rounds') ?? 3),
      only: arg('only')?.split(',').filter(Boolean),
    });
    process.stdout.write(
      `${JSON.stringify({ ratios: result.ratios, added_p99_ms_at_half_load: result.added_p99_ms_at_half_load }, null, 2)}\n`,
    );
    for (const [name, t] of Object.entries(result.targets)) {
      process.stdout.write(
        `${t.ok ? 'PASS' : 'FAIL'}  ${name.padEnd(28)} ${String(t.value).padStart(6)}  (target ${t.target})\n`,
      );
    }
  }
}
