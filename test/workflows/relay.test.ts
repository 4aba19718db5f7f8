// The handoff relay through a Temporal outage: a dev server of the test's own (SQLite file in
// a temp dir) is stopped while decisions pile up in the outbox, then started again on the same
// port and database. The relay backs off meanwhile, drops nothing, and delivers every decision
// to its session case once Temporal answers.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createRelay, type Relay } from '../../activities/relay.ts';
import { createWorker } from '../../activities/worker.ts';
import { caseQuery, caseWorkflowId } from '../../workflows/contracts.ts';
import { httpDeps } from './helpers/deps.ts';
import { review } from './helpers/fixtures.ts';
import { openSqliteOutbox, type SqliteOutbox } from './helpers/sqlite-outbox.ts';
import { sharedBundle, uniqueQueue, until } from './helpers/temporal.ts';

const services = inject('services');
const root = path.resolve(import.meta.dirname, '../..');
let dir: string;
let address: string;
let pid: number;
let outbox: SqliteOutbox;
let relay: Relay | undefined;
let connection: Connection | undefined;

function alive(p: number): boolean {
  try {
    process.kill(p, 0);
    return true;
  } catch {
    return false;
  }
}

async function stopTemporal(): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  await until('Temporal to exit', () => Promise.resolve(!alive(pid)), 20_000, 50);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** The same binary, port and SQLite file as before: the server comes back with its state. */
async function startTemporalAgain(): Promise<void> {
  const port = address.split(':')[1]!;
  const log = openSync(path.join(dir, 'temporal', 'restart.log'), 'a');
  const child = spawn(
    services.temporalBin,
    [
      'server',
      'start-dev',
      '--headless',
      '--ip',
      '127.0.0.1',
      '--port',
      port,
      '--http-port',
      String(await freePort()),
      '--metrics-port',
      String(await freePort()),
      '--namespace',
      'default',
      '--db-filename',
      path.join(dir, 'temporal', 'temporal.sqlite'),
      '--log-level',
      'warn',
    ],
    { detached: true, stdio: ['ignore', log, log] },
  );
  child.unref();
  pid = child.pid!;
}

/** On failure: the case's history and the restarted server's log, for the next person. */
function diagnose(workflowId: string): void {
  try {
    const show = execFileSync(services.temporalBin, [
      'workflow',
      'show',
      '-w',
      workflowId,
      '--address',
      address,
    ]);
    console.error(show.toString());
    console.error(readFileSync(path.join(dir, 'temporal', 'restart.log'), 'utf8').slice(-4000));
  } catch (err) {
    console.error('no diagnostics:', err);
  }
}

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-relay-'));
  execFileSync('bash', [path.join(root, 'scripts/temporal.sh'), 'start', dir], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const env = readFileSync(path.join(dir, 'temporal.env'), 'utf8');
  address = /TEMPORAL_ADDRESS=(\S+)/.exec(env)![1]!;
  pid = Number(readFileSync(path.join(dir, 'temporal', 'pid'), 'utf8').trim());
  outbox = openSqliteOutbox(path.join(dir, 'outbox.sqlite'));
}, 90_000);

afterAll(async () => {
  await relay?.stop();
  await connection?.close();
  outbox?.close();
  await stopTemporal();
  rmSync(dir, { recursive: true, force: true });
});

it('Temporal stopped with 200 decisions in the outbox, started again: every one delivered', async () => {
  const taskQueue = uniqueQueue('relay');
  connection = await Connection.connect({ address });
  const client = new Client({ connection });
  relay = createRelay({
    client,
    outbox,
    taskQueue,
    batchSize: 50,
    leaseMs: 10_000,
    idleMs: 50,
    deliverTimeoutMs: 2_000,
    backoff: { initialMs: 100, maxMs: 1_000 },
  });
  relay.start();

  await stopTemporal();
  // 200 decisions acknowledged while Temporal is down: 50 sessions of 4.
  const sessions = Array.from({ length: 50 }, (_, i) => `relay_${i}_${taskQueue.slice(-8)}`);
  const byCase = new Map<string, string[]>();
  for (let round = 0; round < 4; round++) {
    for (const s of sessions) {
      const d = review(s);
      const workflowId = caseWorkflowId(s, d.decision_id);
      outbox.enqueue(workflowId, { ...d, workflow_id: workflowId });
      byCase.set(workflowId, [...(byCase.get(workflowId) ?? []), d.decision_id]);
    }
  }
  expect(outbox.undelivered()).toBe(200);

  await until('the relay to back off', () =>
    Promise.resolve(relay!.metrics().consecutive_failures >= 2),
  );
  const during = await relay.stats();
  expect(during.state).toBe('backing_off');
  expect(during.delivered_total).toBe(0);
  expect(during.outbox).toMatchObject({ size: 200 });
  expect(during.last_error).toBeTruthy();

  const t0 = Date.now();
  await startTemporalAgain();
  await until('all 200 delivered', () => Promise.resolve(outbox.undelivered() === 0), 60_000, 100);
  const deliveredIn = Date.now() - t0;
  const after = await relay.stats();
  expect(after.delivered_total).toBe(200);
  expect(after.outbox).toEqual({ size: 0, oldestAgeMs: 0 });
  expect(after.consecutive_failures).toBe(0);

  // Each session's case exists and holds its four decisions (a worker runs them now).
  const native = await NativeConnection.connect({ address });
  const { deps } = httpDeps('http://127.0.0.1:9', []);
  const worker = await createWorker({
    connection: native,
    taskQueue,
    deps,
    workflowBundle: await sharedBundle(),
  });
  const seen = await worker.runUntil(async () => {
    let n = 0;
    for (const [workflowId, ids] of byCase) {
      // Generous: on a loaded machine a freshly restarted dev server can take a while to hand
      // out the first tasks of a new queue; a failure prints the case's history.
      const c = await until(
        `case ${workflowId}`,
        async () => {
          const v = await client.workflow.getHandle(workflowId).query(caseQuery);
          return v.decisions.length === ids.length ? v : undefined;
        },
        90_000,
        200,
      ).catch((e: unknown) => {
        diagnose(workflowId);
        throw e;
      });
      expect(c.decisions.map((d) => d.decision_id).sort()).toEqual([...ids].sort());
      n += 1;
    }
    return n;
  });
  expect(seen).toBe(50);
  await native.close();
  console.log(
    `[relay] 200 decisions delivered to 50 cases ${deliveredIn} ms after Temporal came back ` +
      `(${during.consecutive_failures}+ failed passes during the outage)`,
  );
});

it('keeps an item that is not a handoff (never dropped) and delivers the rest', async () => {
  const taskQueue = uniqueQueue('relay-invalid');
  const box = openSqliteOutbox(path.join(dir, 'outbox-invalid.sqlite'));
  const conn = await Connection.connect({ address: services.temporalAddress });
  const client = new Client({ connection: conn });
  const errors: unknown[] = [];
  const r = createRelay({
    client,
    outbox: box,
    taskQueue,
    idleMs: 20,
    backoff: { initialMs: 50, maxMs: 60_000 },
    onError: (e) => errors.push(e),
  });
  try {
    const good = review(`relay_ok_${taskQueue.slice(-8)}`);
    const workflowId = caseWorkflowId(good.session, good.decision_id);
    box.enqueue('decision-dec_bad', { decision_id: 'dec_bad', decision: 'MAYBE' });
    box.enqueue(workflowId, { ...good, workflow_id: workflowId });
    r.start();
    await until('the good one delivered', () => Promise.resolve(r.metrics().delivered_total === 1));
    await r.stop();
    expect(r.metrics()).toMatchObject({ state: 'stopped', invalid_total: 1, delivered_total: 1 });
    expect(box.undelivered()).toBe(1);
    expect(errors).toHaveLength(1);
    const desc = await client.workflow.getHandle(workflowId).describe();
    expect(desc.type).toBe('caseWorkflow');
    expect(desc.taskQueue).toBe(taskQueue);
    await client.workflow.getHandle(workflowId).terminate('test over');
  } finally {
    await r.stop();
    box.close();
    await conn.close();
  }
});
