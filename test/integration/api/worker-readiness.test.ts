// `vigil worker` alone does nothing without Temporal: its /readyz must say so (it said ready,
// with temporal not required, while the worker could not connect).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { afterAll, expect, it } from 'vitest';
import { freePort } from '../../helpers/net.ts';

const root = path.resolve(import.meta.dirname, '../../..');
let child: ChildProcess | undefined;
let dir: string | undefined;

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('a worker that cannot reach Temporal is not ready', async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-worker-ready-'));
  const healthPort = await freePort();
  const nobody = await freePort();
  const env = { ...process.env };
  for (const k of ['REDIS_URL', 'DATABASE_URL', 'KAFKA_BROKERS']) delete env[k];
  child = spawn(process.execPath, ['--no-warnings', path.join(root, 'cli/main.ts'), 'worker'], {
    env: {
      ...env,
      VIGIL_DATA_DIR: dir,
      VIGIL_ADMIN_TOKEN: 'vigil_test_admin_token_worker_ready_0123456789',
      TEMPORAL_ADDRESS: `127.0.0.1:${nobody}`,
      API_PORT: String(healthPort),
    },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  let last: { status: number; body: any } | undefined;
  const end = Date.now() + 60_000;
  while (Date.now() < end) {
    try {
      const r = await request(`http://127.0.0.1:${healthPort}/readyz`);
      last = { status: r.statusCode, body: await r.body.json() };
      if (last.body.dependencies?.temporal?.state === 'down') break;
    } catch {
      // not listening yet
    }
    await sleep(200);
  }
  expect(last?.status).toBe(503);
  expect(last?.body.dependencies.temporal).toMatchObject({ state: 'down', required: true });
});
