// /readyz of a process that runs proxy workers: not ready while no worker listens (a load
// balancer asking it would send traffic to a port nobody serves), ready once one does.
// The proxy port is held by another socket first, so the workers cannot listen until it is
// let go; /readyz on the health port answers all along.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrigin, type Origin } from './helpers.ts';

const root = path.resolve(import.meta.dirname, '../../..');
let origin: Origin;
let dir: string;
let routes: string;
const children: ChildProcess[] = [];
let blocker: net.Server | undefined;

const listenOn = (s: net.Server, p: number) =>
  new Promise<number>((resolve, reject) => {
    s.once('error', reject);
    s.listen(p, '127.0.0.1', () => resolve((s.address() as net.AddressInfo).port));
  });

async function freePort(): Promise<number> {
  const probe = net.createServer();
  const p = await listenOn(probe, 0);
  await new Promise((r) => probe.close(r));
  return p;
}

/** `vigil proxy` on `port` with `workers` processes; its /readyz on a port of its own. */
async function vigilProxy(
  workers: number,
  port: number,
  extra: Record<string, string> = {},
): Promise<string> {
  const healthPort = await freePort();
  const env = { ...process.env };
  for (const k of ['REDIS_URL', 'DATABASE_URL', 'KAFKA_BROKERS', 'TEMPORAL_ADDRESS']) delete env[k];
  children.push(
    spawn(process.execPath, ['--no-warnings', path.join(root, 'cli/main.ts'), 'proxy'], {
      env: {
        ...env,
        VIGIL_DATA_DIR: dir,
        VIGIL_ADMIN_TOKEN: 'vigil_test_admin_token_readiness_0123456789',
        VIGIL_DEMO: '0',
        PORT: String(port),
        API_PORT: String(healthPort),
        VIGIL_CONFIG: routes,
        VIGIL_PROXY_WORKERS: String(workers),
        ...extra,
      },
      stdio: ['ignore', 'ignore', 'ignore'],
    }),
  );
  return `http://127.0.0.1:${healthPort}`;
}

async function readyz(url: string): Promise<{ status: number; body: any } | undefined> {
  try {
    const r = await request(`${url}/readyz`, { headersTimeout: 2_000 });
    return { status: r.statusCode, body: await r.body.json() };
  } catch {
    return undefined; // the health port is not up yet
  }
}

async function until(url: string, ok: (r: { status: number; body: any }) => boolean, ms: number) {
  const end = Date.now() + ms;
  let last: { status: number; body: any } | undefined;
  while (Date.now() < end) {
    last = await readyz(url);
    if (last && ok(last)) return last;
    await sleep(100);
  }
  throw new Error(`/readyz never matched; last: ${JSON.stringify(last)}`);
}

async function get(port: number): Promise<number> {
  const res = await request(`http://127.0.0.1:${port}/hello`, { reset: true });
  await res.body.dump();
  return res.statusCode;
}

beforeAll(async () => {
  origin = await startOrigin();
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-readiness-'));
  routes = path.join(dir, 'routes.json');
  writeFileSync(
    routes,
    JSON.stringify({
      mode: 'active',
      origins: { shop: origin.url },
      routes: [{ match: { path: '/*' }, origin: 'shop' }],
    }),
  );
});

afterAll(async () => {
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  }
  await new Promise((r) => (blocker?.listening ? blocker.close(r) : r(undefined)));
  await origin?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('/readyz with proxy workers', () => {
  it('is 503 while no worker listens, and 200 once they do', async () => {
    blocker = net.createServer((c) => c.destroy());
    const port = await listenOn(blocker, 0);
    const url = await vigilProxy(2, port, { VIGIL_PROXY_WORKER_YOUNG_MB: '4' });
    const first = await until(url, () => true, 30_000);
    expect(first.status).toBe(503);
    expect(first.body.status).toBe('not_ready');
    expect(first.body.dependencies.proxy_workers).toMatchObject({ state: 'down', required: true });
    // Still not ready a moment later: the workers keep failing to listen.
    await sleep(1_500);
    const still = await readyz(url);
    expect(still?.status).toBe(503);

    await new Promise((r) => blocker!.close(r));
    const ready = await until(url, (r) => r.status === 200, 45_000);
    expect(ready.body.status).toBe('ready');
    expect(['up', 'degraded']).toContain(ready.body.dependencies.proxy_workers.state);
    // And the port is served now.
    expect(await get(port)).toBe(200);
    // The workers run with the young generation asked for (VIGIL_PROXY_WORKER_YOUNG_MB).
    // detail: `2/2 listening; <pid> listening, <pid> listening; 0 restarts`
    const workers = String(ready.body.dependencies.proxy_workers.detail).split('; ')[1] ?? '';
    const pids = [...workers.matchAll(/(\d+) listening/g)];
    expect(pids.length).toBeGreaterThan(0);
    for (const [, pid] of pids) {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      expect(argv).toContain('--max-semi-space-size=4');
      expect(argv).not.toContain('--max-semi-space-size=1');
    }
  }, 90_000);

  it('counts the proxy of a one-process `vigil proxy` (VIGIL_PROXY_WORKERS=1) the same way', async () => {
    const port = await freePort();
    const url = await vigilProxy(1, port);
    const ready = await until(url, (r) => r.status === 200, 30_000);
    expect(ready.body.dependencies.proxy_workers).toMatchObject({ state: 'up', required: true });
    expect(ready.body.dependencies.proxy_workers.detail).toMatch(
      /^1\/1 listening; \d+ listening; 0 restarts$/,
    );
    expect(await get(port)).toBe(200);
  }, 60_000);
});
