// What the rest of Vigil needs to talk to the case workflow: names of the workflows, signals,
// the update and the query, their argument and result types, and the workflow id rule.
// decisions/ and proxy/ import this file, so it only imports @temporalio/workflow's definers
// (which are plain name holders outside the sandbox) and types. Arguments are parsed by zod at
// the boundaries that produce them (the API, the relay, the activities), not here.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { LoadedPlaybook, Outcome, Resolution } from '../rulesets/playbook-core.ts';

export const DEFAULT_TASK_QUEUE = 'vigil';

/** Workflow type names: what the relay, the API and child-workflow calls start by name. */
export const CASE_WORKFLOW = 'caseWorkflow';
export const ASYNC_BACKEND_WORKFLOW = 'asyncBackendRule';

/**
 * A case per session (CONTRACT §4): `session-{device.session}`, or `decision-{id}` when the
 * decision carries no session. Later risky decisions of the session land in the same case.
 */
export function caseWorkflowId(session: string | null | undefined, decisionId: string): string {
  return session ? `session-${session}` : `decision-${decisionId}`;
}

export type DecisionOutcome = Outcome | 'PROVISIONAL';
export type CaseStatus = 'open' | 'resolved' | 'escalated' | 'closed';
export type StepStatus = 'running' | 'completed' | 'failed' | 'skipped';

/** A backend rule with `async: true` the engine did not wait for (CONTRACT §1, semantic 10). */
/** The engine's PendingBackend (rulesets/ports.ts), as the handoff carries it. */
export interface PendingBackendRule {
  rule_id: string;
  integration: string;
  backend_id: string;
  /** What a backend that still fails after its retries counts as; default `allow`. */
  on_error?: 'allow' | 'block' | 'review';
  timeout_ms?: number;
  /** `live: false`: called and reported, never deciding. */
  shadow?: true;
}

/** The `decision` signal: one risky decision handed to its case. */
export interface DecisionSignal {
  decision_id: string;
  decision: DecisionOutcome;
  /** The ruleset context name (`checkout`). */
  context: string;
  ruleset_id: string | null;
  occurred_at: string;
  session?: string | null;
  credential_fingerprint?: string | null;
  /** The decision context without `metadata`: what steps, conditions and actions read. */
  context_data: Record<string, unknown>;
  /** The final outcome of a PROVISIONAL decision, delivered once its async rules answered. */
  final?: boolean;
  /** PROVISIONAL only: the async backend rules still to run. */
  pending?: PendingBackendRule[];
  /** PROVISIONAL only: what the synchronous rules decided (ALLOW or REVIEW); default ALLOW. */
  sync_decision?: 'ALLOW' | 'REVIEW';
}

/** The `lifecycle_event` signal (CONTRACT §2, `POST /api/events`). */
export interface LifecycleEventSignal {
  id: string;
  type: string;
  decision_id: string;
  occurred_at: string;
  data?: Record<string, unknown>;
}

export interface ResolveArgs {
  /** The decision the analyst resolved; any decision of the case resolves the case. */
  decision_id?: string;
  resolution: Resolution;
  note?: string;
}

export interface ResolveResult {
  workflow_id: string;
  status: CaseStatus;
}

/**
 * `ApplicationFailure.type` of a refused `resolve` update. The validator refuses before
 * anything is written to the history; the API answers 409 (already_resolved) or 404/400.
 */
export const RESOLVE_REFUSED = {
  alreadyResolved: 'already_resolved',
  unknownDecision: 'unknown_decision',
  /** The case closed without a resolution (quiet for close_after): only the record changes. */
  closed: 'case_closed',
  invalid: 'invalid_resolution',
} as const;

export interface CaseDecision {
  decision_id: string;
  decision: DecisionOutcome;
  context: string;
  ruleset_id: string | null;
  occurred_at: string;
  final?: boolean;
  /** Playbooks this decision started or joined. */
  playbooks: string[];
}

export interface CaseStep {
  /** Where the step sits: `review-default.steps[1].ticket`, `….after_decision[0].action@dec_…`. */
  step: string;
  status: StepStatus;
  attempts: number;
  result: unknown;
  error?: { type: string; message: string };
  started_at: string;
  finished_at?: string;
}

export interface CaseTicket {
  step: string;
  integration: string;
  action_id: string;
  ref: string | null;
  status: number;
}

export interface CaseResolution {
  resolution: Resolution;
  decision_id: string | null;
  note: string | null;
  resolved_at: string;
  by: 'analyst' | 'timeout';
}

export interface CaseView {
  workflow_id: string;
  status: CaseStatus;
  /** The decision that opened this case; part of every idempotency key of the case. */
  opened_by: string | null;
  opened_at: string | null;
  decisions: CaseDecision[];
  steps: CaseStep[];
  tickets: CaseTicket[];
  playbooks: { name: string; version: number }[];
  resolution: CaseResolution | null;
  events: LifecycleEventSignal[];
  /** Runs of this case so far (continue-as-new keeps the case, not the run id). */
  runs: number;
}

/** Where one playbook is in a case: enough to resume it after continue-as-new. */
export interface PlaybookRun {
  playbook: string;
  /** The decision that started it: its context is what the steps read. */
  trigger: string;
  /** Index of the next step in `steps`. */
  cursor: number;
  phase: 'running' | 'waiting' | 'steps_done' | 'done';
  /** Reached its wait (or its end): after_decision actions may go. */
  ready: boolean;
  /** Absolute deadline (workflow clock, ms) of the pending wait_for_resolution. */
  wait_deadline: number | null;
  escalated: boolean;
  on_resolution_done: boolean;
}

export interface CaseDecisionState extends CaseDecision {
  context_data: Record<string, unknown>;
  session: string | null;
  credential_fingerprint: string | null;
}

/** Everything a case carries from one run to the next (continue-as-new). */
export interface CarriedCase {
  opened_by: string | null;
  opened_at: string | null;
  playbooks: LoadedPlaybook[] | null;
  decisions: CaseDecisionState[];
  /** Dedupe keys seen so far: `{decision_id}` and `{decision_id}:final`. */
  seen: string[];
  steps: CaseStep[];
  steps_dropped: number;
  tickets: CaseTicket[];
  enrichment: Record<string, Record<string, unknown>>;
  runs_of_playbooks: PlaybookRun[];
  resolution: CaseResolution | null;
  records_resolved: boolean;
  events: LifecycleEventSignal[];
  events_total: number;
  last_activity_at: number;
  runs: number;
  /** Decisions received but not handled yet when the run ended. */
  inbox: DecisionSignal[];
}

export interface CaseInput {
  /**
   * How long a case with nothing left to run or wait for stays open for more decisions and a
   * resolution, counted from its last decision. Default `24h`.
   */
  close_after?: string;
  /** Per-step activity timeouts; defaults `start_to_close: 2m`, `heartbeat: 20s`. */
  step_timeouts?: { start_to_close?: string; heartbeat?: string };
  /** Continue-as-new bounds per run; defaults 100 decisions, 500 lifecycle events. */
  limits?: { decisions_per_run?: number; events_per_run?: number };
  /** Set by continue-as-new only. */
  carried?: CarriedCase;
}

export interface CaseResult {
  workflow_id: string;
  status: CaseStatus;
  decisions: number;
  resolution: CaseResolution | null;
}

/** What a user workflow named in a `{ "workflow": "name" }` step receives. */
export interface UserWorkflowInput {
  case_workflow_id: string;
  /** The step path; with the case key, a prefix for idempotency keys of the user's own calls. */
  step: string;
  idempotency_key: string;
  /** The same data conditions read: decision context, `decision`, `case`, `enrichment`. */
  context: Record<string, unknown>;
}

export interface AsyncBackendInput {
  case_workflow_id: string;
  decision_id: string;
  context_data: Record<string, unknown>;
  rules: PendingBackendRule[];
  sync_decision: 'ALLOW' | 'REVIEW';
}

export interface AsyncRuleOutcome {
  rule_id: string;
  integration: string;
  backend_id: string;
  /** `error` after the retries; `insufficient_context` when no request could be made. */
  status: 'ok' | 'error' | 'insufficient_context';
  /** The mapped answer (ok only). */
  outcome: Outcome | null;
  /** What the rule does to the decision: the answer, or its on_error for an error. */
  action: Outcome | null;
  response?: unknown;
  error?: string;
  attempts: number;
  shadow?: true;
}

export interface AsyncBackendResult {
  decision_id: string;
  final_decision: Outcome;
  rules: AsyncRuleOutcome[];
}

export const decisionSignal = defineSignal<[DecisionSignal]>('decision');
export const lifecycleEventSignal = defineSignal<[LifecycleEventSignal]>('lifecycle_event');
export const resolveUpdate = defineUpdate<ResolveResult, [ResolveArgs]>('resolve');
export const caseQuery = defineQuery<CaseView>('case');
