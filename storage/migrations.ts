// The one schema, as an ordered list of migrations in the SQL both SQLite and PostgreSQL speak.
// The few type differences go through `{{token}}`s that `renderMigration` maps per dialect.
// Times are BIGINT epoch milliseconds in both (no timezone or precision drift between drivers);
// JSON is TEXT in SQLite and `json` in PostgreSQL (`json`, not `jsonb`: it keeps the document's
// key order, which users see when they read a ruleset or decision back).
//
// Rules for adding one: append, never edit a released migration; keep each idempotent-safe to
// run inside a transaction; no dialect branches beyond the tokens below.
import { StoreError } from './errors.ts';
import type { Dialect } from './store.ts';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const TOKENS: Record<Dialect, Record<string, string>> = {
  sqlite: { json: 'TEXT' },
  postgres: { json: 'JSON' },
};

export function renderMigration(sql: string, dialect: Dialect): string {
  return sql.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    const v = TOKENS[dialect][name];
    if (v === undefined) throw new Error(`unknown migration token {{${name}}}`);
    return v;
  });
}

/**
 * The migrations still to apply, in order. A database that has migrations this build does not
 * know was migrated by a newer Vigil: refuse it rather than run old code on a newer schema.
 */
export function pendingMigrations(
  applied: readonly number[],
  migrations: readonly Migration[],
): Migration[] {
  const known = new Set(migrations.map((m) => m.version));
  const unknown = applied.filter((v) => !known.has(v));
  if (unknown.length) {
    throw new StoreError(
      'schema_mismatch',
      `the database has migrations this version does not know (${unknown.join(', ')}): upgrade Vigil`,
    );
  }
  const done = new Set(applied);
  return [...migrations].sort((a, b) => a.version - b.version).filter((m) => !done.has(m.version));
}

export const SCHEMA_MIGRATIONS_DDL =
  'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)';

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
-- Per-topic generation counters: bumped in the transaction that changes the topic, polled (or
-- NOTIFY-woken) by every instance. The blacklist's counter doubles as its change sequence.
CREATE TABLE change_feed (
  topic TEXT PRIMARY KEY,
  generation BIGINT NOT NULL
);
INSERT INTO change_feed (topic, generation) VALUES ('rulesets', 0), ('blacklist', 0), ('blacklist_purge', 0);

CREATE TABLE rulesets (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  context TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('DRAFT', 'ACTIVE', 'INACTIVE')),
  version BIGINT NOT NULL,
  document {{json}} NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  activated_at BIGINT
);
-- Exactly one ACTIVE ruleset per context, whatever the code above it does.
CREATE UNIQUE INDEX rulesets_one_active ON rulesets (context) WHERE status = 'ACTIVE';
CREATE UNIQUE INDEX rulesets_context_version ON rulesets (context, version);
-- Version allocation per context by an upsert on one row: atomic in both dialects, and never
-- reuses a number even after rulesets are deleted.
CREATE TABLE ruleset_versions (
  context TEXT PRIMARY KEY,
  last_version BIGINT NOT NULL
);

CREATE TABLE decisions (
  id TEXT PRIMARY KEY,
  created_at BIGINT NOT NULL,
  context TEXT NOT NULL,
  decision TEXT NOT NULL,
  ruleset_id TEXT,
  session TEXT,
  credential_fingerprint TEXT,
  record {{json}} NOT NULL,
  resolution TEXT,
  resolution_note TEXT,
  resolved_at BIGINT,
  final_outcome TEXT,
  final_detail {{json}},
  final_at BIGINT
);
CREATE INDEX decisions_context_created ON decisions (context, created_at);
CREATE INDEX decisions_created ON decisions (created_at);
CREATE INDEX decisions_session ON decisions (session) WHERE session IS NOT NULL;

-- Deletions are tombstones (deleted_at) until purged, so followers can apply changes by seq
-- instead of reloading the whole list.
CREATE TABLE blacklist (
  id TEXT PRIMARY KEY,
  field_path TEXT NOT NULL,
  value TEXT NOT NULL,
  display_hint TEXT NOT NULL,
  expires_at BIGINT,
  source_decision_id TEXT,
  inserted_at BIGINT NOT NULL,
  seq BIGINT NOT NULL,
  deleted_at BIGINT,
  UNIQUE (field_path, value)
);
CREATE INDEX blacklist_seq ON blacklist (seq);
CREATE INDEX blacklist_field ON blacklist (field_path);

CREATE TABLE lifecycle_events (
  id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  decision_id TEXT NOT NULL,
  occurred_at BIGINT NOT NULL,
  data {{json}} NOT NULL,
  received_at BIGINT NOT NULL
);
CREATE INDEX lifecycle_events_decision ON lifecycle_events (decision_id, occurred_at);

CREATE TABLE tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  scopes {{json}} NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);

CREATE TABLE integrations (
  slug TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  document {{json}} NOT NULL,
  updated_at BIGINT NOT NULL
);

-- A deleted playbook keeps its row (deleted_at) so a later put continues its version numbers
-- and the versions cases started with stay unique.
CREATE TABLE playbooks (
  name TEXT PRIMARY KEY,
  version BIGINT NOT NULL,
  document {{json}} NOT NULL,
  updated_at BIGINT NOT NULL,
  deleted_at BIGINT
);
CREATE TABLE playbook_versions (
  name TEXT NOT NULL,
  version BIGINT NOT NULL,
  document {{json}} NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (name, version)
);

CREATE TABLE outbox (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  payload {{json}} NOT NULL,
  created_at BIGINT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at BIGINT NOT NULL,
  lease_until BIGINT,
  delivered_at BIGINT,
  last_error TEXT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
`,
  },
];
