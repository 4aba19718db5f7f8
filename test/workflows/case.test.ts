// The session case workflow against the real Temporal dev server, with its third parties on a
// local HTTP server. Each test runs its own worker on its own task queue.
import { ApplicationFailure, WorkflowUpdateFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { handOffDecision } from '../../activities/relay.ts';
import {
  caseQuery,
  caseWorkflowId,
  resolveUpdate,
  type CaseResult,
} from '../../workflows/contracts.ts';
import { httpDeps } from './helpers/deps.ts';
import { FAST_RETRY, review, reviewPlaybook, session } from './helpers/fixtures.ts';
import {
  caseWhere,
  connect,
  sharedBundle,
  startWorker,
  uniqueQueue,
  type Temporal,
} from './helpers/temporal.ts';
import { recordHistory } from '../replay/histories.ts';
import { startThirdParty, type ThirdParty } from './helpers/third-party.ts';

const services = inject('services');
let t: Temporal;
let tp: ThirdParty;

beforeAll(async () => {
  [t, tp] = await Promise.all([connect(services.temporalAddress), startThirdParty()]);
  tp.configure('backends/ipcheck/ip', { answer: { verdict: 'approve', score: 12 } });
  await sharedBundle();
});

afterAll(async () => {
  await tp?.close();
  await t?.close();
});

describe('session case', () => {
  it('three REVIEWs of one session: one case, one ticket despite two 500s, three decisions', async () => {
    const taskQueue = uniqueQueue('case-three');
    const s = session();
    const jira = `actions/jira-${s}/create-issue`;
    const pb = reviewPlaybook();
    const doc = pb.document as Record<string, unknown>;
    (doc.steps as Record<string, { integration: string }>[])[1] = {
      ticket: { integration: `jira-${s}`, action_id: 'create-issue' },
    } as never;
    tp.configure(jira, { failFirst: { count: 2, status: 500 } });
    const { deps, recorded } = httpDeps(tp.url, [pb]);
    const w = await startWorker(t, taskQueue, deps);
    try {
      const d1 = review(s, { card: 'crd_a' });
      const d2 = review(s, { card: 'crd_b' });
      const d3 = review(s, { card: 'crd_a', amount: 600000 });
      const workflowId = caseWorkflowId(s, d1.decision_id);
      for (const d of [d1, d2, d2, d3]) await handOffDecision(t.client, d, { taskQueue });
      const handle = t.client.workflow.getHandle(workflowId);

      const c = await caseWhere(
        handle,
        'ticket, alert and three notifications',
        (c) =>
          c.decisions.length === 3 &&
          c.steps.filter((s) => s.step.includes('after_decision') && s.status === 'completed')
            .length === 3 &&
          c.steps.some((s) => s.step.endsWith('.alert') && s.status !== 'running'),
      );
      expect(c.workflow_id).toBe(`session-${s}`);
      expect(c.status).toBe('open');
      expect(c.opened_by).toBe(d1.decision_id);
      expect(c.decisions.map((d) => d.decision_id)).toEqual([
        d1.decision_id,
        d2.decision_id,
        d3.decision_id,
      ]);
      expect(c.playbooks).toEqual([{ name: 'review-default', version: 3 }]);

      // The ticket API failed twice: three requests, one key, one ticket.
      const creates = tp.callsTo(jira);
      expect(creates.map((x) => x.status)).toEqual([500, 500, 201]);
      expect(new Set(creates.map((x) => x.idempotencyKey)).size).toBe(1);
      expect(creates[0]!.idempotencyKey).toBe(
        `${workflowId}:${d1.decision_id}:review-default.steps[1].ticket`,
      );
      expect(tp.creates(jira)).toBe(1);
      expect(c.tickets).toHaveLength(1);
      expect(c.tickets[0]).toMatchObject({ integration: `jira-${s}`, status: 201 });
      const ticketStep = c.steps.find((x) => x.step === 'review-default.steps[1].ticket')!;
      expect(ticketStep).toMatchObject({ status: 'completed', attempts: 3 });

      // Enrichment ran once; the alert's condition read the opening decision (14999 < 500000).
      expect(c.steps.find((x) => x.step.endsWith('.enrich'))).toMatchObject({
        status: 'completed',
        result: { outcome: 'ALLOW' },
      });
      expect(c.steps.find((x) => x.step.endsWith('.alert'))).toMatchObject({
        status: 'skipped',
        result: { condition: false },
      });
      expect(tp.callsTo('actions/slack/post')).toHaveLength(0);

      // after_decision: once per decision, each with its own key.
      const notify = tp
        .callsTo('actions/merchant-hook/notify')
        .filter((x) => x.idempotencyKey?.startsWith(workflowId));
      expect(notify).toHaveLength(3);
      expect(new Set(notify.map((x) => x.idempotencyKey)).size).toBe(3);

      // Resolve reject: blacklist the case's cards, cancel the order, resolve every record.
      const res = await handle.executeUpdate(resolveUpdate, {
        args: [{ decision_id: d2.decision_id, resolution: 'reject', note: 'card testing' }],
      });
      expect(res).toEqual({ workflow_id: workflowId, status: 'resolved' });

      const again = await handle
        .executeUpdate(resolveUpdate, { args: [{ resolution: 'accept' }] })
        .catch((e: unknown) => e);
      expect(again).toBeInstanceOf(WorkflowUpdateFailedError);
      const cause = (again as WorkflowUpdateFailedError).cause;
      expect(cause).toBeInstanceOf(ApplicationFailure);
      expect((cause as ApplicationFailure).type).toBe('already_resolved');

      const result = (await handle.result()) as CaseResult;
      expect(result).toMatchObject({ workflow_id: workflowId, status: 'resolved', decisions: 3 });
      expect(result.resolution).toMatchObject({
        resolution: 'reject',
        decision_id: d2.decision_id,
        note: 'card testing',
        by: 'analyst',
      });
      expect(recorded.blacklist.map((b) => [b.field_path, b.value, b.ttl_seconds])).toEqual([
        ['$.credential_fingerprint', 'crd_a', 15552000],
        ['$.credential_fingerprint', 'crd_b', 15552000],
      ]);
      expect(recorded.blacklist[0]!.source_decision_id).toBe(d1.decision_id);
      const cancel = tp.callsTo('actions/merchant/cancel-order');
      expect(cancel.filter((x) => x.idempotencyKey?.startsWith(workflowId))).toHaveLength(1);
      expect(
        (cancel.at(-1)!.body as { context: { decision: { id: string } } }).context.decision.id,
      ).toBe(d2.decision_id);
      expect(recorded.resolutions.map((r) => r.decision_id).sort()).toEqual(
        [d1.decision_id, d2.decision_id, d3.decision_id].sort(),
      );
      const final = await handle.query(caseQuery);
      expect(final.status).toBe('resolved');
      expect(recorded.events.some((e) => e.step === 'case' && e.status === 'resolved')).toBe(true);
      expect(
        recorded.events.find((e) => e.step === 'review-default.steps[1].ticket'),
      ).toMatchObject({
        status: 'completed',
        attempts: 3,
        integration: `jira-${s}`,
        action_id: 'create-issue',
      });
      // Playbooks are read by a local activity inside the first workflow task: the server
      // schedules no activity task for them.
      const scheduled = ((await handle.fetchHistory()).events ?? []).map(
        (e) => e.activityTaskScheduledEventAttributes?.activityType?.name,
      );
      expect(scheduled).toContain('ticket');
      expect(scheduled).not.toContain('loadPlaybooks');
      await recordHistory(handle, 'three-reviews-one-ticket');
    } finally {
      await w.stop();
    }
  });

  it('escalates when nobody resolves within the timeout, then resolves on accept', async () => {
    const taskQueue = uniqueQueue('case-escalate');
    const pb = reviewPlaybook({
      steps: [
        { ticket: { integration: 'jira', action_id: 'create-issue' } },
        { wait_for_resolution: { timeout: '2s', on_timeout: 'escalate' } },
      ],
      after_decision: [],
    });
    const { deps, recorded } = httpDeps(tp.url, [pb]);
    const w = await startWorker(t, taskQueue, deps);
    try {
      const d = review(null);
      const t0 = Date.now();
      await handOffDecision(t.client, d, { taskQueue });
      const handle = t.client.workflow.getHandle(`decision-${d.decision_id}`);
      const c = await caseWhere(handle, 'escalation', (c) => c.status === 'escalated');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
      expect(c.steps.find((s) => s.step.endsWith('.escalate'))).toMatchObject({
        step: 'review-default.steps[1].wait_for_resolution.escalate',
        status: 'completed',
        result: { on_timeout: 'escalate', timeout: '2s' },
      });
      expect(recorded.events.some((e) => e.status === 'escalated')).toBe(true);
      // Escalated cases keep waiting for a person.
      await new Promise((r) => setTimeout(r, 500));
      expect((await handle.describe()).status.name).toBe('RUNNING');
      await handle.executeUpdate(resolveUpdate, { args: [{ resolution: 'accept' }] });
      const result = (await handle.result()) as CaseResult;
      expect(result.status).toBe('resolved');
      expect(
        tp
          .callsTo('actions/merchant/release-order')
          .filter((x) => x.idempotencyKey?.startsWith(`decision-${d.decision_id}`)),
      ).toHaveLength(1);
      await recordHistory(handle, 'escalated-then-accepted');
    } finally {
      await w.stop();
    }
  });

  it('on_timeout reject resolves the case by itself', async () => {
    const taskQueue = uniqueQueue('case-timeout-reject');
    const pb = reviewPlaybook({
      steps: [{ wait_for_resolution: { timeout: '1s', on_timeout: 'reject' } }],
      after_decision: [],
    });
    const { deps, recorded } = httpDeps(tp.url, [pb]);
    const w = await startWorker(t, taskQueue, deps);
    try {
      const d = review(session(), { card: 'crd_timeout' });
      await handOffDecision(t.client, d, { taskQueue });
      const handle = t.client.workflow.getHandle(caseWorkflowId(d.session, d.decision_id));
      const result = (await handle.result()) as CaseResult;
      expect(result.status).toBe('resolved');
      expect(result.resolution).toMatchObject({ resolution: 'reject', by: 'timeout' });
      expect(recorded.blacklist.map((b) => b.value)).toEqual(['crd_timeout']);
      expect(recorded.resolutions).toEqual([
        { decision_id: d.decision_id, resolution: 'reject', note: 'no resolution within 1s' },
      ]);
    } finally {
      await w.stop();
    }
  });

  it('a closed case’s session opens a new case (same id, new run, its own ticket)', async () => {
    const taskQueue = uniqueQueue('case-reopen');
    const s = session();
    const route = `actions/jira-${s}/create-issue`;
    tp.configure(route, { honourIdempotency: true });
    const pb = reviewPlaybook({
      steps: [
        { ticket: { integration: `jira-${s}`, action_id: 'create-issue' } },
        { workflow: 'holdHighValue' },
        { workflow: 'noSuchWorkflow' },
      ],
      after_decision: [],
    });
    const { deps } = httpDeps(tp.url, [pb]);
    const w = await startWorker(t, taskQueue, deps);
    try {
      const caseInput = { close_after: '1s' };
      const d1 = review(s, { amount: 150000 });
      const firstRun = await handOffDecision(t.client, d1, { taskQueue, caseInput });
      const workflowId = `session-${s}`;
      const first = t.client.workflow.getHandle(workflowId, firstRun);
      const r1 = (await first.result()) as CaseResult;
      expect(r1).toMatchObject({ status: 'closed', decisions: 1, resolution: null });
      const c1 = await first.query(caseQuery);
      expect(c1.status).toBe('closed');
      // The user workflow ran as a child and held the order; an unknown name failed its step.
      expect(
        c1.steps.find((x) => x.step.endsWith('.workflow') && x.step.includes('[1]')),
      ).toMatchObject({
        status: 'completed',
        result: { held: true, ref: expect.any(String) },
      });
      expect(c1.steps.find((x) => x.step.includes('steps[2]'))).toMatchObject({
        status: 'failed',
        error: { type: 'unknown_workflow' },
      });
      const hold = tp
        .callsTo('actions/merchant/hold-order')
        .filter((x) => x.idempotencyKey?.startsWith(workflowId));
      expect(hold).toHaveLength(1);
      expect(hold[0]!.idempotencyKey).toBe(
        `${workflowId}:${d1.decision_id}:review-default.steps[1].workflow:hold-order`,
      );

      const d2 = review(s);
      const secondRun = await handOffDecision(t.client, d2, { taskQueue, caseInput });
      expect(secondRun).not.toBe(firstRun);
      const second = t.client.workflow.getHandle(workflowId, secondRun);
      const r2 = (await second.result()) as CaseResult;
      expect(r2.status).toBe('closed');
      const c2 = await second.query(caseQuery);
      expect(c2.opened_by).toBe(d2.decision_id);
      // Two cases, two tickets: the second case's key carries its own opening decision, so the
      // tracker (which honours the key) does not hand back the first ticket.
      expect(tp.creates(route)).toBe(2);
      expect(new Set(tp.callsTo(route).map((x) => x.idempotencyKey)).size).toBe(2);
      await recordHistory(first, 'closed-after-quiet-period');
    } finally {
      await w.stop();
    }
  });

  it('continues as new past its per-run bound and keeps decisions, ticket and wait deadline', async () => {
    const taskQueue = uniqueQueue('case-can');
    const s = session();
    const route = `actions/jira-${s}/create-issue`;
    const pb = reviewPlaybook({
      steps: [
        { ticket: { integration: `jira-${s}`, action_id: 'create-issue' } },
        { wait_for_resolution: { timeout: '4s', on_timeout: 'escalate' } },
      ],
      after_decision: [],
      retry: FAST_RETRY,
    });
    const { deps } = httpDeps(tp.url, [pb]);
    const w = await startWorker(t, taskQueue, deps);
    try {
      const caseInput = { limits: { decisions_per_run: 2 } };
      const decisions = Array.from({ length: 5 }, () => review(s));
      const handle = t.client.workflow.getHandle(`session-${s}`);
      const send = async (i: number) => {
        const runId = await handOffDecision(t.client, decisions[i]!, { taskQueue, caseInput });
        await caseWhere(handle, `decision ${i + 1}`, (c) => c.decisions.length === i + 1);
        return runId;
      };
      const t0 = Date.now();
      const firstRunId = await send(0);
      await send(1);
      // The second continue-as-new lands well after the wait began: the 4 s deadline must
      // still count from the first run, not restart in each new one.
      await new Promise((r) => setTimeout(r, 2_500));
      await send(2);
      await send(3);
      const c = await caseWhere(handle, 'two more runs', (c) => c.runs >= 3);
      expect(c.decisions).toHaveLength(4);
      expect(c.tickets).toHaveLength(1);
      expect(tp.creates(route)).toBe(1);
      await caseWhere(handle, 'escalation', (c) => c.status === 'escalated');
      const escalatedAfter = Date.now() - t0;
      expect(escalatedAfter).toBeGreaterThanOrEqual(4_000);
      expect(escalatedAfter).toBeLessThan(6_500);
      const first = t.client.workflow.getHandle(`session-${s}`, firstRunId);
      expect((await first.describe()).status.name).toBe('CONTINUED_AS_NEW');
      await send(4);
      await handle.executeUpdate(resolveUpdate, {
        args: [{ decision_id: decisions[4]!.decision_id, resolution: 'accept' }],
      });
      const result = (await handle.result()) as CaseResult;
      expect(result).toMatchObject({ status: 'resolved', decisions: 5 });
      const steps = (await handle.query(caseQuery)).steps.map((x) => x.step);
      expect(steps.filter((x) => x.endsWith('.ticket'))).toHaveLength(1);
      expect(steps.filter((x) => x.endsWith('.escalate'))).toHaveLength(1);
      await recordHistory(first, 'continued-as-new-first-run');
      await recordHistory(handle, 'continued-as-new-then-accepted');
    } finally {
      await w.stop();
    }
  });

  it('records lifecycle events and refuses resolving a decision of another case', async () => {
    const taskQueue = uniqueQueue('case-events');
    const { deps } = httpDeps(tp.url, [
      reviewPlaybook({
        steps: [{ wait_for_resolution: { timeout: '1h', on_timeout: 'escalate' } }],
        after_decision: [],
      }),
    ]);
    const w = await startWorker(t, taskQueue, deps);
    try {
      const d = review(session());
      await handOffDecision(t.client, d, { taskQueue });
      const handle = t.client.workflow.getHandle(caseWorkflowId(d.session, d.decision_id));
      await handle.signal('lifecycle_event', {
        id: 'evt_1',
        type: 'chargeback',
        decision_id: d.decision_id,
        occurred_at: new Date().toISOString(),
        data: { amount: 14999 },
      });
      const c = await caseWhere(handle, 'the event', (c) => c.events.length === 1);
      expect(c.events[0]).toMatchObject({ id: 'evt_1', type: 'chargeback' });
      const wrong = await handle
        .executeUpdate(resolveUpdate, {
          args: [{ decision_id: 'dec_other', resolution: 'reject' }],
        })
        .catch((e: unknown) => e);
      expect(((wrong as WorkflowUpdateFailedError).cause as ApplicationFailure).type).toBe(
        'unknown_decision',
      );
      await handle.executeUpdate(resolveUpdate, { args: [{ resolution: 'accept' }] });
      expect(((await handle.result()) as CaseResult).status).toBe('resolved');
    } finally {
      await w.stop();
    }
  });
});
