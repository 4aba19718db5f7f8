// The narrow driver seam the shared store logic runs on. Queries are written once, with `?`
// placeholders; the PostgreSQL driver renumbers them to `$n`. Everything dialect-specific the
// queries need is a method or flag here, so storage/sql-store.ts holds no `if (sqlite)`.
import { StoreError } from './errors.ts';
import type { Dialect } from './store.ts';

export type SqlValue = string | number | bigint | null;

export interface SqlExecutor {
  all<T>(sql: string, params?: readonly SqlValue[]): Promise<T[]>;
  get<T>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined>;
  /** Returns the number of rows changed. */
  run(sql: string, params?: readonly SqlValue[]): Promise<number>;
  /** Many rows through one statement shape, inside the current transaction. */
  insertMany(
    table: string,
    columns: readonly string[],
    rows: readonly SqlValue[][],
    suffix?: string,
  ): Promise<void>;
  /** Wakes the other instances' change watchers when this transaction commits (PG NOTIFY). */
  notify(topic: string): Promise<void>;
}

export interface SqlDriver extends SqlExecutor {
  readonly dialect: Dialect;
  /** ` FOR UPDATE SKIP LOCKED` where row locks exist; SQLite serializes writers instead. */
  readonly skipLocked: string;
  /** A write transaction: serialized against every other writer from its first statement. */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Decodes a JSON column as the driver returns it. */
  fromJson(raw: unknown): unknown;
  /** Starts delivering `onNotify` for other instances' `notify` calls (no-op where polling). */
  listen(onNotify: () => void): () => void;
  close(): Promise<void>;
}

/** `?` → `$1, $2, …`, leaving quoted literals and identifiers alone. */
export function numberPlaceholders(sql: string): string {
  let out = '';
  let n = 0;
  let quote: string | undefined;
  for (const ch of sql) {
    if (quote) {
      if (ch === quote) quote = undefined;
      out += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      out += ch;
    } else if (ch === '?') {
      out += `$${++n}`;
    } else {
      out += ch;
    }
  }
  return out;
}

export function toJson(value: unknown): string {
  return JSON.stringify(value ?? null);
}

/** ISO-8601 (or epoch ms) → epoch ms; throws `invalid` on garbage rather than storing NaN. */
export function toMs(value: string | number): number {
  const ms = typeof value === 'number' ? value : Date.parse(value);
  if (!Number.isFinite(ms)) throw new StoreError('invalid', `not a time: ${String(value)}`);
  return Math.trunc(ms);
}

export function isoOrNull(ms: number | null | undefined): string | null {
  return ms === null || ms === undefined ? null : new Date(Number(ms)).toISOString();
}

export function iso(ms: number): string {
  return new Date(Number(ms)).toISOString();
}
