// The store's operations, written once over the SqlDriver seam and shared by the SQLite and
// PostgreSQL adapters. Every multi-statement change runs in one driver transaction; the ones
// that must be serialized across instances (ruleset swaps, blacklist changes) start by bumping
// their change_feed row, which in PostgreSQL takes that row's lock until commit, so each later
// statement of the transaction sees what the previous holder committed (READ COMMITTED takes a
// fresh snapshot per statement) and in SQLite is inside the single writer's BEGIN IMMEDIATE.
import { createHash, randomBytes } from 'node:crypto';
import { ChangeFeed } from './change-feed.ts';
import { StoreError } from './errors.ts';
import { newId } from './ids.ts';
import {
  iso,
  isoOrNull,
  toJson,
  toMs,
  type SqlDriver,
  type SqlExecutor,
  type SqlValue,
} from './sql.ts';
import type {
  BlacklistAdd,
  BlacklistChange,
  BlacklistEntry,
  CreatedToken,
  DecisionInsert,
  DecisionQuery,
  DecisionRow,
  Dialect,
  IntegrationRow,
  LifecycleEvent,
  LifecycleEventInput,
  OutboxInput,
  OutboxRow,
  OutboxStats,
  PlaybookRow,
  ResolveResult,
  RulesetInput,
  RulesetRow,
  RulesetStatus,
  Store,
  TokenRow,
  Unsubscribe,
} from './store.ts';

/** Rows per multi-row INSERT: well under SQLite's 32,766 and PostgreSQL's 65,535 parameters. */
const INSERT_CHUNK = 500;
const LIST_DEFAULT = 1_000;
const LIST_MAX = 10_000;
const ERROR_TEXT_MAX = 2_000;

/**
 * The masked form of a listed value shown in lists and logs: the first 2 and last 4 characters
 * of a long value, only the last 2 of a medium one, nothing of a short one, so a display hint
 * never gives away a whole card fingerprint, e-mail or IP.
 */
export function displayHint(value: string): string {
  const chars = Array.from(value);
  if (chars.length >= 10) return `${chars.slice(0, 2).join('')}…${chars.slice(-4).join('')}`;
  if (chars.length >= 5) return `…${chars.slice(-2).join('')}`;
  return '…';
}

export function hashToken(plaintext: string): string {
  return createHash('sha256').update(plaintext, 'utf8').digest('hex');
}

interface RawRuleset {
  id: string;
  name: string;
  context: string;
  status: RulesetStatus;
  version: number;
  document: unknown;
  created_at: number;
  updated_at: number;
  activated_at: number | null;
}

interface RawDecision {
  id: string;
  created_at: number;
  context: string;
  decision: string;
  ruleset_id: string | null;
  session: string | null;
  credential_fingerprint: string | null;
  record: unknown;
  resolution: string | null;
  resolution_note: string | null;
  resolved_at: number | null;
  final_outcome: string | null;
  final_detail: unknown;
  final_at: number | null;
}

interface RawBlacklist {
  id: string;
  field_path: string;
  value: string;
  display_hint: string;
  expires_at: number | null;
  source_decision_id: string | null;
  inserted_at: number;
  seq: number;
  deleted_at: number | null;
}

interface RawEvent {
  id: string;
  type: string;
  decision_id: string;
  occurred_at: number;
  data: unknown;
  received_at: number;
}

interface RawToken {
  id: string;
  name: string;
  scopes: unknown;
  created_at: number;
  revoked_at: number | null;
}

interface RawIntegration {
  slug: string;
  kind: string;
  document: unknown;
  updated_at: number;
}

interface RawPlaybook {
  name: string;
  version: number;
  document: unknown;
  updated_at: number;
}

interface RawOutbox {
  id: string;
  kind: string;
  key: string;
  payload: unknown;
  created_at: number;
  attempts: number;
  next_attempt_at: number;
  lease_until: number | null;
  delivered_at: number | null;
  last_error: string | null;
}

export interface SqlStoreOptions {
  now: () => number;
  /** How often each watching instance reads the change generations. */
  pollMs: number;
  onError?: (err: unknown) => void;
}

export class SqlStore implements Store {
  readonly dialect: Dialect;
  #db: SqlDriver;
  #now: () => number;
  #feed: ChangeFeed;
  #closed = false;

  constructor(db: SqlDriver, opts: SqlStoreOptions) {
    this.dialect = db.dialect;
    this.#db = db;
    this.#now = opts.now;
    this.#feed = new ChangeFeed({
      read: () =>
        db.all<{ topic: string; generation: number }>('SELECT topic, generation FROM change_feed'),
      listen: (wake) => db.listen(wake),
      pollMs: opts.pollMs,
      ...(opts.onError ? { onError: opts.onError } : {}),
    });
  }

  // ---- rulesets -------------------------------------------------------------------------------

  #ruleset(r: RawRuleset): RulesetRow {
    return {
      id: r.id,
      name: r.name,
      context: r.context,
      status: r.status,
      version: Number(r.version),
      document: this.#db.fromJson(r.document),
      created_at: iso(r.created_at),
      updated_at: iso(r.updated_at),
      activated_at: isoOrNull(r.activated_at),
    };
  }

  async #nextVersion(tx: SqlExecutor, context: string): Promise<number> {
    const row = await tx.get<{ last_version: number }>(
      `INSERT INTO ruleset_versions (context, last_version) VALUES (?, 1)
       ON CONFLICT (context) DO UPDATE SET last_version = ruleset_versions.last_version + 1
       RETURNING last_version`,
      [context],
    );
    return Number(row!.last_version);
  }

  async createRuleset(input: RulesetInput): Promise<RulesetRow> {
    checkText('name', input.name);
    checkText('context', input.context);
    return await this.#db.transaction(async (tx) => {
      const now = this.#now();
      const version = await this.#nextVersion(tx, input.context);
      const row = await tx.get<RawRuleset>(
        `INSERT INTO rulesets (id, name, context, status, version, document, created_at, updated_at, activated_at)
         VALUES (?, ?, ?, 'DRAFT', ?, ?, ?, ?, NULL) RETURNING *`,
        [newId('rs', now), input.name, input.context, version, toJson(input.document), now, now],
      );
      return this.#ruleset(row!);
    });
  }

  async getRuleset(id: string): Promise<RulesetRow | undefined> {
    const row = await this.#db.get<RawRuleset>('SELECT * FROM rulesets WHERE id = ?', [id]);
    return row && this.#ruleset(row);
  }

  async listRulesets(filter: { context?: string | undefined } = {}): Promise<RulesetRow[]> {
    const rows =
      filter.context === undefined
        ? await this.#db.all<RawRuleset>('SELECT * FROM rulesets ORDER BY created_at DESC, id DESC')
        : await this.#db.all<RawRuleset>(
            'SELECT * FROM rulesets WHERE context = ? ORDER BY created_at DESC, id DESC',
            [filter.context],
          );
    return rows.map((r) => this.#ruleset(r));
  }

  async updateDraft(id: string, input: RulesetInput): Promise<RulesetRow> {
    checkText('name', input.name);
    checkText('context', input.context);
    return await this.#db.transaction(async (tx) => {
      const cur = await tx.get<RawRuleset>('SELECT * FROM rulesets WHERE id = ?', [id]);
      if (!cur) throw notFound('ruleset', id);
      if (cur.status !== 'DRAFT') throw notDraft(id, cur.status);
      // A draft moved to another context takes that context's next version: versions stay
      // monotonic and unique per context.
      const version =
        input.context === cur.context
          ? Number(cur.version)
          : await this.#nextVersion(tx, input.context);
      const row = await tx.get<RawRuleset>(
        `UPDATE rulesets SET name = ?, context = ?, version = ?, document = ?, updated_at = ?
         WHERE id = ? AND status = 'DRAFT' RETURNING *`,
        [input.name, input.context, version, toJson(input.document), this.#now(), id],
      );
      // Activated between our read and our write (PostgreSQL, another instance).
      if (!row) throw notDraft(id, 'ACTIVE');
      return this.#ruleset(row);
    });
  }

  async activate(id: string): Promise<RulesetRow> {
    return await this.#swap(id, 'activate');
  }

  async rollback(id: string): Promise<RulesetRow> {
    return await this.#swap(id, 'rollback');
  }

  #swap(id: string, op: 'activate' | 'rollback'): Promise<RulesetRow> {
    return this.#db.transaction(async (tx) => {
      // First statement: serializes every activation (see the file header); the other
      // instances' watchers see this generation once we commit.
      await bump(tx, 'rulesets');
      const cur = await tx.get<RawRuleset>('SELECT * FROM rulesets WHERE id = ?', [id]);
      if (!cur) throw notFound('ruleset', id);
      if (op === 'rollback' && cur.status !== 'INACTIVE') {
        throw new StoreError('not_inactive', `ruleset ${id} is ${cur.status}, not INACTIVE`);
      }
      if (cur.status === 'ACTIVE') return this.#ruleset(cur);
      const now = this.#now();
      // Order matters: the partial unique index is checked per statement.
      await tx.run(
        `UPDATE rulesets SET status = 'INACTIVE', updated_at = ?
         WHERE context = ? AND status = 'ACTIVE' AND id <> ?`,
        [now, cur.context, id],
      );
      const row = await tx.get<RawRuleset>(
        `UPDATE rulesets SET status = 'ACTIVE', activated_at = ?, updated_at = ? WHERE id = ? RETURNING *`,
        [now, now, id],
      );
      await tx.notify('rulesets');
      return this.#ruleset(row!);
    });
  }

  async activeRulesets(): Promise<RulesetRow[]> {
    const rows = await this.#db.all<RawRuleset>(
      "SELECT * FROM rulesets WHERE status = 'ACTIVE' ORDER BY context",
    );
    return rows.map((r) => this.#ruleset(r));
  }

  watchRulesets(onChange: () => void): Unsubscribe {
    return this.#feed.subscribe('rulesets', onChange);
  }

  // ---- decisions ------------------------------------------------------------------------------

  #decision(r: RawDecision): DecisionRow {
    return {
      id: r.id,
      created_at: iso(r.created_at),
      context: r.context,
      decision: r.decision,
      ruleset_id: r.ruleset_id,
      session: r.session,
      credential_fingerprint: r.credential_fingerprint,
      record: this.#db.fromJson(r.record),
      resolution: r.resolution,
      resolution_note: r.resolution_note,
      resolved_at: isoOrNull(r.resolved_at),
      final_outcome: r.final_outcome,
      final_detail: r.final_detail === null ? null : this.#db.fromJson(r.final_detail),
      final_at: isoOrNull(r.final_at),
    };
  }

  async insertDecisions(rows: DecisionInsert[]): Promise<void> {
    if (rows.length === 0) return;
    const values = rows.map(decisionValues);
    // Idempotent on id: a batch retried after a commit whose acknowledgement was lost is a no-op.
    await this.#db.transaction(async (tx) => {
      for (let i = 0; i < values.length; i += INSERT_CHUNK) {
        await tx.insertMany(
          'decisions',
          DECISION_COLUMNS,
          values.slice(i, i + INSERT_CHUNK),
          DECISION_ON_CONFLICT,
        );
      }
    });
  }

  async getDecision(id: string): Promise<DecisionRow | undefined> {
    const row = await this.#db.get<RawDecision>('SELECT * FROM decisions WHERE id = ?', [id]);
    return row && this.#decision(row);
  }

  async resolveDecision(
    id: string,
    resolution: string,
    note?: string | null,
  ): Promise<ResolveResult> {
    const changed = await this.#db.run(
      `UPDATE decisions SET resolution = ?, resolution_note = ?, resolved_at = ?
       WHERE id = ? AND resolution IS NULL`,
      [resolution, note ?? null, this.#now(), id],
    );
    if (changed > 0) return 'ok';
    const exists = await this.#db.get('SELECT id FROM decisions WHERE id = ?', [id]);
    return exists ? 'already_resolved' : 'not_found';
  }

  async setFinalOutcome(
    id: string,
    outcome: string,
    detail?: unknown,
  ): Promise<'ok' | 'not_found'> {
    const changed = await this.#db.run(
      'UPDATE decisions SET final_outcome = ?, final_detail = ?, final_at = ? WHERE id = ?',
      [outcome, detail === undefined ? null : toJson(detail), this.#now(), id],
    );
    return changed > 0 ? 'ok' : 'not_found';
  }

  async listDecisions(query: DecisionQuery): Promise<DecisionRow[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (query.since !== undefined) {
      where.push('created_at >= ?');
      params.push(toMs(query.since));
    }
    if (query.until !== undefined) {
      where.push('created_at < ?');
      params.push(toMs(query.until));
    }
    if (query.context !== undefined) {
      where.push('context = ?');
      params.push(query.context);
    }
    params.push(clampLimit(query.limit));
    const rows = await this.#db.all<RawDecision>(
      `SELECT * FROM decisions ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY created_at, id LIMIT ?`,
      params,
    );
    return rows.map((r) => this.#decision(r));
  }

  // ---- blacklist ------------------------------------------------------------------------------

  #blacklist(r: RawBlacklist): BlacklistEntry {
    return {
      id: r.id,
      field_path: r.field_path,
      value: r.value,
      display_hint: r.display_hint,
      expires_at: isoOrNull(r.expires_at),
      source_decision_id: r.source_decision_id,
      inserted_at: iso(r.inserted_at),
    };
  }

  async addBlacklist(entry: BlacklistAdd): Promise<BlacklistEntry> {
    checkText('field_path', entry.field_path);
    if (typeof entry.value !== 'string') throw new StoreError('invalid', 'value must be a string');
    const ttl = entry.ttl_seconds;
    if (ttl !== undefined && !(Number.isFinite(ttl) && ttl > 0)) {
      throw new StoreError('invalid', 'ttl_seconds must be a positive number');
    }
    return await this.#db.transaction(async (tx) => {
      const seq = await bump(tx, 'blacklist');
      const now = this.#now();
      const expires = ttl === undefined ? null : now + Math.round(ttl * 1000);
      // An entry deleted or expired earlier comes back as a new one (new id, new provenance);
      // a live one only ever has its life extended: never (NULL) beats any time, later beats
      // earlier.
      const row = await tx.get<RawBlacklist>(
        `INSERT INTO blacklist (id, field_path, value, display_hint, expires_at, source_decision_id, inserted_at, seq, deleted_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)
         ON CONFLICT (field_path, value) DO UPDATE SET
           id = CASE WHEN ${GONE} THEN excluded.id ELSE blacklist.id END,
           inserted_at = CASE WHEN ${GONE} THEN excluded.inserted_at ELSE blacklist.inserted_at END,
           source_decision_id = CASE WHEN ${GONE} THEN excluded.source_decision_id
             ELSE COALESCE(blacklist.source_decision_id, excluded.source_decision_id) END,
           expires_at = CASE
             WHEN ${GONE} THEN excluded.expires_at
             WHEN blacklist.expires_at IS NULL OR excluded.expires_at IS NULL THEN NULL
             WHEN excluded.expires_at > blacklist.expires_at THEN excluded.expires_at
             ELSE blacklist.expires_at END,
           seq = excluded.seq,
           deleted_at = NULL
         RETURNING *`,
        [
          newId('bl', now),
          entry.field_path,
          entry.value,
          displayHint(entry.value),
          expires,
          entry.source_decision_id ?? null,
          now,
          seq,
        ],
      );
      await tx.notify('blacklist');
      return this.#blacklist(row!);
    });
  }

  async getBlacklist(id: string): Promise<BlacklistEntry | undefined> {
    const row = await this.#db.get<RawBlacklist>(
      `SELECT * FROM blacklist WHERE id = ? AND ${LIVE}`,
      [id, this.#now()],
    );
    return row && this.#blacklist(row);
  }

  async listBlacklist(filter: { field_path?: string | undefined } = {}): Promise<BlacklistEntry[]> {
    const now = this.#now();
    const rows =
      filter.field_path === undefined
        ? await this.#db.all<RawBlacklist>(
            `SELECT * FROM blacklist WHERE ${LIVE} ORDER BY inserted_at, id`,
            [now],
          )
        : await this.#db.all<RawBlacklist>(
            `SELECT * FROM blacklist WHERE field_path = ? AND ${LIVE} ORDER BY inserted_at, id`,
            [filter.field_path, now],
          );
    return rows.map((r) => this.#blacklist(r));
  }

  async deleteBlacklist(id: string): Promise<boolean> {
    return await this.#db.transaction(async (tx) => {
      const seq = await bump(tx, 'blacklist');
      const changed = await tx.run(
        'UPDATE blacklist SET deleted_at = ?, seq = ? WHERE id = ? AND deleted_at IS NULL',
        [this.#now(), seq, id],
      );
      if (changed > 0) await tx.notify('blacklist');
      return changed > 0;
    });
  }

  async blacklistChanges(sinceSeq: number, limit = 5_000): Promise<BlacklistChange[]> {
    const rows = await this.#db.all<RawBlacklist>(
      `SELECT seq, field_path, value, expires_at, deleted_at FROM blacklist
       WHERE seq > ? ORDER BY seq LIMIT ?`,
      [sinceSeq, clampLimit(limit)],
    );
    return rows.map((r) => ({
      seq: Number(r.seq),
      field_path: r.field_path,
      value: r.value,
      expires_at_ms: r.expires_at === null ? null : Number(r.expires_at),
      deleted: r.deleted_at !== null,
    }));
  }

  async blacklistGeneration(): Promise<{ seq: number; purges: number }> {
    const rows = await this.#db.all<{ topic: string; generation: number }>(
      "SELECT topic, generation FROM change_feed WHERE topic IN ('blacklist', 'blacklist_purge')",
    );
    const gen = (t: string) => Number(rows.find((r) => r.topic === t)?.generation ?? 0);
    return { seq: gen('blacklist'), purges: gen('blacklist_purge') };
  }

  watchBlacklist(onChange: () => void): Unsubscribe {
    const a = this.#feed.subscribe('blacklist', onChange);
    const b = this.#feed.subscribe('blacklist_purge', onChange);
    return () => {
      a();
      b();
    };
  }

  async purgeBlacklist(olderThanMs: number): Promise<number> {
    return await this.#db.transaction(async (tx) => {
      const cutoff = this.#now() - olderThanMs;
      const n = await tx.run(
        `DELETE FROM blacklist WHERE (deleted_at IS NOT NULL AND deleted_at < ?)
         OR (expires_at IS NOT NULL AND expires_at < ?)`,
        [cutoff, cutoff],
      );
      // A follower that had not yet seen a purged tombstone would keep the entry forever:
      // followers reload in full when this generation moves.
      if (n > 0) {
        await bump(tx, 'blacklist_purge');
        await tx.notify('blacklist');
      }
      return n;
    });
  }

  // ---- lifecycle events -----------------------------------------------------------------------

  #event(r: RawEvent): LifecycleEvent {
    return {
      id: r.id,
      type: r.type,
      decision_id: r.decision_id,
      occurred_at: iso(r.occurred_at),
      data: this.#db.fromJson(r.data) as Record<string, unknown>,
      received_at: iso(r.received_at),
    };
  }

  async insertEvent(input: LifecycleEventInput): Promise<LifecycleEvent> {
    const now = this.#now();
    const id = input.id ?? newId('evt', now);
    await this.#db.run(
      `INSERT INTO lifecycle_events (id, type, decision_id, occurred_at, data, received_at)
       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
      [
        id,
        input.type,
        input.decision_id,
        toMs(input.occurred_at),
        toJson(input.data),
        input.received_at === undefined ? now : toMs(input.received_at),
      ],
    );
    const row = await this.#db.get<RawEvent>('SELECT * FROM lifecycle_events WHERE id = ?', [id]);
    return this.#event(row!);
  }

  async listEvents(decisionId: string): Promise<LifecycleEvent[]> {
    const rows = await this.#db.all<RawEvent>(
      'SELECT * FROM lifecycle_events WHERE decision_id = ? ORDER BY occurred_at, id',
      [decisionId],
    );
    return rows.map((r) => this.#event(r));
  }

  // ---- tokens ---------------------------------------------------------------------------------

  #token(r: RawToken): TokenRow {
    return {
      id: r.id,
      name: r.name,
      scopes: this.#db.fromJson(r.scopes) as string[],
      created_at: iso(r.created_at),
      revoked_at: isoOrNull(r.revoked_at),
    };
  }

  async createToken(input: { name: string; scopes: string[] }): Promise<CreatedToken> {
    const token = `vgl_${randomBytes(32).toString('base64url')}`;
    const row = await this.#insertToken(token, input.name, input.scopes);
    return { ...row, token };
  }

  async importToken(input: { token: string; name: string; scopes: string[] }): Promise<TokenRow> {
    checkText('token', input.token);
    // A revoked imported token stays revoked: revocation is an operator's explicit act.
    return this.#insertToken(input.token, input.name, input.scopes);
  }

  async #insertToken(token: string, name: string, scopes: string[]): Promise<TokenRow> {
    const now = this.#now();
    const hash = hashToken(token);
    await this.#db.run(
      `INSERT INTO tokens (id, name, scopes, token_hash, created_at, revoked_at)
       VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT (token_hash) DO NOTHING`,
      [newId('tok', now), name, toJson(scopes), hash, now],
    );
    const row = await this.#db.get<RawToken>(
      'SELECT id, name, scopes, created_at, revoked_at FROM tokens WHERE token_hash = ?',
      [hash],
    );
    return this.#token(row!);
  }

  async findToken(plaintext: string): Promise<TokenRow | undefined> {
    const row = await this.#db.get<RawToken>(
      `SELECT id, name, scopes, created_at, revoked_at FROM tokens
       WHERE token_hash = ? AND revoked_at IS NULL`,
      [hashToken(plaintext)],
    );
    return row && this.#token(row);
  }

  async listTokens(): Promise<TokenRow[]> {
    const rows = await this.#db.all<RawToken>(
      'SELECT id, name, scopes, created_at, revoked_at FROM tokens ORDER BY created_at, id',
    );
    return rows.map((r) => this.#token(r));
  }

  async revokeToken(id: string): Promise<boolean> {
    const changed = await this.#db.run(
      'UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?',
      [this.#now(), id],
    );
    return changed > 0;
  }

  // ---- integrations ---------------------------------------------------------------------------

  #integration(r: RawIntegration): IntegrationRow {
    return {
      slug: r.slug,
      kind: r.kind,
      document: this.#db.fromJson(r.document),
      updated_at: iso(r.updated_at),
    };
  }

  async putIntegration(input: {
    slug: string;
    kind: string;
    document: unknown;
  }): Promise<IntegrationRow> {
    checkText('slug', input.slug);
    const row = await this.#db.get<RawIntegration>(
      `INSERT INTO integrations (slug, kind, document, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (slug) DO UPDATE SET kind = excluded.kind, document = excluded.document,
         updated_at = excluded.updated_at
       RETURNING *`,
      [input.slug, input.kind, toJson(input.document), this.#now()],
    );
    return this.#integration(row!);
  }

  async getIntegration(slug: string): Promise<IntegrationRow | undefined> {
    const row = await this.#db.get<RawIntegration>('SELECT * FROM integrations WHERE slug = ?', [
      slug,
    ]);
    return row && this.#integration(row);
  }

  async listIntegrations(): Promise<IntegrationRow[]> {
    const rows = await this.#db.all<RawIntegration>('SELECT * FROM integrations ORDER BY slug');
    return rows.map((r) => this.#integration(r));
  }

  async deleteIntegration(slug: string): Promise<boolean> {
    return (await this.#db.run('DELETE FROM integrations WHERE slug = ?', [slug])) > 0;
  }

  // ---- playbooks ------------------------------------------------------------------------------

  #playbook(r: RawPlaybook): PlaybookRow {
    return {
      name: r.name,
      version: Number(r.version),
      document: this.#db.fromJson(r.document),
      updated_at: iso(r.updated_at),
    };
  }

  async putPlaybook(input: { name: string; document: unknown }): Promise<PlaybookRow> {
    checkText('name', input.name);
    return await this.#db.transaction(async (tx) => {
      const now = this.#now();
      const doc = toJson(input.document);
      // The upsert's row lock (PostgreSQL) or the single writer (SQLite) makes the version
      // increment atomic; a deleted playbook's row continues its numbering.
      const row = await tx.get<RawPlaybook>(
        `INSERT INTO playbooks (name, version, document, updated_at, deleted_at) VALUES (?, 1, ?, ?, NULL)
         ON CONFLICT (name) DO UPDATE SET version = playbooks.version + 1,
           document = excluded.document, updated_at = excluded.updated_at, deleted_at = NULL
         RETURNING name, version, document, updated_at`,
        [input.name, doc, now],
      );
      await tx.run(
        'INSERT INTO playbook_versions (name, version, document, created_at) VALUES (?, ?, ?, ?)',
        [input.name, row!.version, doc, now],
      );
      return this.#playbook(row!);
    });
  }

  async getPlaybook(name: string, version?: number): Promise<PlaybookRow | undefined> {
    const row =
      version === undefined
        ? await this.#db.get<RawPlaybook>(
            `SELECT name, version, document, updated_at FROM playbooks
             WHERE name = ? AND deleted_at IS NULL`,
            [name],
          )
        : await this.#db.get<RawPlaybook>(
            `SELECT name, version, document, created_at AS updated_at FROM playbook_versions
             WHERE name = ? AND version = ?`,
            [name, version],
          );
    return row && this.#playbook(row);
  }

  async listPlaybooks(): Promise<PlaybookRow[]> {
    const rows = await this.#db.all<RawPlaybook>(
      `SELECT name, version, document, updated_at FROM playbooks
       WHERE deleted_at IS NULL ORDER BY name`,
    );
    return rows.map((r) => this.#playbook(r));
  }

  async deletePlaybook(name: string): Promise<boolean> {
    const changed = await this.#db.run(
      'UPDATE playbooks SET deleted_at = ? WHERE name = ? AND deleted_at IS NULL',
      [this.#now(), name],
    );
    return changed > 0;
  }

  // ---- outbox ---------------------------------------------------------------------------------

  #outbox(r: RawOutbox): OutboxRow {
    return {
      id: r.id,
      kind: r.kind,
      key: r.key,
      payload: this.#db.fromJson(r.payload),
      created_at: iso(r.created_at),
      attempts: Number(r.attempts),
      next_attempt_at: iso(r.next_attempt_at),
      lease_until: isoOrNull(r.lease_until),
      delivered_at: isoOrNull(r.delivered_at),
      last_error: r.last_error,
    };
  }

  async enqueue(input: OutboxInput): Promise<OutboxRow> {
    // One autocommit INSERT: the caller awaits it on the answer path.
    const row = await this.#db.get<RawOutbox>(
      `${OUTBOX_INSERT} RETURNING *`,
      outboxValues(input, this.#now()),
    );
    return this.#outbox(row!);
  }

  async enqueueWithDecision(input: OutboxInput, decision: DecisionInsert): Promise<void> {
    const item = outboxValues(input, this.#now());
    const row = decisionValues(decision);
    // One transaction, one commit: the caller awaits it on the answer path.
    await this.#db.transaction(async (tx) => {
      await tx.run(OUTBOX_INSERT, item);
      await tx.insertMany('decisions', DECISION_COLUMNS, [row], DECISION_ON_CONFLICT);
    });
  }

  async claim(batch: number, leaseMs: number): Promise<OutboxRow[]> {
    const now = this.#now();
    const limit = Math.max(1, Math.min(Math.trunc(batch), LIST_MAX));
    // One statement: atomic in SQLite (a write statement holds the write lock from its start);
    // in PostgreSQL, SKIP LOCKED hands concurrent claimers disjoint rows and a row leased by a
    // claimer that committed first is re-checked against the lease condition and left out.
    const rows = await this.#db.all<RawOutbox>(
      `UPDATE outbox SET lease_until = ?, attempts = attempts + 1
       WHERE id IN (
         SELECT id FROM outbox
         WHERE delivered_at IS NULL AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)
         ORDER BY next_attempt_at, id LIMIT ?${this.#db.skipLocked}
       )
       RETURNING *`,
      [now + Math.max(0, leaseMs), now, now, limit],
    );
    return rows
      .map((r) => this.#outbox(r))
      .sort((a, b) => cmp(a.next_attempt_at, b.next_attempt_at) || cmp(a.id, b.id));
  }

  async markDelivered(ids: string[]): Promise<void> {
    const now = this.#now();
    for (let i = 0; i < ids.length; i += INSERT_CHUNK) {
      const chunk = ids.slice(i, i + INSERT_CHUNK);
      await this.#db.run(
        `UPDATE outbox SET delivered_at = ?, lease_until = NULL
         WHERE id IN (${chunk.map(() => '?').join(', ')}) AND delivered_at IS NULL`,
        [now, ...chunk],
      );
    }
  }

  async markFailed(id: string, error: string, nextAttemptAt: string | number): Promise<void> {
    await this.#db.run(
      `UPDATE outbox SET last_error = ?, next_attempt_at = ?, lease_until = NULL
       WHERE id = ? AND delivered_at IS NULL`,
      [String(error).slice(0, ERROR_TEXT_MAX), toMs(nextAttemptAt), id],
    );
  }

  async outboxStats(): Promise<OutboxStats> {
    const row = await this.#db.get<{ size: number; oldest: number | null }>(
      'SELECT COUNT(*) AS size, MIN(created_at) AS oldest FROM outbox WHERE delivered_at IS NULL',
    );
    const oldest = row?.oldest;
    return {
      size: Number(row?.size ?? 0),
      oldestAgeMs:
        oldest === null || oldest === undefined ? 0 : Math.max(0, this.#now() - Number(oldest)),
    };
  }

  async purgeOutbox(deliveredBefore: string | number): Promise<number> {
    return this.#db.run('DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?', [
      toMs(deliveredBefore),
    ]);
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  async ping(): Promise<void> {
    await this.#db.get('SELECT 1 AS ok');
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#feed.close();
    await this.#db.close();
  }
}

/** The blacklist row is deleted or expired, as seen by the upsert (excluded.inserted_at = now). */
const GONE =
  '(blacklist.deleted_at IS NOT NULL OR (blacklist.expires_at IS NOT NULL AND blacklist.expires_at <= excluded.inserted_at))';
/** Neither deleted nor expired at the `?` time. */
const LIVE = 'deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?)';

async function bump(tx: SqlExecutor, topic: string): Promise<number> {
  const row = await tx.get<{ generation: number }>(
    'UPDATE change_feed SET generation = generation + 1 WHERE topic = ? RETURNING generation',
    [topic],
  );
  if (!row) throw new StoreError('internal', `change_feed has no ${topic} row`);
  return Number(row.generation);
}

function checkText(name: string, value: unknown): void {
  if (typeof value !== 'string' || value.length === 0) {
    throw new StoreError('invalid', `${name} must be a non-empty string`);
  }
}

function clampLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return LIST_DEFAULT;
  return Math.max(1, Math.min(Math.trunc(limit), LIST_MAX));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function notFound(what: string, id: string): StoreError {
  return new StoreError('not_found', `${what} ${id} not found`);
}

function notDraft(id: string, status: string): StoreError {
  return new StoreError('not_draft', `ruleset ${id} is ${status}, not DRAFT`);
}

const OUTBOX_INSERT = `INSERT INTO outbox (id, kind, key, payload, created_at, attempts, next_attempt_at)
  VALUES (?, ?, ?, ?, ?, 0, ?)`;

function outboxValues(input: OutboxInput, now: number): SqlValue[] {
  return [
    newId('obx', now),
    input.kind,
    input.key,
    toJson(input.payload),
    now,
    input.next_attempt_at === undefined ? now : toMs(input.next_attempt_at),
  ];
}

const DECISION_COLUMNS = [
  'id',
  'created_at',
  'context',
  'decision',
  'ruleset_id',
  'session',
  'credential_fingerprint',
  'record',
] as const;

/** Decisions are idempotent on id. */
const DECISION_ON_CONFLICT = ' ON CONFLICT (id) DO NOTHING';

/** A decision row's values in DECISION_COLUMNS order. */
export function decisionValues(d: DecisionInsert): SqlValue[] {
  return [
    d.id,
    toMs(d.created_at),
    d.context,
    d.decision,
    d.ruleset_id,
    d.session,
    d.credential_fingerprint,
    toJson(d.record),
  ];
}
