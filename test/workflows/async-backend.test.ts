// Async backend rules (CONTRACT §1, semantic 10): a PROVISIONAL decision's pending backend is
// called by the asyncBackendRule child of the case; its final outcome is stored on the decision
// and, when REVIEW/BLOCK, reaches the playbooks like a synchronous one.
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { handOffDecision } from '../../activities/relay.ts';
import { caseQuery, caseWorkflowId, type CaseResult } from '../../workflows/contracts.ts';
import { httpDeps } from './helpers/deps.ts';
import { review, reviewPlaybook, session } from './helpers/fixtures.ts';
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
  await sharedBundle();
});

afterAll(async () => {
  await tp?.close();
  await t?.close();
});

it('a backend answering REVIEW after 2 s: final outcome stored, playbook runs', async () => {
  const taskQueue = uniqueQueue('async');
  const s = session();
  const integration = `acme-${s}`;
  tp.configure(`backends/${integration}/score`, { answer: { verdict: 'review' }, delayMs: 2_000 });
  const ticket = `actions/jira-${s}/create-issue`;
  const { deps, recorded } = httpDeps(tp.url, [
    reviewPlaybook({
      steps: [
        { ticket: { integration: `jira-${s}`, action_id: 'create-issue' } },
        { wait_for_resolution: { timeout: '1h', on_timeout: 'escalate' } },
      ],
      after_decision: [],
    }),
  ]);
  const w = await startWorker(t, taskQueue, deps);
  try {
    const d = {
      ...review(s, { decision: 'PROVISIONAL' }),
      pending: [
        { rule_id: 'risk-async', integration, backend_id: 'score', on_error: 'allow' as const },
      ],
    };
    const t0 = Date.now();
    await handOffDecision(t.client, d, { taskQueue });
    const handle = t.client.workflow.getHandle(caseWorkflowId(s, d.decision_id));
    const c = await caseWhere(
      handle,
      'the ticket of the final REVIEW',
      (c) => c.tickets.length === 1,
    );
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(2_000);
    expect(recorded.finals).toEqual([
      {
        decision_id: d.decision_id,
        outcome: 'REVIEW',
        detail: {
          backend_results: [
            {
              rule_id: 'risk-async',
              integration,
              backend_id: 'score',
              status: 'ok',
              outcome: 'REVIEW',
              response: { verdict: 'review' },
            },
          ],
          pending: d.pending,
        },
      },
    ]);
    expect(c.decisions).toEqual([
      expect.objectContaining({
        decision_id: d.decision_id,
        decision: 'REVIEW',
        final: true,
        playbooks: ['review-default'],
      }),
    ]);
    expect(c.steps.find((x) => x.step === `async_backend@${d.decision_id}`)).toMatchObject({
      status: 'completed',
      result: { final_decision: 'REVIEW' },
    });
    expect(tp.creates(ticket)).toBe(1);
    expect(recorded.events.find((e) => e.step === `async_backend@${d.decision_id}`)).toMatchObject({
      final_decision: 'REVIEW',
      decision_id: d.decision_id,
      status: 'completed',
    });
    console.log(`[async] final outcome stored and ticket opened ${elapsed} ms after the handoff`);

    await handle.executeUpdate('resolve', { args: [{ resolution: 'accept' }] });
    expect(((await handle.result()) as CaseResult).status).toBe('resolved');
    await recordHistory(handle, 'async-backend-review');
    await recordHistory(
      t.client.workflow.getHandle(`async-${d.decision_id}`),
      'async-backend-child',
    );
  } finally {
    await w.stop();
  }
});

it('a backend answering ALLOW: final ALLOW stored, no playbook, the case closes', async () => {
  const taskQueue = uniqueQueue('async-allow');
  const s = session();
  const integration = `acme-${s}`;
  tp.configure(`backends/${integration}/score`, { answer: { verdict: 'approve' } });
  const { deps, recorded } = httpDeps(tp.url, [reviewPlaybook()]);
  const w = await startWorker(t, taskQueue, deps);
  try {
    const d = {
      ...review(s, { decision: 'PROVISIONAL' }),
      pending: [{ rule_id: 'risk-async', integration, backend_id: 'score' }],
    };
    await handOffDecision(t.client, d, { taskQueue, caseInput: { close_after: '500ms' } });
    const handle = t.client.workflow.getHandle(caseWorkflowId(s, d.decision_id));
    const result = (await handle.result()) as CaseResult;
    expect(result.status).toBe('closed');
    expect(recorded.finals.map((f) => f.outcome)).toEqual(['ALLOW']);
    const c = await handle.query(caseQuery);
    expect(c.decisions[0]).toMatchObject({ decision: 'ALLOW', final: true, playbooks: [] });
    expect(c.tickets).toHaveLength(0);
  } finally {
    await w.stop();
  }
});

it('the adapter’s settled outcome wins over the workflow’s merge', async () => {
  const taskQueue = uniqueQueue('async-settle');
  const s = session();
  const integration = `acme-${s}`;
  tp.configure(`backends/${integration}/score`, { answer: { verdict: 'review' } });
  const route = `actions/jira-${s}/create-issue`;
  // As rulesets' settlePending would, given an ALLOW rule before the async one in the ruleset.
  const { deps, recorded } = httpDeps(
    tp.url,
    [
      reviewPlaybook({
        steps: [{ ticket: { integration: `jira-${s}`, action_id: 'create-issue' } }],
        after_decision: [],
      }),
    ],
    { settle: () => 'ALLOW' },
  );
  const w = await startWorker(t, taskQueue, deps);
  try {
    const d = {
      ...review(s, { decision: 'PROVISIONAL' }),
      pending: [
        { rule_id: 'risk-async', integration, backend_id: 'score', on_error: 'review' as const },
        {
          rule_id: 'shadow',
          integration,
          backend_id: 'score',
          on_error: 'block' as const,
          shadow: true as const,
        },
      ],
    };
    await handOffDecision(t.client, d, { taskQueue, caseInput: { close_after: '500ms' } });
    const handle = t.client.workflow.getHandle(caseWorkflowId(s, d.decision_id));
    expect(((await handle.result()) as CaseResult).status).toBe('closed');
    expect(recorded.finals.map((f) => f.outcome)).toEqual(['ALLOW']);
    expect(tp.creates(route)).toBe(0);
    const c = await handle.query(caseQuery);
    expect(c.decisions[0]).toMatchObject({ decision: 'ALLOW', final: true });
    expect(c.steps.find((x) => x.step.startsWith('async_backend@'))).toMatchObject({
      result: {
        final_decision: 'ALLOW',
        rules: [
          { rule_id: 'risk-async', status: 'ok', action: 'REVIEW' },
          { rule_id: 'shadow', status: 'ok', shadow: true },
        ],
      },
    });
  } finally {
    await w.stop();
  }
});
