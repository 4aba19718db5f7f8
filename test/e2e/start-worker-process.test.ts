// `vigil start` runs its worker role in a child process (cli/worker-child.ts), off the event
// loop that answers decisions. Its lifecycle: the child is restarted when it dies, a Ctrl-C to
// the terminal's process group stops everything once (the child, in a group of its own, is
// stopped by the parent and not restarted during shutdown), and a parent killed outright does
// not leave the child behind.
// A REVIEW made through `start` still opens its case: the child's relay delivers it.
//
// Temporal is a dev server of this file's own: the child polls the fixed task queue `vigil`,
// which another file's worker on the shared server could otherwise take.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { startEmbeddedTemporal, type EmbeddedTemporal } from '../../cli/embedded-temporal.ts';
import { freePort } from '../helpers/net.ts';
import { until } from '../workflows/helpers/temporal.ts';

const services = inject('services');
const root = path.resolve(import.meta.dirname, '../..');
const ADMIN = 'vgl_e2e_worker_child_token_0123456789abc';

let dir: string;
let temporal: EmbeddedTemporal;
let connection: Connection;
let client: Client;
const groups = new Set<number>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Started {
  child: ChildProcess;
  base: string;
  output(): string;
  exited: Promise<number | null>;
}

async function start(name: string): Promise<Started> {
  const apiPort = await freePort();
  const child = spawn(
    process.execPath,
    ['--experimental-strip-types', '--no-warnings=ExperimentalWarning', 'cli/main.ts', 'start'],
    {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        VIGIL_DATA_DIR: path.join(dir, name),
        VIGIL_ADMIN_TOKEN: ADMIN,
        TEMPORAL_ADDRESS: temporal.address,
        API_PORT: String(apiPort),
        PORT: String(await freePort()),
        VIGIL_PROXY_WORKERS: '1',
        VIGIL_DEMO: '0',
        VIGIL_LOG_LEVEL: 'warn',
      },
      // Its own process group, as a shell gives a foreground job.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  groups.add(child.pid!);
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, base: `http://127.0.0.1:${apiPort}`, output: () => out, exited };
}

/** The worker child's pid and restart count from /readyz, once it reports one running. */
async function workerProcess(
  s: Started,
  notPid?: number,
): Promise<{ pid: number; restarts: number }> {
  let found: { pid: number; restarts: number } | undefined;
  await until(
    'the worker process to be up',
    async () => {
      if (s.child.exitCode !== null) throw new Error(`vigil start exited:\n${s.output()}`);
      const r = await fetch(`${s.base}/readyz`).catch(() => undefined);
      if (!r) return false;
      const body = (await r.json()) as { dependencies?: Record<string, { detail?: string }> };
      const m = /pid (\d+); (\d+) restarts/.exec(body.dependencies?.worker_process?.detail ?? '');
      if (!m || Number(m[1]) === notPid) return false;
      found = { pid: Number(m[1]), restarts: Number(m[2]) };
      return true;
    },
    60_000,
    100,
  );
  return found!;
}

async function api(base: string, method: string, url: string, body?: unknown) {
  const res = await fetch(`${base}${url}`, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, any>) : {} };
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-e2e-worker-child-'));
  temporal = await startEmbeddedTemporal({
    bin: services.temporalBin,
    dataDir: path.join(dir, 'temporal'),
    log: () => {},
  });
  connection = await Connection.connect({ address: temporal.address });
  client = new Client({ connection, namespace: 'default' });
});

afterAll(async () => {
  for (const g of groups) {
    try {
      process.kill(-g, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  await connection?.close();
  await temporal?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('the worker runs in its own process: cases open, a dead worker is replaced, Ctrl-C stops all once', async () => {
  const s = await start('a');
  const first = await workerProcess(s);
  expect(first.pid).not.toBe(s.child.pid);
  expect(first.restarts).toBe(0);
  // Lowered below the API: SCHED_IDLE, and (with CONFIG_SCHED_AUTOGROUP) the autogroup of the
  // session it leads at nice 19; else the kernel weighs that session as a peer of the API's.
  // (The child lowers itself as its worker role starts.)
  await until(
    'the worker process to lower its priority',
    () =>
      Promise.resolve(/^policy\s*:\s*5$/m.test(readFileSync(`/proc/${first.pid}/sched`, 'utf8'))),
    15_000,
    50,
  );
  if (existsSync('/proc/self/autogroup')) {
    expect(readFileSync(`/proc/${first.pid}/autogroup`, 'utf8')).toMatch(/ nice 19$/m);
    expect(readFileSync(`/proc/${s.child.pid}/autogroup`, 'utf8')).toMatch(/ nice 0$/m);
  }

  // A REVIEW through the API reaches its case through the child's relay.
  const rs = await api(s.base, 'POST', '/api/admin/rulesets', {
    name: 'all-review',
    context: 'checkout',
    rules: [
      {
        id: 'big',
        type: 'condition',
        action: 'REVIEW',
        condition: { gte: { path: '$.transaction.amount', value: 1 } },
      },
    ],
  });
  expect(rs.status).toBe(201);
  await api(s.base, 'POST', `/api/admin/rulesets/${rs.body.id as string}/activate`);
  const d = await api(s.base, 'POST', '/api/decisions', {
    context: 'checkout',
    transaction: { reference: 'ord_w1', amount: 500 },
    device: { session: 'sess_worker_child' },
  });
  expect(d.body.decision).toBe('REVIEW');
  await until(
    'the case to open',
    async () => {
      await client.workflow.getHandle('session-sess_worker_child').describe();
      return true;
    },
    30_000,
    200,
  );

  // The worker process dies: another takes its place, and the restart is counted.
  process.kill(first.pid, 'SIGKILL');
  const second = await workerProcess(s, first.pid);
  expect(second.pid).not.toBe(first.pid);
  expect(second.restarts).toBe(1);

  // The whole group, as a terminal sends it: one clean stop, nothing restarted, nothing left.
  process.kill(-s.child.pid!, 'SIGINT');
  expect(await s.exited).toBe(0);
  expect(s.output()).not.toMatch(/exited \(SIGINT\)|exited \(0\); starting another/);
  await until(
    'the worker process to be gone',
    () => Promise.resolve(!alive(second.pid)),
    10_000,
    100,
  );
}, 120_000);

it('a parent killed outright does not leave its worker process behind', async () => {
  const s = await start('b');
  const w = await workerProcess(s);
  process.kill(s.child.pid!, 'SIGKILL');
  await s.exited;
  await until('the orphaned worker to stop', () => Promise.resolve(!alive(w.pid)), 20_000, 100);
}, 120_000);
