// A worker killed (SIGKILL) in the middle of the ticket step: the ticket tracker already
// created the ticket but the worker never heard back. After a new worker starts, the step is
// retried with the same idempotency key, the tracker finds the ticket, and the case completes
// with exactly one ticket.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { handOffDecision } from '../../activities/relay.ts';
import { caseQuery, caseWorkflowId, type CaseResult } from '../../workflows/contracts.ts';
import { review, reviewPlaybook, session } from './helpers/fixtures.ts';
import { connect, sharedBundle, uniqueQueue, type Temporal } from './helpers/temporal.ts';
import { recordHistory } from '../replay/histories.ts';
import { startThirdParty, type ThirdParty } from './helpers/third-party.ts';

const services = inject('services');
const WORKER = path.resolve(import.meta.dirname, 'helpers/worker-process.ts');
let t: Temporal;
let tp: ThirdParty;
let dir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  [t, tp] = await Promise.all([connect(services.temporalAddress), startThirdParty()]);
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-crash-'));
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await tp?.close();
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

function startWorkerProcess(env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, [WORKER], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once('exit', (code, sig) => reject(new Error(`worker exited early: ${code ?? sig}`)));
    child.stdout.on('data', (b: Buffer) => {
      if (b.toString().includes('ready')) resolve(child);
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

it('a worker SIGKILLed mid-step: the case completes and the tracker saw one create', async () => {
  const taskQueue = uniqueQueue('crash');
  const s = session();
  const integration = `jira-${s}`;
  const route = `actions/${integration}/create-issue`;
  // The real kinds look the key up before creating; the first answer is held back long
  // enough for the kill to land while the activity waits for it.
  tp.configure(route, { honourIdempotency: true, delayFirstMs: 5_000 });
  const playbooks = [
    reviewPlaybook({
      steps: [
        { ticket: { integration, action_id: 'create-issue' } },
        { wait_for_resolution: { timeout: '1s', on_timeout: 'accept' } },
      ],
      after_decision: [],
    }),
  ];
  const playbooksFile = path.join(dir, 'playbooks.json');
  writeFileSync(playbooksFile, JSON.stringify(playbooks));
  const bundleFile = path.join(dir, 'workflows.js');
  writeFileSync(bundleFile, (await sharedBundle()).code);
  const env = {
    TEMPORAL_ADDRESS: services.temporalAddress,
    VIGIL_TEST_TASK_QUEUE: taskQueue,
    VIGIL_TEST_BUNDLE: bundleFile,
    VIGIL_TEST_PLAYBOOKS: playbooksFile,
    VIGIL_TEST_THIRD_PARTY: tp.url,
  };

  const first = await startWorkerProcess(env);
  const arrived = tp.arrived(route);
  const d = review(s);
  const t0 = Date.now();
  await handOffDecision(t.client, d, {
    taskQueue,
    // A dead worker is noticed after the heartbeat timeout, not the 2 minute step timeout.
    caseInput: { step_timeouts: { heartbeat: '2s' } },
  });
  await arrived;
  first.kill('SIGKILL');
  await exited(first);
  expect(tp.creates(route)).toBe(1);

  const second = await startWorkerProcess(env);
  try {
    const handle = t.client.workflow.getHandle(caseWorkflowId(s, d.decision_id));
    const result = (await handle.result()) as CaseResult;
    const elapsed = Date.now() - t0;
    expect(result).toMatchObject({ status: 'resolved', decisions: 1 });
    expect(result.resolution).toMatchObject({ resolution: 'accept', by: 'timeout' });

    const calls = tp.callsTo(route);
    expect(calls.length).toBe(2);
    expect(new Set(calls.map((c) => c.idempotencyKey)).size).toBe(1);
    expect(tp.creates(route)).toBe(1);
    const c = await handle.query(caseQuery);
    expect(c.tickets).toHaveLength(1);
    // The retried call got the ticket the first call created (200, not a second 201).
    expect(calls.map((x) => x.status)).toEqual([201, 200]);
    expect(c.tickets[0]!.ref).toMatch(/^create-issue-\d+$/);
    expect(c.steps.find((x) => x.step.endsWith('.ticket'))).toMatchObject({
      status: 'completed',
      attempts: 2,
    });
    console.log(`[crash] case completed ${elapsed} ms after the handoff`);
    await recordHistory(handle, 'worker-killed-mid-ticket');
  } finally {
    second.kill('SIGTERM');
    await exited(second);
  }
});
