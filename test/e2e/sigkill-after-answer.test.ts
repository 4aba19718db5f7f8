// The handoff's promise at process level (CONTRACT §4: "never loses the decision"): a `vigil api`
// process answers a REVIEW and is SIGKILLed the moment the answer arrives, before anything
// else can happen; `vigil start` on the same data dir (worker role with the outbox relay) then
// opens the session's case with that decision. The first process runs no worker and no relay,
// so the decision can only reach Temporal through the outbox row written before the answer.
//
// Temporal is a dev server of this file's own (the shared services' binary): the restarted
// process polls the fixed task queue `vigil`, which another file's worker on the shared server
// could otherwise take.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { startEmbeddedTemporal, type EmbeddedTemporal } from '../../cli/embedded-temporal.ts';
import { caseQuery } from '../../workflows/contracts.ts';
import { freePort } from '../helpers/net.ts';
import { until } from '../workflows/helpers/temporal.ts';

const services = inject('services');
const root = path.resolve(import.meta.dirname, '../..');
const ADMIN = 'vgl_e2e_sigkill_admin_token_0123456789ab';

let dir: string;
let temporal: EmbeddedTemporal;
let connection: Connection;
let client: Client;
const children = new Set<ChildProcess>();

function vigil(args: string[], env: Record<string, string>): ChildProcess & { output(): string } {
  const child = spawn(
    process.execPath,
    ['--experimental-strip-types', '--no-warnings=ExperimentalWarning', 'cli/main.ts', ...args],
    { cwd: root, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env } },
  );
  let out = '';
  child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
  children.add(child);
  child.once('exit', () => children.delete(child));
  return Object.assign(child, { output: () => out });
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

async function api(
  base: string,
  method: string,
  url: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, any> }> {
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

async function healthy(base: string, child: ChildProcess & { output(): string }): Promise<void> {
  await until(
    'vigil to serve /healthz',
    async () => {
      if (child.exitCode !== null) throw new Error(`vigil exited: ${child.output()}`);
      const r = await fetch(`${base}/healthz`).catch(() => undefined);
      return r?.status === 200;
    },
    60_000,
    100,
  );
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-e2e-sigkill-'));
  temporal = await startEmbeddedTemporal({
    bin: services.temporalBin,
    dataDir: path.join(dir, 'temporal'),
    log: () => {},
  });
  connection = await Connection.connect({ address: temporal.address });
  client = new Client({ connection, namespace: 'default' });
});

afterAll(async () => {
  for (const c of children) {
    c.kill('SIGKILL');
    await exited(c);
  }
  await connection?.close();
  await temporal?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('a REVIEW answered just before SIGKILL opens its case after the restart', async () => {
  const apiPort = await freePort();
  const base = `http://127.0.0.1:${apiPort}`;
  const env = {
    VIGIL_DATA_DIR: path.join(dir, 'data'),
    VIGIL_ADMIN_TOKEN: ADMIN,
    TEMPORAL_ADDRESS: temporal.address,
    API_PORT: String(apiPort),
    PORT: String(await freePort()),
    VIGIL_DEMO: '0',
    VIGIL_LOG_LEVEL: 'warn',
  };

  const first = vigil(['api'], env);
  await healthy(base, first);

  const ruleset = await api(base, 'POST', '/api/admin/rulesets', {
    name: 'sigkill',
    context: 'checkout',
    rules: [
      {
        id: 'big',
        type: 'condition',
        action: 'REVIEW',
        condition: { gte: { path: '$.transaction.amount', value: 100000 } },
      },
    ],
  });
  expect(ruleset.status).toBe(201);
  expect((await api(base, 'POST', `/api/admin/rulesets/${ruleset.body.id}/activate`)).status).toBe(
    200,
  );

  // The CLI's `playbook put FILE` against this API: the case will load this playbook.
  const file = path.join(dir, 'playbook.json');
  writeFileSync(
    file,
    JSON.stringify({
      name: 'hold',
      on: { decision: ['REVIEW'] },
      steps: [{ wait_for_resolution: { timeout: '72h' } }],
    }),
  );
  const put = vigil(['playbook', 'put', file], { ...env, VIGIL_API_URL: base, VIGIL_TOKEN: ADMIN });
  expect((await exited(put)).code).toBe(0);
  expect(put.output()).toContain('playbook hold stored (version 1)');

  const session = `sigkill_${Date.now().toString(36)}`;
  const res = await fetch(`${base}/api/decisions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      context: 'checkout',
      transaction: { reference: 'ord_sigkill', amount: 250000, currency: 'EUR' },
      customer: { id: 'cus_sigkill' },
      device: { ip: '203.0.113.50', session },
    }),
  });
  const answer = (await res.json()) as { id: string; decision: string; workflow_id: string };
  first.kill('SIGKILL');
  expect(res.status).toBe(200);
  expect(answer.decision).toBe('REVIEW');
  expect(answer.workflow_id).toBe(`session-${session}`);
  expect((await exited(first)).signal).toBe('SIGKILL');

  // Nothing delivered it yet: `vigil api` runs no relay.
  await expect(client.workflow.getHandle(answer.workflow_id).describe()).rejects.toMatchObject({
    name: 'WorkflowNotFoundError',
  });

  const second = vigil(['start'], env);
  await healthy(base, second);
  const view = await until(
    'the case to hold the decision answered before the kill',
    async () => {
      const r = await api(base, 'GET', `/api/cases/${answer.workflow_id}`);
      return r.status === 200 && r.body.playbooks.length === 1 ? r.body : undefined;
    },
    90_000,
    250,
  );
  expect(view).toMatchObject({
    workflow_id: answer.workflow_id,
    status: 'open',
    opened_by: answer.id,
    playbooks: [{ name: 'hold', version: 1 }],
  });
  expect(view.decisions).toEqual([
    expect.objectContaining({ decision_id: answer.id, decision: 'REVIEW', playbooks: ['hold'] }),
  ]);
  // The same state straight from Temporal, not through the API.
  const direct = await client.workflow.getHandle(answer.workflow_id).query(caseQuery);
  expect(direct.decisions.map((d) => d.decision_id)).toEqual([answer.id]);
  // And the decision itself, which the case points at: stored before the answer too.
  const record = await api(base, 'GET', `/api/decisions/${answer.id}`);
  expect(record.status).toBe(200);
  expect(record.body).toMatchObject({ id: answer.id, decision: 'REVIEW' });

  second.kill('SIGTERM');
  const end = await exited(second);
  expect(end.code).toBe(0);
});
