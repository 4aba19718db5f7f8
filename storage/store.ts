// The SQL store: one async interface over two adapters, SQLite embedded in the data dir (the
// default: several Vigil processes share the file) and PostgreSQL at scale. Both run the same
// schema and the same queries (storage/migrations.ts, storage/sql-store.ts); only the driver
// differs. Times go in and out as ISO-8601 strings and are kept as epoch milliseconds, so
// comparisons (expiry, leases, time ranges) are plain integer comparisons in both dialects.
import path from 'node:path';
import { openPostgresStore, type PostgresOptions } from './postgres.ts';
import { openSqliteStore, type SqliteOptions } from './sqlite.ts';

export type Dialect = 'sqlite' | 'postgres';
export type Unsubscribe = () => void;

export type RulesetStatus = 'DRAFT' | 'ACTIVE' | 'INACTIVE';

export interface RulesetRow {
  id: string;
  name: string;
  context: string;
  status: RulesetStatus;
  /** Monotonic per context, assigned at creation (and again if a draft moves context). */
  version: number;
  document: unknown;
  created_at: string;
  updated_at: string;
  activated_at: string | null;
}

export interface RulesetInput {
  name: string;
  context: string;
  document: unknown;
}

export interface DecisionInsert {
  id: string;
  /** ISO-8601 or epoch ms. */
  created_at: string | number;
  context: string;
  decision: string;
  ruleset_id: string | null;
  session: string | null;
  credential_fingerprint: string | null;
  /** The full record (answer and context) as JSON. */
  record: unknown;
}

export interface DecisionRow {
  id: string;
  created_at: string;
  context: string;
  decision: string;
  ruleset_id: string | null;
  session: string | null;
  credential_fingerprint: string | null;
  record: unknown;
  resolution: string | null;
  resolution_note: string | null;
  resolved_at: string | null;
  final_outcome: string | null;
  final_detail: unknown;
  final_at: string | null;
}

export type ResolveResult = 'ok' | 'already_resolved' | 'not_found';

export interface DecisionQuery {
  /** Inclusive lower bound, ISO-8601 or epoch ms. */
  since?: string | number | undefined;
  /** Exclusive upper bound, ISO-8601 or epoch ms. */
  until?: string | number | undefined;
  context?: string | undefined;
  /** Default 1,000, at most 10,000. */
  limit?: number | undefined;
}

export interface BlacklistEntry {
  id: string;
  field_path: string;
  value: string;
  /** Masked for display: never the whole of a long value (see displayHint). */
  display_hint: string;
  expires_at: string | null;
  source_decision_id: string | null;
  inserted_at: string;
}

export interface BlacklistAdd {
  field_path: string;
  value: string;
  /** Absent: never expires. Re-adding an entry only ever extends its life. */
  ttl_seconds?: number | undefined;
  source_decision_id?: string | null | undefined;
}

/** One row of the blacklist change stream the in-memory index follows. */
export interface BlacklistChange {
  seq: number;
  field_path: string;
  value: string;
  expires_at_ms: number | null;
  deleted: boolean;
}

export interface LifecycleEvent {
  id: string;
  type: string;
  decision_id: string;
  occurred_at: string;
  data: Record<string, unknown>;
  received_at: string;
}

export interface LifecycleEventInput {
  /** Given: the insert is idempotent on it. Absent: a new `evt_` id. */
  id?: string | undefined;
  type: string;
  decision_id: string;
  occurred_at: string | number;
  data: Record<string, unknown>;
  received_at?: string | number | undefined;
}

export interface TokenRow {
  id: string;
  name: string;
  scopes: string[];
  created_at: string;
  revoked_at: string | null;
}

/** Returned once, at creation: the plaintext is never stored and cannot be read back. */
export interface CreatedToken extends TokenRow {
  token: string;
}

export interface IntegrationRow {
  slug: string;
  kind: string;
  /** Secrets inside are already encrypted by the caller. */
  document: unknown;
  updated_at: string;
}

export interface PlaybookRow {
  name: string;
  version: number;
  document: unknown;
  updated_at: string;
}

export interface OutboxInput {
  kind: string;
  /** The business key the relay delivers under (the workflow id). */
  key: string;
  payload: unknown;
  /** Default: now. */
  next_attempt_at?: string | number | undefined;
}

export interface OutboxRow {
  id: string;
  kind: string;
  key: string;
  payload: unknown;
  created_at: string;
  /** Claims so far, this one included. */
  attempts: number;
  next_attempt_at: string;
  lease_until: string | null;
  delivered_at: string | null;
  last_error: string | null;
}

export interface OutboxStats {
  /** Undelivered items. */
  size: number;
  /** Age of the oldest undelivered item; 0 when empty. */
  oldestAgeMs: number;
}

export interface Store {
  readonly dialect: Dialect;

  // Rulesets. Errors: not_found, not_draft (updateDraft), not_inactive (rollback).
  createRuleset(input: RulesetInput): Promise<RulesetRow>;
  getRuleset(id: string): Promise<RulesetRow | undefined>;
  listRulesets(filter?: { context?: string | undefined }): Promise<RulesetRow[]>;
  updateDraft(id: string, input: RulesetInput): Promise<RulesetRow>;
  /** DRAFT or INACTIVE → ACTIVE, the context's previous ACTIVE → INACTIVE, atomically. */
  activate(id: string): Promise<RulesetRow>;
  /** INACTIVE → ACTIVE again, the same atomic swap. */
  rollback(id: string): Promise<RulesetRow>;
  /** Every ACTIVE ruleset, read in one statement: one consistent snapshot. */
  activeRulesets(): Promise<RulesetRow[]>;
  /**
   * Calls `onChange` once when the watch is in place, then within a second of any instance's
   * activation or rollback (PostgreSQL: LISTEN/NOTIFY, a 1 s poll behind it; SQLite: a 200 ms
   * poll of a generation row). Callers reload on every call; they can never miss a change.
   */
  watchRulesets(onChange: () => void): Unsubscribe;

  // Decisions.
  insertDecisions(rows: DecisionInsert[]): Promise<void>;
  getDecision(id: string): Promise<DecisionRow | undefined>;
  /** Only once: the first resolution wins, later calls get 'already_resolved'. */
  resolveDecision(id: string, resolution: string, note?: string | null): Promise<ResolveResult>;
  setFinalOutcome(id: string, outcome: string, detail?: unknown): Promise<'ok' | 'not_found'>;
  listDecisions(query: DecisionQuery): Promise<DecisionRow[]>;

  // Blacklist.
  addBlacklist(entry: BlacklistAdd): Promise<BlacklistEntry>;
  getBlacklist(id: string): Promise<BlacklistEntry | undefined>;
  listBlacklist(filter?: { field_path?: string | undefined }): Promise<BlacklistEntry[]>;
  deleteBlacklist(id: string): Promise<boolean>;
  /** Changes (adds, extensions, deletions) after `seq`, in order, at most `limit`. */
  blacklistChanges(sinceSeq: number, limit?: number): Promise<BlacklistChange[]>;
  /** The blacklist's change generation: bumped by every add or delete, and by purges. */
  blacklistGeneration(): Promise<{ seq: number; purges: number }>;
  /** Like watchRulesets, for blacklist adds, deletes and purges (BlacklistIndex follows it). */
  watchBlacklist(onChange: () => void): Unsubscribe;
  /** Drops deleted and expired rows older than `olderThanMs`; followers reload. */
  purgeBlacklist(olderThanMs: number): Promise<number>;

  // Lifecycle events.
  insertEvent(input: LifecycleEventInput): Promise<LifecycleEvent>;
  listEvents(decisionId: string): Promise<LifecycleEvent[]>;

  // API tokens: `vgl_` + 32 random bytes (base64url), stored as SHA-256.
  createToken(input: { name: string; scopes: string[] }): Promise<CreatedToken>;
  /** Registers a known plaintext (the configured admin token); idempotent. */
  importToken(input: { token: string; name: string; scopes: string[] }): Promise<TokenRow>;
  /** The live (not revoked) token with this plaintext. */
  findToken(plaintext: string): Promise<TokenRow | undefined>;
  listTokens(): Promise<TokenRow[]>;
  /** True when the token exists (revoked now or before). */
  revokeToken(id: string): Promise<boolean>;

  // Integrations.
  putIntegration(input: { slug: string; kind: string; document: unknown }): Promise<IntegrationRow>;
  getIntegration(slug: string): Promise<IntegrationRow | undefined>;
  listIntegrations(): Promise<IntegrationRow[]>;
  deleteIntegration(slug: string): Promise<boolean>;

  // Playbooks: every put is a new version; old versions stay readable.
  putPlaybook(input: { name: string; document: unknown }): Promise<PlaybookRow>;
  /** The current playbook, or the given version of it (even after a delete). */
  getPlaybook(name: string, version?: number): Promise<PlaybookRow | undefined>;
  listPlaybooks(): Promise<PlaybookRow[]>;
  deletePlaybook(name: string): Promise<boolean>;

  // Outbox (the durable handoff to Temporal).
  enqueue(input: OutboxInput): Promise<OutboxRow>;
  /**
   * A risky decision's handoff and its record in one transaction (both or neither), durable when
   * it resolves: what the answer path awaits before acknowledging a REVIEW, BLOCK or PROVISIONAL.
   */
  enqueueWithDecision(input: OutboxInput, decision: DecisionInsert): Promise<void>;
  /** Leases up to `batch` due items for `leaseMs`; a concurrent claimer never gets the same. */
  claim(batch: number, leaseMs: number): Promise<OutboxRow[]>;
  markDelivered(ids: string[]): Promise<void>;
  markFailed(id: string, error: string, nextAttemptAt: string | number): Promise<void>;
  outboxStats(): Promise<OutboxStats>;
  /** Deletes items delivered before `deliveredBefore`. */
  purgeOutbox(deliveredBefore: string | number): Promise<number>;

  /** One cheap round trip: rejects with `unavailable` when the database does not answer. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface OpenStoreOptions {
  /** postgres://… ; absent or empty: the embedded SQLite file in `dataDir`. */
  databaseUrl?: string | undefined;
  dataDir: string;
  /** The clock for stored times (tests move it). */
  now?: () => number;
  /** Background errors (change feed, LISTEN connection, idle pool clients): log, never thrown. */
  onError?: (err: unknown) => void;
  sqlite?: Omit<SqliteOptions, 'file' | 'now'>;
  postgres?: Omit<PostgresOptions, 'connectionString' | 'now'>;
}

export const SQLITE_FILE = 'vigil.sqlite';

/** Opens the store the configuration names and brings its schema up to date. */
export function openStore(opts: OpenStoreOptions): Promise<Store> {
  const now = opts.now ?? Date.now;
  const onError = opts.onError ? { onError: opts.onError } : {};
  if (opts.databaseUrl) {
    return openPostgresStore({
      ...onError,
      ...opts.postgres,
      connectionString: opts.databaseUrl,
      now,
    });
  }
  return openSqliteStore({
    ...onError,
    ...opts.sqlite,
    file: path.join(opts.dataDir, SQLITE_FILE),
    now,
  });
}
