// CONTRACT §4 cases API against a real Temporal dev server with the worker role running in the
// test: a REVIEW decision opens the session's case through the outbox and the relay, the API
// reads it back (visibility list, case query), a resolve closes it as resolved.
//
// The dev server is this file's own (the binary the shared services use), because the worker
// role polls the fixed task queue `vigil` and the list reads the whole namespace: on the shared
// server another file's worker could run these cases and other files' cases would be listed.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { handOffDecision } from '../../../activities/relay.ts';
import { startEmbeddedTemporal, type EmbeddedTemporal } from '../../../cli/embedded-temporal.ts';
import { buildRuntime, type Runtime } from '../../../cli/runtime.ts';
import { startWorkerRole } from '../../../cli/worker-role.ts';
import { loadConfig } from '../../../config/config.ts';
import { until } from '../../workflows/helpers/temporal.ts';
import { ADMIN, auth } from './helpers.ts';

const services = inject('services');

let dir: string;
let temporal: EmbeddedTemporal;
let rt: Runtime;
let stopWorker: () => Promise<void>;
let client: Client;
let connection: Connection;
let casesOnly: string;
let noCases: string;

type Rt = Pick<Runtime, 'app'>;

async function call(
  method: 'GET' | 'POST' | 'PUT',
  url: string,
  body?: unknown,
  token: string | null = ADMIN,
  on: Rt = rt,
) {
  const res = await on.app.inject({
    method,
    url,
    headers: token ? auth(token) : {},
    ...(body === undefined ? {} : { payload: body as object }),
  });
  return {
    status: res.statusCode,
    body: res.body ? (JSON.parse(res.body) as Record<string, any>) : {},
  };
}

const RULESET = {
  name: 'cases test',
  context: 'checkout',
  rules: [
    {
      id: 'big',
      type: 'condition',
      action: 'REVIEW',
      condition: { gte: { path: '$.transaction.amount', value: 100000 } },
    },
  ],
};

const PLAYBOOK = {
  on: { decision: ['REVIEW'], contexts: ['checkout'] },
  steps: [{ wait_for_resolution: { timeout: '72h', on_timeout: 'escalate' } }],
  on_resolution: {
    reject: [{ blacklist_add: { field_path: '$.credential_fingerprint', ttl_seconds: 3600 } }],
  },
};

const tag = Date.now().toString(36);

function decision(sessionId: string, amount = 150000, last4 = '4242') {
  return {
    context: 'checkout',
    transaction: { reference: `ord_${sessionId}_${amount}`, amount, currency: 'EUR' },
    credential: { type: 'masked_pan', bin: '411111', last4, expiry: '12/29' },
    customer: { id: `cus_${sessionId}` },
    device: { ip: '203.0.113.9', session: sessionId },
  };
}

async function decide(sessionId: string, amount?: number, last4?: string) {
  const r = await call('POST', '/api/decisions', decision(sessionId, amount, last4));
  expect(r.status).toBe(200);
  return r.body as { id: string; decision: string; workflow_id: string | null };
}

function caseWhere(workflowId: string, pred: (c: Record<string, any>) => boolean, what: string) {
  return until(
    what,
    async () => {
      const r = await call('GET', `/api/cases/${workflowId}`);
      return r.status === 200 && pred(r.body) ? r.body : undefined;
    },
    60_000,
    200,
  );
}

async function listIds(query: string): Promise<string[]> {
  const r = await call('GET', `/api/cases${query}`);
  expect(r.status).toBe(200);
  return r.body.cases.map((c: { workflow_id: string }) => c.workflow_id);
}

async function token(scopes: string[]): Promise<string> {
  const r = await call('POST', '/api/admin/tokens', { name: scopes.join(','), scopes });
  expect(r.status).toBe(201);
  return r.body.token as string;
}

async function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-cases-'));
  temporal = await startEmbeddedTemporal({
    bin: services.temporalBin,
    dataDir: path.join(dir, 'temporal'),
    log: () => {},
  });
  const config = loadConfig({
    VIGIL_DATA_DIR: path.join(dir, 'data'),
    VIGIL_ADMIN_TOKEN: ADMIN,
    TEMPORAL_ADDRESS: temporal.address,
  });
  rt = await buildRuntime(config, { serveApi: true, temporalAddress: temporal.address });
  stopWorker = await startWorkerRole(
    rt,
    { address: temporal.address, namespace: 'default' },
    () => {},
  );
  connection = await Connection.connect({ address: temporal.address });
  client = new Client({ connection, namespace: 'default' });

  const created = await call('POST', '/api/admin/rulesets', RULESET);
  expect(created.status).toBe(201);
  expect((await call('POST', `/api/admin/rulesets/${created.body.id}/activate`)).status).toBe(200);
  expect((await call('PUT', '/api/admin/playbooks/review', PLAYBOOK)).status).toBe(201);
  casesOnly = await token(['cases:read']);
  noCases = await token(['decisions:write', 'decisions:read', 'admin:playbooks:read']);
});

afterAll(async () => {
  await connection?.close();
  await stopWorker?.();
  await rt?.close();
  await temporal?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('scopes', () => {
  it.each([
    ['/api/cases'],
    ['/api/cases?status=bogus&limit=0'],
    ['/api/cases/session-x'],
    ['/api/cases/not%20an%20id!'],
  ])('GET %s: 401 without a token, 403 without cases:read, before validation', async (url) => {
    const none = await call('GET', url, undefined, null);
    expect(none.status).toBe(401);
    expect(none.body.error).toBe('unauthorized');
    const wrong = await call('GET', url, undefined, noCases);
    expect(wrong.status).toBe(403);
    expect(wrong.body).toMatchObject({ error: 'forbidden', scope: 'cases:read' });
    expect(wrong.body.issues).toBeUndefined();
  });

  it('a cases:read token reads; bad queries are 400 for it', async () => {
    expect((await call('GET', '/api/cases', undefined, casesOnly)).status).toBe(200);
    const bad = await call('GET', '/api/cases?status=bogus', undefined, casesOnly);
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('invalid_request');
    // A cursor this API did not sign is refused at once, not sent to Temporal.
    for (const c of ['bm90LWEtdG9rZW4', 'bm90LWEtdG9rZW4.AAAAAAAAAAAAAAAAAAAAAA']) {
      const t0 = Date.now();
      const cursor = await call('GET', `/api/cases?cursor=${c}`, undefined, casesOnly);
      expect(cursor.status).toBe(400);
      expect(cursor.body.error).toBe('invalid_request');
      expect(Date.now() - t0).toBeLessThan(1_000);
    }
  });
});

describe('a case opened by a REVIEW decision', () => {
  const session = `sess_a_${tag}`;
  const workflowId = `session-${session}`;
  let first: Awaited<ReturnType<typeof decide>>;
  let second: Awaited<ReturnType<typeof decide>>;

  it('is listed open and shows its decision, its playbook version and its steps', async () => {
    first = await decide(session);
    expect(first.decision).toBe('REVIEW');
    expect(first.workflow_id).toBe(workflowId);

    const c = await caseWhere(
      workflowId,
      (v) =>
        v.steps.some(
          (s: { step: string; status: string }) =>
            s.step === 'case.load_playbooks' && s.status === 'completed',
        ),
      'the case to load its playbooks',
    );
    expect(c).toMatchObject({
      workflow_id: workflowId,
      status: 'open',
      opened_by: first.id,
      playbooks: [{ name: 'review', version: 1 }],
      tickets: [],
    });
    expect(c.decisions).toEqual([
      expect.objectContaining({ decision_id: first.id, decision: 'REVIEW', context: 'checkout' }),
    ]);
    expect(c.decisions[0].playbooks).toEqual(['review']);
    const load = c.steps.find((s: { step: string }) => s.step === 'case.load_playbooks');
    expect(load).toMatchObject({ status: 'completed', attempts: 1 });
    expect(load.result.playbooks).toEqual(['review@1']);

    const open = await until(
      'visibility to list the case',
      async () => {
        const ids = await listIds('?status=open');
        return ids.includes(workflowId) ? ids : undefined;
      },
      30_000,
      200,
    );
    expect(open).toContain(workflowId);
    const row = (await call('GET', '/api/cases?status=open')).body.cases.find(
      (x: { workflow_id: string }) => x.workflow_id === workflowId,
    );
    expect(row).toMatchObject({ status: 'open', execution_status: 'running', closed_at: null });
    expect(row.run_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.parse(row.started_at)).not.toBeNaN();
    expect(await listIds('?status=resolved')).not.toContain(workflowId);
  });

  it('receives a lifecycle event of its decision as a signal (POST /api/events)', async () => {
    const r = await call('POST', '/api/events', {
      type: 'refund',
      decision_id: first.id,
      occurred_at: '2026-12-05T10:00:00Z',
      data: { amount: 1500 },
    });
    expect(r.status).toBe(201);
    expect(r.body.workflow_signalled).toBe(true);
    const c = await caseWhere(
      workflowId,
      (v) => Array.isArray(v.events) && v.events.length === 1,
      'the case to hold the refund',
    );
    expect(c.events[0]).toMatchObject({
      id: r.body.id,
      type: 'refund',
      decision_id: first.id,
      data: { amount: 1500 },
    });
  });

  it('takes the session’s later risky decisions; a new playbook version applies to later cases only', async () => {
    const v2 = await call('PUT', '/api/admin/playbooks/review', PLAYBOOK);
    expect(v2.body.version).toBe(2);
    second = await decide(session, 200000);
    expect(second.workflow_id).toBe(workflowId);
    const c = await caseWhere(
      workflowId,
      (v) => v.decisions.length === 2,
      'the second decision to join the case',
    );
    expect(c.decisions.map((d: { decision_id: string }) => d.decision_id)).toEqual([
      first.id,
      second.id,
    ]);
    expect(c.playbooks).toEqual([{ name: 'review', version: 1 }]);

    const other = `sess_b_${tag}`;
    await decide(other, 300000, '1111');
    const fresh = await caseWhere(
      `session-${other}`,
      (v) => v.playbooks.length === 1,
      'the other session’s case to load its playbooks',
    );
    expect(fresh.playbooks).toEqual([{ name: 'review', version: 2 }]);
  });

  it('resolving a decision resolves its case: status resolved, on_resolution steps ran', async () => {
    const r = await call('POST', `/api/decisions/${second.id}/resolve`, {
      resolution: 'reject',
      note: 'stolen card',
    });
    expect(r.status).toBe(200);
    const again = await call('POST', `/api/decisions/${first.id}/resolve`, {
      resolution: 'accept',
    });
    expect(again.status).toBe(409);

    const c = await caseWhere(
      workflowId,
      (v) =>
        v.status === 'resolved' &&
        v.steps.some(
          (s: { step: string; status: string }) =>
            s.step === 'review.on_resolution.reject[0].blacklist_add' && s.status === 'completed',
        ),
      'the case to resolve and run its reject steps',
    );
    expect(c.resolution).toMatchObject({
      resolution: 'reject',
      decision_id: second.id,
      note: 'stolen card',
      by: 'analyst',
    });
    const entries = (
      await call(
        'GET',
        `/api/admin/blacklist?field_path=${encodeURIComponent('$.credential_fingerprint')}`,
      )
    ).body.entries as { source_decision_id: string | null }[];
    // One entry per distinct value over the case's decisions: both used the same card.
    expect(
      entries.filter((e) => [first.id, second.id].includes(e.source_decision_id ?? '')),
    ).toHaveLength(1);

    const resolved = await until(
      'the resolved list to show the case',
      async () => {
        const ids = await listIds('?status=resolved');
        return ids.includes(workflowId) ? ids : undefined;
      },
      30_000,
      200,
    );
    expect(resolved).toContain(workflowId);
    expect(await listIds('?status=open')).not.toContain(workflowId);
    // The case writes its resolution onto every decision record it holds, not only the one
    // the analyst resolved.
    const record = await until(
      'the first decision record to carry the case resolution',
      async () => {
        const d = await call('GET', `/api/decisions/${first.id}`);
        return d.body.resolution ? d.body : undefined;
      },
      30_000,
      200,
    );
    expect(record.resolution.resolution).toBe('reject');
  });

  it('an unknown case is 404', async () => {
    const r = await call('GET', `/api/cases/session-never-${tag}`);
    expect(r.status).toBe(404);
    expect(r.body.error).toBe('not_found');
  });
});

describe('a resolution Temporal could not take at once', () => {
  it('kept in the outbox, reaches the case through the relay', async () => {
    const session = `sess_r_${tag}`;
    const d = await decide(session, 160000, '7777');
    const workflowId = `session-${session}`;
    await caseWhere(workflowId, (v) => v.status === 'open' && v.decisions.length === 1, 'the case');
    // What the API keeps when the update cannot reach the case (see the unreachable test).
    await rt.store.enqueue({
      kind: 'case_resolve',
      key: workflowId,
      payload: { workflow_id: workflowId, resolve: { decision_id: d.id, resolution: 'accept' } },
    });
    const c = await caseWhere(workflowId, (v) => v.status === 'resolved', 'the case to resolve');
    expect(c.resolution).toMatchObject({ resolution: 'accept', decision_id: d.id });
  });
});

describe('the list', () => {
  it('shows a case that continued as new once, and pages with a cursor', async () => {
    const workflowId = `session-can_${tag}`;
    for (let i = 0; i < 3; i++) {
      await handOffDecision(
        client,
        {
          decision_id: `dec_can_${tag}_${i}`,
          decision: 'REVIEW',
          context: 'login',
          ruleset_id: null,
          occurred_at: new Date().toISOString(),
          session: `can_${tag}`,
          context_data: {},
        },
        { caseInput: { limits: { decisions_per_run: 2 } } },
      );
    }
    const c = await caseWhere(
      workflowId,
      (v) => v.runs >= 2 && v.decisions.length === 3,
      'the case to continue as new with its three decisions',
    );
    expect(c.status).toBe('open');
    // Visibility holds two runs of this workflow id (one continued as new).
    const runs = await until(
      'visibility to record both runs',
      async () => {
        const n = await client.workflow.count(`WorkflowId = '${workflowId}'`);
        return n.count >= 2 ? n.count : undefined;
      },
      30_000,
      200,
    );
    expect(runs).toBeGreaterThanOrEqual(2);

    const all: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `?limit=1${cursor ? `&cursor=${cursor}` : ''}`;
      const page = await call('GET', `/api/cases${q}`);
      expect(page.status).toBe(200);
      expect(page.body.cases.length).toBeLessThanOrEqual(1);
      all.push(...page.body.cases.map((x: { workflow_id: string }) => x.workflow_id));
      cursor = page.body.next_cursor;
      pages++;
    } while (cursor && pages < 50);
    expect(all.filter((id) => id === workflowId)).toHaveLength(1);
    expect(new Set(all).size).toBe(all.length);
    expect(all).toEqual(expect.arrayContaining([workflowId, `session-sess_a_${tag}`]));
    expect((await listIds('?status=open')).filter((id) => id === workflowId)).toHaveLength(1);
  });
  it('lists a case no worker has reached yet (no status memo) as open', async () => {
    // Regression: on a busy worker most new cases had no memo yet and the open list hid them.
    const workflowId = `session-unpolled_${tag}`;
    await handOffDecision(
      client,
      {
        decision_id: `dec_unpolled_${tag}`,
        decision: 'REVIEW',
        context: 'checkout',
        ruleset_id: null,
        occurred_at: new Date().toISOString(),
        session: `unpolled_${tag}`,
        context_data: {},
      },
      { taskQueue: `nobody-polls-${tag}` },
    );
    try {
      const row = await until(
        'visibility to list the unpolled case',
        async () => {
          const r = await call('GET', '/api/cases?status=open&limit=100');
          return r.body.cases.find((c: { workflow_id: string }) => c.workflow_id === workflowId);
        },
        30_000,
        200,
      );
      expect(row).toMatchObject({ status: 'open', execution_status: 'running' });
    } finally {
      await client.workflow.getHandle(workflowId).terminate('test cleanup');
    }
  });
});

describe('Temporal unreachable', () => {
  it('answers 503 temporal_unavailable within seconds, and again on the next call', async () => {
    const deadDir = mkdtempSync(path.join(tmpdir(), 'vigil-cases-dead-'));
    const address = `127.0.0.1:${await closedPort()}`;
    const dead = await buildRuntime(
      loadConfig({ VIGIL_DATA_DIR: deadDir, VIGIL_ADMIN_TOKEN: ADMIN, TEMPORAL_ADDRESS: address }),
      { serveApi: true, temporalAddress: address },
    );
    try {
      for (const url of ['/api/cases', '/api/cases?status=open', `/api/cases/session-x`]) {
        const t0 = Date.now();
        const r = await call('GET', url, undefined, ADMIN, dead);
        expect(r.status).toBe(503);
        expect(r.body.error).toBe('temporal_unavailable');
        expect(Date.now() - t0).toBeLessThan(3_000);
      }
    } finally {
      await dead.close();
      rmSync(deadDir, { recursive: true, force: true });
    }
  });

  it('a resolve answers 200 once and keeps the resolution for the case in the outbox', async () => {
    const deadDir = mkdtempSync(path.join(tmpdir(), 'vigil-cases-dead-'));
    const address = `127.0.0.1:${await closedPort()}`;
    const dead = await buildRuntime(
      loadConfig({ VIGIL_DATA_DIR: deadDir, VIGIL_ADMIN_TOKEN: ADMIN, TEMPORAL_ADDRESS: address }),
      { serveApi: true, temporalAddress: address },
    );
    try {
      const created = await call('POST', '/api/admin/rulesets', RULESET, ADMIN, dead);
      await call('POST', `/api/admin/rulesets/${created.body.id}/activate`, undefined, ADMIN, dead);
      const d = await call('POST', '/api/decisions', decision(`sess_dead_${tag}`), ADMIN, dead);
      expect(d.body.decision).toBe('REVIEW');
      const r = await call(
        'POST',
        `/api/decisions/${d.body.id}/resolve`,
        { resolution: 'reject' },
        ADMIN,
        dead,
      );
      expect(r.status).toBe(200);
      const again = await call(
        'POST',
        `/api/decisions/${d.body.id}/resolve`,
        { resolution: 'accept' },
        ADMIN,
        dead,
      );
      expect(again.status).toBe(409);
      const items = (await dead.store.claim(100, 1)).filter((i) => i.kind === 'case_resolve');
      expect(items).toHaveLength(1);
      expect(items[0]).toMatchObject({
        key: d.body.workflow_id,
        payload: { resolve: { decision_id: d.body.id, resolution: 'reject' } },
      });
    } finally {
      await dead.close();
      rmSync(deadDir, { recursive: true, force: true });
    }
  });

  it('without TEMPORAL_ADDRESS the cases API is 503 too', async () => {
    const bareDir = mkdtempSync(path.join(tmpdir(), 'vigil-cases-bare-'));
    const bare = await buildRuntime(
      loadConfig({ VIGIL_DATA_DIR: bareDir, VIGIL_ADMIN_TOKEN: ADMIN }),
      {
        serveApi: true,
      },
    );
    try {
      const r = await call('GET', '/api/cases', undefined, ADMIN, bare);
      expect(r.status).toBe(503);
      expect(r.body.error).toBe('temporal_unavailable');
    } finally {
      await bare.close();
      rmSync(bareDir, { recursive: true, force: true });
    }
  });
});
