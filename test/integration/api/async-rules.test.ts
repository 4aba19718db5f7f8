// Async backend rules end to end in the real runtime (CONTRACT §1 semantic 10): `vigil api`'s
// decide, the outbox and relay, the case workflow on a dev server of this file's own, and the
// worker role's store adapter, which settles the final outcome in rule order from the stored
// decision. Two regressions: a synchronous REVIEW beside an async rule that gives no verdict
// must stay REVIEW (it became ALLOW), and a shadow async rule on an ALLOW must still be called
// (it was never handed off).
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startEmbeddedTemporal, type EmbeddedTemporal } from '../../../cli/embedded-temporal.ts';
import { buildRuntime, type Runtime } from '../../../cli/runtime.ts';
import { startWorkerRole } from '../../../cli/worker-role.ts';
import { loadConfig } from '../../../config/config.ts';
import { until } from '../../workflows/helpers/temporal.ts';
import { ADMIN, injectJson } from './helpers.ts';

const services = inject('services');

let dir: string;
let temporal: EmbeddedTemporal;
let rt: Runtime;
let stopWorker: () => Promise<void>;
let backend: http.Server;
const calls: string[] = [];

const call = (method: 'GET' | 'POST' | 'PUT', url: string, body?: unknown) =>
  injectJson(rt, method, url, body, ADMIN);

async function activate(context: string, rules: unknown[]): Promise<void> {
  const created = await call('POST', '/api/admin/rulesets', { name: context, context, rules });
  expect(created.status).toBe(201);
  expect((await call('POST', `/api/admin/rulesets/${created.body.id}/activate`)).status).toBe(200);
}

beforeAll(async () => {
  // The third party: /decline answers a verdict, and every call is noted.
  backend = http.createServer((req, res) => {
    calls.push(req.url ?? '');
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ verdict: 'decline' }));
    });
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  const port = (backend.address() as AddressInfo).port;

  dir = mkdtempSync(path.join(tmpdir(), 'vigil-async-'));
  temporal = await startEmbeddedTemporal({
    bin: services.temporalBin,
    dataDir: path.join(dir, 'temporal'),
    log: () => {},
  });
  const config = loadConfig({
    VIGIL_DATA_DIR: path.join(dir, 'data'),
    VIGIL_ADMIN_TOKEN: ADMIN,
    TEMPORAL_ADDRESS: temporal.address,
    VIGIL_EGRESS_ALLOW: `127.0.0.1:${port}`,
  });
  rt = await buildRuntime(config, { serveApi: true, temporalAddress: temporal.address });
  stopWorker = await startWorkerRole(
    rt,
    { address: temporal.address, namespace: 'default' },
    () => {},
  );
  const integration = await call('PUT', '/api/admin/integrations/risk', {
    slug: 'risk',
    kind: 'http',
    base_url: `http://127.0.0.1:${port}`,
    auth: { type: 'none' },
    backends: [
      {
        backend_id: 'needs-email',
        method: 'POST',
        path: '/needs-email',
        required_fields: ['$.customer.email'],
        request: { email: '$.customer.email' },
        response: { outcome_path: '$.verdict', map: { decline: 'BLOCK' } },
        timeout_ms: 1_000,
      },
      {
        backend_id: 'decline',
        method: 'POST',
        path: '/decline',
        request: { amount: '$.transaction.amount' },
        response: { outcome_path: '$.verdict', map: { decline: 'BLOCK' } },
        timeout_ms: 1_000,
      },
    ],
  });
  expect(integration.status).toBeLessThan(300);
  expect(
    (
      await call('PUT', '/api/admin/playbooks/review-all', {
        on: { decision: ['REVIEW'] },
        steps: [{ wait_for_resolution: { timeout: '1h', on_timeout: 'escalate' } }],
      })
    ).status,
  ).toBe(201);
}, 60_000);

afterAll(async () => {
  await stopWorker?.();
  await rt?.close();
  await temporal?.stop();
  await new Promise((r) => (backend ? backend.close(r) : r(undefined)));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('async backend rules in the runtime', () => {
  it('a synchronous REVIEW stays the final outcome when the async rule has no verdict', async () => {
    await activate('async-review', [
      { id: 'a1', type: 'backend', integration: 'risk', backend_id: 'needs-email', async: true },
      {
        id: 'big',
        type: 'condition',
        action: 'REVIEW',
        condition: { gte: { path: '$.transaction.amount', value: 1_000 } },
      },
    ]);
    // No email: the async rule is insufficient_context, no request is made.
    const d = await call('POST', '/api/decisions', {
      context: 'async-review',
      transaction: { amount: 5_000 },
    });
    expect(d.status).toBe(200);
    expect(d.body.decision).toBe('PROVISIONAL');
    const settled = await until(
      'the final outcome',
      async () => {
        const r = await call('GET', `/api/decisions/${d.body.id}`);
        return r.body.final_decision ? r.body : undefined;
      },
      60_000,
      200,
    );
    expect(settled.final_decision).toBe('REVIEW');
    // The settled traces replace the pending ones; what the client was told stays.
    expect(settled.decision).toBe('PROVISIONAL');
    expect(settled.rules).toEqual([
      { rule_id: 'a1', result: 'insufficient_context' },
      { rule_id: 'big', result: 'matched', action: 'REVIEW' },
    ]);
    expect(settled.backend_results[0]).toMatchObject({
      rule_id: 'a1',
      status: 'insufficient_context',
    });
    expect(calls).not.toContain('/needs-email');
    // The final REVIEW reaches the playbooks like a synchronous one.
    const c = await until(
      'the case to run its playbook',
      async () => {
        const r = await call('GET', `/api/cases/${d.body.workflow_id}`);
        const rec = r.body.decisions?.find(
          (x: { decision_id: string }) => x.decision_id === d.body.id,
        );
        return rec?.final && rec.playbooks.length > 0 ? rec : undefined;
      },
      60_000,
      200,
    );
    expect(c).toMatchObject({ decision: 'REVIEW', final: true, playbooks: ['review-all'] });
  });

  it('a shadow async rule on an ALLOW is called and reported, and the ALLOW stands', async () => {
    await activate('async-shadow', [
      {
        id: 'try-decline',
        type: 'backend',
        integration: 'risk',
        backend_id: 'decline',
        async: true,
        live: false,
      },
    ]);
    const before = calls.filter((c) => c === '/decline').length;
    const d = await call('POST', '/api/decisions', {
      context: 'async-shadow',
      transaction: { amount: 10 },
    });
    expect(d.body.decision).toBe('ALLOW');
    expect(d.body.workflow_id).toBe(`decision-${d.body.id}`);
    const settled = await until(
      'the shadow rule to be settled',
      async () => {
        const r = await call('GET', `/api/decisions/${d.body.id}`);
        return r.body.final_decision ? r.body : undefined;
      },
      60_000,
      200,
    );
    expect(calls.filter((c) => c === '/decline').length).toBe(before + 1);
    expect(settled.final_decision).toBe('ALLOW');
    expect(settled.rules).toEqual([
      { rule_id: 'try-decline', result: 'matched', action: 'BLOCK', shadow: true },
    ]);
  });
});
