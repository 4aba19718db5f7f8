// The final outcome of a decision whose `async: true` rules answered later (CONTRACT §1
// semantic 10), computed from the stored decision as the engine would have: each answer at its
// rule's place in the order (rulesets/evaluate.ts settlePending), so a synchronous REVIEW
// still counts when the async rule has no verdict, and a terminal ALLOW before it ends
// evaluation. The settled traces replace the pending ones on the record.
import { settlePending, type EvalResult } from '../rulesets/evaluate.ts';
import type { BackendCallResult, DecisionOutcome, PendingBackend } from '../rulesets/ports.ts';
import type { AsyncRuleOutcome, PendingBackendRule } from '../workflows/contracts.ts';
import type { DecisionResponse } from './ports.ts';

/** What the async rules' workflow reports for each pending rule (activities' FinalOutcomeDetail). */
export interface AsyncAnswers {
  backend_results: Pick<
    AsyncRuleOutcome,
    'rule_id' | 'status' | 'outcome' | 'response' | 'error'
  >[];
  pending: PendingBackendRule[];
}

export type Settled = Pick<
  DecisionResponse,
  'rules' | 'backend_results' | 'has_errors' | 'degraded'
> & { decision: DecisionOutcome };

export function settleDecision(response: DecisionResponse, answers: AsyncAnswers): Settled {
  const pending: PendingBackend[] = answers.pending.map((p) => ({
    rule_id: p.rule_id,
    integration: p.integration,
    backend_id: p.backend_id,
    on_error: p.on_error ?? 'allow',
    ...(p.timeout_ms !== undefined ? { timeout_ms: p.timeout_ms } : {}),
    ...(p.shadow ? { shadow: true as const } : {}),
  }));
  const byRule: Record<string, BackendCallResult> = {};
  for (const r of answers.backend_results) {
    byRule[r.rule_id] =
      r.status === 'ok' && r.outcome !== null
        ? { status: 'ok', outcome: r.outcome, response: r.response ?? null, latency_ms: 0 }
        : r.status === 'insufficient_context'
          ? { status: 'insufficient_context', missing: [] }
          : { status: 'error', error: r.error ?? 'error', latency_ms: 0 };
  }
  const result: EvalResult = {
    decision: response.decision,
    rules: response.rules,
    backend_results: response.backend_results,
    has_errors: response.has_errors,
    degraded: response.degraded,
    evaluation_type: response.evaluation_type,
    pending,
  };
  const s = settlePending(result, byRule);
  return {
    decision: s.decision,
    rules: s.rules,
    backend_results: s.backend_results,
    has_errors: s.has_errors,
    degraded: s.degraded,
  };
}
