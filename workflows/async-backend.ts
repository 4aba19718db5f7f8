// Async backend rules (CONTRACT §1, semantic 10): the engine answered PROVISIONAL without
// waiting; this workflow calls each pending backend with retries, settles and stores the final
// outcome on the decision, publishes it, and returns it to the case, which hands a REVIEW/BLOCK
// to the playbooks exactly as a synchronous one. It runs as a child of the session case (id
// `async-{decision_id}`), so the case never closes while one of its decisions is undecided.
import {
  ActivityFailure,
  ApplicationFailure,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
} from '@temporalio/workflow';
import type { FailureDetail, VigilActivities } from '../activities/index.ts';
import type { Outcome } from '../rulesets/playbook-core.ts';
import type {
  AsyncBackendInput,
  AsyncBackendResult,
  AsyncRuleOutcome,
  PendingBackendRule,
} from './contracts.ts';

/** A backend is retried for about ten minutes before its rule's on_error decides. */
const BACKEND_RETRY = {
  initialInterval: '1s',
  backoffCoefficient: 2,
  maximumInterval: '2m',
  maximumAttempts: 10,
} as const;

const SEVERITY: Record<Outcome, number> = { ALLOW: 0, REVIEW: 1, BLOCK: 2 };
const ON_ERROR: Record<'allow' | 'block' | 'review', Outcome | null> = {
  allow: null,
  block: 'BLOCK',
  review: 'REVIEW',
};

export function mostSevere(outcomes: (Outcome | null)[]): Outcome {
  return outcomes.reduce<Outcome>(
    (a, b) => (b !== null && SEVERITY[b] > SEVERITY[a] ? b : a),
    'ALLOW',
  );
}

export async function asyncBackendRule(input: AsyncBackendInput): Promise<AsyncBackendResult> {
  const acts = proxyActivities<VigilActivities>({
    startToCloseTimeout: '1m',
    heartbeatTimeout: '20s',
    retry: BACKEND_RETRY,
  });
  const store = proxyActivities<VigilActivities>({
    startToCloseTimeout: '1m',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
  });
  const local = proxyLocalActivities<VigilActivities>({
    startToCloseTimeout: '10s',
    retry: { maximumAttempts: 3 },
  });

  async function call(rule: PendingBackendRule): Promise<AsyncRuleOutcome> {
    const base = {
      rule_id: rule.rule_id,
      integration: rule.integration,
      backend_id: rule.backend_id,
      ...(rule.shadow ? { shadow: true as const } : {}),
    };
    try {
      const res = await acts.callBackend({
        rule_id: rule.rule_id,
        integration: rule.integration,
        backend_id: rule.backend_id,
        context: input.context_data,
      });
      return {
        ...base,
        status: 'ok',
        outcome: res.outcome,
        action: res.outcome,
        response: res.response,
        attempts: res.attempt,
      };
    } catch (err) {
      if (!(err instanceof ActivityFailure)) throw err;
      const cause = err.cause instanceof ApplicationFailure ? err.cause : undefined;
      const detail = cause?.details?.[0] as FailureDetail | undefined;
      const attempts = detail?.attempt ?? BACKEND_RETRY.maximumAttempts;
      if (cause?.type === 'insufficient_context') {
        // No request was made; like a synchronous rule, on_error does not apply.
        return { ...base, status: 'insufficient_context', outcome: null, action: null, attempts };
      }
      return {
        ...base,
        status: 'error',
        outcome: null,
        action: ON_ERROR[rule.on_error ?? 'allow'],
        error: cause?.type ?? 'timeout',
        attempts,
      };
    }
  }

  const rules = await Promise.all(input.rules.map(call));
  const proposed = mostSevere([
    input.sync_decision,
    ...rules.filter((r) => !r.shadow).map((r) => r.action),
  ]);
  const stored = await store.setFinalOutcome({
    decision_id: input.decision_id,
    outcome: proposed,
    detail: {
      backend_results: rules.map(({ action: _a, attempts: _n, ...r }) => r),
      pending: input.rules,
    },
  });
  const final = stored.outcome;
  // The outcome is stored; losing its event (the sink counts drops) must not undo that.
  await local
    .emit({
      workflow_id: input.case_workflow_id,
      step: `async_backend@${input.decision_id}`,
      status: rules.every((r) => r.status !== 'error') ? 'completed' : 'failed',
      attempts: Math.max(1, ...rules.map((r) => r.attempts)),
      decision_id: input.decision_id,
      final_decision: final,
      occurred_at: new Date().toISOString(),
    })
    .catch((err: unknown) => {
      if (isCancellation(err)) throw err;
    });
  return { decision_id: input.decision_id, final_decision: final, rules };
}
