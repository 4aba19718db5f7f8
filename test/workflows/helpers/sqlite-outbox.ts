// The relay's outbox port over a real SQLite table in a temp dir (better-sqlite3): the same
// lease/claim/mark semantics as storage/'s outbox, small enough to read at a glance.
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import type { RelayItem, RelayOutbox } from '../../../activities/relay.ts';

export interface SqliteOutbox extends RelayOutbox {
  enqueue(key: string, payload: unknown): string;
  undelivered(): number;
  close(): void;
}

interface Row {
  id: string;
  key: string;
  payload: string;
  attempts: number;
}

export function openSqliteOutbox(file: string): SqliteOutbox {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(`CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    delivered_at INTEGER,
    last_error TEXT
  )`);
  const insert = db.prepare(
    'INSERT INTO outbox (id, key, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)',
  );
  const claim = db.prepare<[number, number, number, number], Row>(
    `UPDATE outbox SET lease_until = ?, attempts = attempts + 1
     WHERE id IN (SELECT id FROM outbox
                  WHERE delivered_at IS NULL AND next_attempt_at <= ?
                    AND (lease_until IS NULL OR lease_until <= ?)
                  ORDER BY next_attempt_at, created_at, id LIMIT ?)
     RETURNING id, key, payload, attempts`,
  );
  const delivered = db.prepare(
    'UPDATE outbox SET delivered_at = ?, lease_until = NULL WHERE id = ? AND delivered_at IS NULL',
  );
  const failed = db.prepare(
    `UPDATE outbox SET last_error = ?, next_attempt_at = ?, lease_until = NULL
     WHERE id = ? AND delivered_at IS NULL`,
  );
  const stats = db.prepare<[], { size: number; oldest: number | null }>(
    'SELECT COUNT(*) AS size, MIN(created_at) AS oldest FROM outbox WHERE delivered_at IS NULL',
  );
  let seq = 0;
  return {
    enqueue(key, payload) {
      const id = `obx_${String(++seq).padStart(6, '0')}_${randomUUID().slice(0, 8)}`;
      const now = Date.now();
      insert.run(id, key, JSON.stringify(payload), now, now);
      return id;
    },
    claim(batch, leaseMs) {
      const now = Date.now();
      const rows = claim.all(now + leaseMs, now, now, batch);
      return Promise.resolve(
        rows.map((r): RelayItem => ({
          id: r.id,
          key: r.key,
          payload: JSON.parse(r.payload) as unknown,
          attempts: r.attempts,
        })),
      );
    },
    markDelivered(ids) {
      const now = Date.now();
      db.transaction(() => {
        for (const id of ids) delivered.run(now, id);
      })();
      return Promise.resolve();
    },
    markFailed(id, error, nextAttemptAt) {
      failed.run(error, nextAttemptAt, id);
      return Promise.resolve();
    },
    stats() {
      const r = stats.get();
      return Promise.resolve({
        size: r?.size ?? 0,
        oldestAgeMs: r?.oldest ? Date.now() - r.oldest : 0,
      });
    },
    undelivered: () => stats.get()?.size ?? 0,
    close: () => db.close(),
  };
}
