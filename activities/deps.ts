// What the activities need from the rest of Vigil, as small interfaces. The composition root
// (cli/, through activities/worker.ts) passes the real adapters from integrations/ and storage/;
// tests pass implementations over local HTTP servers. Activities never import an adapter.
import type { DecisionOutcome, PendingBackendRule } from '../workflows/contracts.ts';
import type { Outcome, Resolution } from '../rulesets/playbook.ts';

export interface InvokeActionRequest {
  integration: string;
  action_id: string;
  /** The data the action's templates read (decision context, `decision`, `case`, `enrichment`). */
  context: Record<string, unknown>;
  /**
   * `{workflow_id}:{opened_by}:{step}`: the same on every retry, after a worker crash, a reset or
   * a continue-as-new. Send it to the third party (Idempotency-Key header, Jira property, …) so
   * a repeated call finds the first one instead of creating a second.
   */
  idempotencyKey: string;
  signal?: AbortSignal;
}

export interface InvokeActionResult {
  /** The third party's HTTP status (2xx; a non-2xx should be thrown as an ActionError). */
  status: number;
  /** What the third party created: ticket key, incident id, message ts. */
  ref?: string;
  body?: unknown;
}

/**
 * What invokeAction/callBackend throw. `retryable: false` for answers a retry cannot change
 * (4xx other than 408/425/429, unknown integration or action, refused egress); `retryAfterMs`
 * from a 429/503 Retry-After. `code` is a stable error code (egress_refused, http_status, …).
 * Messages never carry secrets.
 */
export interface ActionError extends Error {
  retryable: boolean;
  retryAfterMs?: number;
  code?: string;
  status?: number;
}

export interface CallBackendRequest {
  integration: string;
  backend_id: string;
  context: Record<string, unknown>;
  signal?: AbortSignal;
}

export interface CallBackendResult {
  /** `ok`, or why there is no answer: `error`, `insufficient_context`, `circuit_open`. */
  status: 'ok' | 'error' | 'insufficient_context' | 'circuit_open';
  outcome?: Outcome;
  response?: unknown;
  error?: string;
  missing?: string[];
}

export interface BlacklistAddRequest {
  field_path: string;
  value: string;
  ttl_seconds?: number;
  source_decision_id: string | null;
}

export interface StoredPlaybook {
  name: string;
  version: number;
  /** As stored; the loadPlaybooks activity parses it again and skips what fails. */
  document: unknown;
}

/** One workflow step outcome, for the `vigil.actions` topic (CONTRACT §6). */
export interface ActionEvent {
  workflow_id: string;
  step: string;
  status: 'completed' | 'failed' | 'skipped' | 'escalated' | 'resolved' | 'closed';
  attempts: number;
  integration?: string;
  action_id?: string;
  decision_id?: string;
  error?: { type: string; message: string };
  /** Async backend rules: the final outcome stored on the decision. */
  final_decision?: DecisionOutcome;
  occurred_at: string;
}

export interface FinalOutcomeDetail {
  /** What each pending rule's backend finally answered (after retries), in handoff order. */
  backend_results: {
    rule_id: string;
    integration: string;
    backend_id: string;
    status: 'ok' | 'error' | 'insufficient_context';
    outcome: Outcome | null;
    response?: unknown;
    error?: string;
    shadow?: true;
  }[];
  /** The pending rules as the engine listed them (on_error, shadow, timeout). */
  pending: PendingBackendRule[];
}

export interface ActivityDeps {
  invokeAction(req: InvokeActionRequest): Promise<InvokeActionResult>;
  callBackend(req: CallBackendRequest): Promise<CallBackendResult>;
  /** Idempotent per (field_path, value): adding a listed value again refreshes it. */
  blacklistAdd(req: BlacklistAddRequest): Promise<{ id?: string } | void>;
  loadPlaybooks(): Promise<StoredPlaybook[]>;
  /** Never blocks on the broker (bounded buffer behind it). */
  emitAction(event: ActionEvent): Promise<void> | void;
  /**
   * Settles and stores the final outcome of a PROVISIONAL decision (`GET /api/decisions/{id}`).
   * `proposed` is the workflow's merge: the most severe of what the synchronous rules decided
   * and the live rules' answers (on_error for failures). An adapter that has the decision's
   * evaluation settles it in rule order instead (rulesets/evaluate.ts settlePending: a terminal
   * ALLOW before a REVIEW counts) and returns the outcome it stored; returning nothing stores
   * and keeps `proposed`.
   */
  setFinalOutcome(
    decisionId: string,
    proposed: Outcome,
    detail: FinalOutcomeDetail,
  ): Promise<Outcome | void>;
  /** Writes the case's resolution onto a decision record; idempotent. */
  resolveDecisionRecord(
    decisionId: string,
    resolution: Resolution,
    note: string | null,
  ): Promise<void>;
}
