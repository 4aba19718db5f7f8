// Process lifecycle of `vigil proxy`. Regression: Ctrl-C in a terminal sends SIGINT to the
// whole process group. The proxy workers used to leave on it at once, and the primary, whose own
// shutdown had not begun, restarted one ("proxy worker exited; starting another") while shutting
// down. Workers now leave only when the primary stops them.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { afterAll, expect, it } from 'vitest';
import { freePort, startOrigin, type Origin } from './helpers.ts';

const root = path.resolve(import.meta.dirname, '../../..');
let origin: Origin | undefined;
let dir: string | undefined;
// A failed assertion must not leave the proxy and its workers running: its whole group goes.
let group: number | undefined;

afterAll(async () => {
  if (group) {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  await origin?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('a SIGINT to the whole process group stops vigil proxy once, restarting no worker', async () => {
  origin = await startOrigin();
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-ctrl-c-'));
  const routes = path.join(dir, 'routes.json');
  writeFileSync(
    routes,
    JSON.stringify({
      mode: 'passive',
      origins: { shop: origin.url },
      routes: [{ match: { path: '/*' }, origin: 'shop' }],
    }),
  );
  const [port, apiPort] = [await freePort(), await freePort()];
  const env = { ...process.env };
  for (const k of ['REDIS_URL', 'DATABASE_URL', 'KAFKA_BROKERS', 'TEMPORAL_ADDRESS']) delete env[k];
  const child = spawn(
    process.execPath,
    ['--no-warnings', path.join(root, 'cli/main.ts'), 'proxy'],
    {
      env: {
        ...env,
        VIGIL_DATA_DIR: dir,
        VIGIL_ADMIN_TOKEN: 'vigil_test_admin_token_ctrl_c_0123456789abcdef',
        VIGIL_CONFIG: routes,
        VIGIL_PROXY_WORKERS: '2',
        PORT: String(port),
        API_PORT: String(apiPort),
      },
      // Its own process group, as a shell gives a foreground job.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  group = child.pid;
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let workers: number[] | undefined;
  for (let i = 0; ; i++) {
    try {
      const r = await request(`http://127.0.0.1:${apiPort}/readyz`);
      const body = (await r.body.json()) as any;
      if (body?.dependencies?.proxy_workers?.state === 'up') {
        // "2/2 listening; <pid> listening, <pid> listening; 0 restarts"
        const detail = String(body.dependencies.proxy_workers.detail);
        workers = [...detail.matchAll(/[;,] (\d+) listening/g)].map((m) => Number(m[1]));
        break;
      }
    } catch {
      // not up yet
    }
    if (i > 300) throw new Error(`vigil proxy did not come up:\n${output}`);
    await sleep(100);
  }
  expect(workers).toHaveLength(2);
  // What a Ctrl-C delivers to the workers: they stay (serving) until the primary says so.
  for (const pid of workers) process.kill(pid, 'SIGINT');
  await sleep(1_500);
  for (const pid of workers) expect(() => process.kill(pid, 0)).not.toThrow();
  const r = await request(`http://127.0.0.1:${port}/anything`);
  await r.body.dump();
  expect(r.statusCode).toBe(200);
  // And the whole group, as a terminal sends it: one clean stop, no worker restarted.
  process.kill(-child.pid!, 'SIGINT');
  expect(await exited).toBe(0);
  expect(output).not.toContain('starting another');
}, 60_000);

it('vigil proxy with an invalid routes file exits at once, naming the field, before serving anything', async () => {
  const bad = mkdtempSync(path.join(tmpdir(), 'vigil-bad-routes-'));
  try {
    const file = path.join(bad, 'routes.json');
    writeFileSync(file, JSON.stringify({ origins: { shop: 'http://127.0.0.1:1' }, routes: [] }));
    const child = spawn(
      process.execPath,
      ['--no-warnings', path.join(root, 'cli/main.ts'), 'proxy'],
      {
        env: {
          ...process.env,
          VIGIL_DATA_DIR: bad,
          VIGIL_CONFIG: file,
          VIGIL_PROXY_WORKERS: '2',
          PORT: String(await freePort()),
          API_PORT: String(await freePort()),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(code).toBe(1);
    expect(output).toContain('mode:');
    expect(output).not.toContain('API on');
  } finally {
    rmSync(bad, { recursive: true, force: true });
  }
}, 30_000);
