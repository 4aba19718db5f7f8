// The case's state and the pure helpers over it. Everything here is plain data and plain
// functions: continue-as-new carries the state object to the next run as is.
import { parseDuration } from '../rulesets/playbook-core.ts';
import type { CarriedCase, CaseDecisionState, CaseStep, DecisionSignal } from './contracts.ts';

/** Step records kept for the query; older finished ones are dropped (and counted). */
const MAX_STEPS_KEPT = 500;
/** Decisions whose full context is carried; older ones keep their summary only. */
const MAX_CONTEXTS_KEPT = 200;

export function freshCase(now: number): CarriedCase {
  return {
    opened_by: null,
    opened_at: null,
    playbooks: null,
    decisions: [],
    seen: [],
    steps: [],
    steps_dropped: 0,
    tickets: [],
    enrichment: {},
    runs_of_playbooks: [],
    resolution: null,
    records_resolved: false,
    events: [],
    events_total: 0,
    last_activity_at: now,
    runs: 1,
    inbox: [],
  };
}

/** A decision is handed over once as itself and, for PROVISIONAL ones, once as its final. */
export function dedupeKey(d: DecisionSignal): string {
  return d.final ? `${d.decision_id}:final` : d.decision_id;
}

export function durationMs(text: string | undefined, fallback: string): number {
  return parseDuration(text ?? fallback) ?? (parseDuration(fallback) as number);
}

export function decisionById(state: CarriedCase, id: string): CaseDecisionState | undefined {
  return state.decisions.find((d) => d.decision_id === id);
}

/**
 * `{workflow_id}:{opened_by}:{step}`. Stable across retries, worker crashes, resets and
 * continue-as-new (none of which changes the workflow id or the opening decision), and
 * different for the next case of the same session, which must open its own ticket.
 */
export function stepKey(workflowId: string, state: CarriedCase, path: string): string {
  return `${workflowId}:${state.opened_by ?? 'case'}:${path}`;
}

/** What conditions and action templates read: the decision's context plus case facts. */
export function caseData(
  workflowId: string,
  state: CarriedCase,
  d: CaseDecisionState | undefined,
): Record<string, unknown> {
  const base = d?.context_data ?? {};
  const fingerprint = d?.credential_fingerprint ?? base.credential_fingerprint;
  return {
    ...base,
    ...(fingerprint != null ? { credential_fingerprint: fingerprint } : {}),
    decision: d
      ? {
          id: d.decision_id,
          decision: d.decision,
          context: d.context,
          ruleset_id: d.ruleset_id,
          occurred_at: d.occurred_at,
          ...(d.final ? { final: true } : {}),
        }
      : null,
    case: {
      workflow_id: workflowId,
      opened_by: state.opened_by,
      decisions: state.decisions.length,
      resolution: state.resolution?.resolution ?? null,
      note: state.resolution?.note ?? null,
      tickets: state.tickets.map((t) => ({ integration: t.integration, ref: t.ref })),
    },
    enrichment: state.enrichment,
  };
}

/** Opens a step record (status running); the query shows it from now on. */
export function openStep(state: CarriedCase, path: string): CaseStep {
  const rec: CaseStep = {
    step: path,
    status: 'running',
    attempts: 0,
    result: null,
    started_at: new Date().toISOString(),
  };
  state.steps.push(rec);
  if (state.steps.length > MAX_STEPS_KEPT) {
    const i = state.steps.findIndex((s) => s.status !== 'running');
    if (i >= 0) {
      state.steps.splice(i, 1);
      state.steps_dropped += 1;
    }
  }
  return rec;
}

/** Keeps the carried state bounded: old decisions keep their summary, not their context. */
export function compact(state: CarriedCase): CarriedCase {
  const keep = new Set(state.runs_of_playbooks.map((r) => r.trigger));
  const cut = state.decisions.length - MAX_CONTEXTS_KEPT;
  if (cut <= 0) return state;
  return {
    ...state,
    decisions: state.decisions.map((d, i) =>
      i < cut && !keep.has(d.decision_id) ? { ...d, context_data: {} } : d,
    ),
  };
}
