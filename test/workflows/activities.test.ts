// The activities over their dependencies, in Temporal's activity context (the SDK's
// MockActivityEnvironment: no server needed to check how adapter errors become failures).
import { ApplicationFailure } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import type { ActionError, ActivityDeps } from '../../activities/deps.ts';
import {
  createActivities,
  type ActionStepInput,
  type LoadPlaybooksResult,
} from '../../activities/index.ts';

function deps(over: Partial<ActivityDeps>): ActivityDeps {
  const none = () => Promise.reject(new Error('not in this test'));
  return {
    invokeAction: none,
    callBackend: none,
    blacklistAdd: none,
    loadPlaybooks: none,
    emitAction: () => undefined,
    setFinalOutcome: none,
    resolveDecisionRecord: none,
    ...over,
  };
}

const STEP: ActionStepInput = {
  step: 'review-default.steps[1].ticket',
  integration: 'jira',
  action_id: 'create-issue',
  context: { transaction: { amount: 1 } },
  idempotency_key: 'session-s:dec_1:review-default.steps[1].ticket',
};

function actionError(fields: Partial<ActionError>): ActionError {
  return Object.assign(new Error(fields.message ?? 'failed'), fields) as ActionError;
}

async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

describe('activities', () => {
  it('passes the idempotency key and returns the ref with the attempt', async () => {
    let seen: unknown;
    const acts = createActivities(
      deps({
        invokeAction: (req) => {
          seen = req;
          return Promise.resolve({ status: 201, ref: 'VIG-1' });
        },
      }),
    );
    const env = new MockActivityEnvironment({ attempt: 3 });
    expect(await env.run(acts.ticket, STEP)).toEqual({ attempt: 3, status: 201, ref: 'VIG-1' });
    expect(seen).toMatchObject({ idempotencyKey: STEP.idempotency_key, integration: 'jira' });
  });

  it('a non-retryable adapter error becomes a non-retryable failure with its code', async () => {
    const acts = createActivities(
      deps({
        invokeAction: () =>
          Promise.reject(actionError({ retryable: false, code: 'egress_refused', message: 'no' })),
      }),
    );
    const f = await failureOf(new MockActivityEnvironment({ attempt: 1 }).run(acts.action, STEP));
    expect(f).toMatchObject({
      nonRetryable: true,
      type: 'egress_refused',
      details: [{ attempt: 1 }],
    });
  });

  it('Retry-After becomes nextRetryDelay', async () => {
    const acts = createActivities(
      deps({
        invokeAction: () =>
          Promise.reject(actionError({ retryable: true, retryAfterMs: 7000, status: 429 })),
      }),
    );
    const f = await failureOf(new MockActivityEnvironment({ attempt: 2 }).run(acts.alert, STEP));
    expect(f).toMatchObject({ nonRetryable: false, type: 'rate_limited', nextRetryDelay: 7000 });
  });

  it('an error that says nothing is retried; a returned 404 is not', async () => {
    const plain = createActivities(
      deps({ invokeAction: () => Promise.reject(new Error('ECONNRESET')) }),
    );
    const f1 = await failureOf(new MockActivityEnvironment().run(plain.ticket, STEP));
    expect(f1).toMatchObject({ nonRetryable: false, type: 'action_failed' });
    const notFound = createActivities(
      deps({ invokeAction: () => Promise.resolve({ status: 404 }) }),
    );
    const f2 = await failureOf(new MockActivityEnvironment().run(notFound.ticket, STEP));
    expect(f2).toMatchObject({ nonRetryable: true, type: 'http_status' });
  });

  it('heartbeats while a call is slow and aborts it on cancellation', async () => {
    let aborted = false;
    const acts = createActivities(
      deps({
        invokeAction: (req) =>
          new Promise((resolve, reject) => {
            const t = setTimeout(() => resolve({ status: 200 }), 5_000);
            req.signal?.addEventListener('abort', () => {
              aborted = true;
              clearTimeout(t);
              reject(new Error('aborted'));
            });
          }),
      }),
    );
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 600 });
    let beats = 0;
    env.on('heartbeat', () => {
      beats += 1;
    });
    const run = env.run(acts.ticket, STEP).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 700));
    env.cancel();
    await run;
    expect(beats).toBeGreaterThanOrEqual(3);
    expect(aborted).toBe(true);
  });

  it('enrich: insufficient context is final, a backend error is retried', async () => {
    const missing = createActivities(
      deps({
        callBackend: () =>
          Promise.resolve({ status: 'insufficient_context', missing: ['$.customer.email'] }),
      }),
    );
    const input = { step: 's', integration: 'ipcheck', backend_id: 'ip', context: {} };
    const f1 = await failureOf(new MockActivityEnvironment().run(missing.enrich, input));
    expect(f1).toMatchObject({ nonRetryable: true, type: 'insufficient_context' });
    const down = createActivities(
      deps({ callBackend: () => Promise.resolve({ status: 'error', error: 'timeout' }) }),
    );
    const f2 = await failureOf(new MockActivityEnvironment().run(down.enrich, input));
    expect(f2).toMatchObject({ nonRetryable: false, type: 'backend_error', message: 'timeout' });
  });

  it('loadPlaybooks keeps the valid documents and names the others', async () => {
    const acts = createActivities(
      deps({
        loadPlaybooks: () =>
          Promise.resolve([
            {
              name: 'b',
              version: 2,
              document: { name: 'b', on: { decision: ['BLOCK'] }, steps: [] },
            },
            { name: 'broken', version: 1, document: { name: 'broken', steps: 'no' } },
            {
              name: 'a',
              version: 7,
              document: { name: 'a', on: { decision: ['REVIEW'] }, steps: [] },
            },
          ]),
      }),
    );
    const r = await new MockActivityEnvironment().run<
      [],
      LoadPlaybooksResult,
      typeof acts.loadPlaybooks
    >(acts.loadPlaybooks);
    expect(r.playbooks.map((p) => `${p.name}@${p.version}`)).toEqual(['a@7', 'b@2']);
    expect(r.skipped).toEqual([{ name: 'broken', version: 1, issues: 2 }]);
  });
});
