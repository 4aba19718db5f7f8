// What the decision use-cases need from storage/, the event sink and the engine's compiled
// rulesets, as narrow interfaces: the composition root passes the real adapters.
import type {
  BackendResultTrace,
  DecisionOutcome,
  DegradedReason,
  RuleTrace,
} from '../rulesets/ports.ts';

export interface DecisionResponse {
  id: string;
  decision: DecisionOutcome;
  context: string;
  ruleset_id: string | null;
  credential_fingerprint: string | null;
  rules: RuleTrace[];
  backend_results: BackendResultTrace[];
  has_errors: boolean;
  degraded: DegradedReason[];
  evaluation_type: 'RULE_ENGINE' | 'BACKEND' | 'COMBINED';
  workflow_id: string | null;
  elapsed_ms: number;
  dry_run?: true;
  /** Set later for async backend rules (CONTRACT §1 semantic 10). */
  final_decision?: DecisionOutcome;
  resolution?: { resolution: 'accept' | 'reject'; note?: string; resolved_at: string } | null;
}

/** What is stored for a decision: the answer plus the context it was made on (no raw credential). */
export interface DecisionRecord {
  response: DecisionResponse;
  context: Record<string, unknown>;
  session: string | null;
  created_at: string;
}

export interface DecisionLogPort {
  append(record: DecisionRecord): void;
  /** Durable before it resolves (risky decisions: their case must find them after a crash). */
  appendDurable?(record: DecisionRecord): Promise<void>;
  get(id: string): Promise<DecisionRecord | undefined>;
}

export interface HandoffItem {
  workflow_id: string;
  decision_id: string;
  decision: DecisionOutcome;
  context: string;
  ruleset_id: string | null;
  session: string | null;
  credential_fingerprint: string | null;
  occurred_at: string;
  /** The decision context without metadata: what playbook steps and conditions read. */
  context_data: Record<string, unknown>;
  pending?: unknown[];
  /** PROVISIONAL only: what the synchronous rules decided, for the async rules to settle on. */
  sync_decision?: 'ALLOW' | 'REVIEW';
}

export interface OutboxPort {
  /** Durable before it resolves: a decision acknowledged with a workflow id is never lost. */
  enqueue(item: HandoffItem): Promise<void>;
  /**
   * The handoff and the decision's record in one transaction, both durable when it resolves
   * (where the store can): used instead of `enqueue` plus `DecisionLogPort.appendDurable`.
   */
  enqueueWithRecord?(item: HandoffItem, record: DecisionRecord): Promise<void>;
}

export type Topic = 'vigil.decisions' | 'vigil.requests' | 'vigil.actions';
export interface EventPort {
  /**
   * Never blocks, never throws: bounded buffer behind it. A function value is called later
   * (next turn of the event loop, in publish order), so building the event stays off the answer.
   */
  publish(topic: Topic, key: string, value: object | (() => object)): void;
}

export type RulesetStatus = 'DRAFT' | 'ACTIVE' | 'INACTIVE';
export interface RulesetRow {
  id: string;
  name: string;
  context: string;
  status: RulesetStatus;
  version: number;
  document: unknown;
  created_at: string;
  activated_at: string | null;
}

/** Ruleset lifecycle as the API needs it; errors carry codes not_found / not_draft / not_inactive. */
export interface RulesetRepo {
  create(doc: { name: string; context: string; document: unknown }): Promise<RulesetRow>;
  get(id: string): Promise<RulesetRow | undefined>;
  list(filter: { context?: string }): Promise<RulesetRow[]>;
  updateDraft(
    id: string,
    doc: { name: string; context: string; document: unknown },
  ): Promise<RulesetRow>;
  activate(id: string): Promise<RulesetRow>;
  rollback(id: string): Promise<RulesetRow>;
}

export interface BlacklistEntry {
  id: string;
  field_path: string;
  value: string;
  display_hint: string;
  expires_at: string | null;
  source_decision_id: string | null;
  inserted_at: string;
}

export interface BlacklistRepo {
  add(e: {
    field_path: string;
    value: string;
    ttl_seconds?: number | undefined;
    source_decision_id?: string | null;
  }): Promise<BlacklistEntry>;
  get(id: string): Promise<BlacklistEntry | undefined>;
  list(filter: { field_path?: string }): Promise<BlacklistEntry[]>;
  delete(id: string): Promise<boolean>;
}

export interface LifecycleEvent {
  id: string;
  type: string;
  decision_id: string;
  occurred_at: string;
  data: Record<string, unknown>;
  received_at: string;
}

export interface LifecycleEventRepo {
  insert(e: LifecycleEvent): Promise<void>;
}
