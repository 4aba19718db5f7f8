// The embedded adapter: one SQLite file in the data dir, shared by every Vigil process on the
// machine (proxy workers, the API, a separate worker). WAL lets readers run beside the one
// writer; busy_timeout makes a writer wait for another process's write instead of failing;
// every multi-statement write starts with BEGIN IMMEDIATE so it takes the write lock up front
// (a deferred transaction that reads first and writes later can fail with SQLITE_BUSY_SNAPSHOT
// when another process wrote in between, and the busy handler does not retry that).
//
// better-sqlite3 is synchronous, so a call is atomic with respect to this process's other
// JavaScript; only a transaction spans awaits. While one is open, every other call on the same
// file from this process waits its turn in JavaScript: on the same connection it would silently
// join the open transaction, and on a second connection (a second store on the same file) SQLite's
// busy handler would block the thread that has to finish the transaction: a deadlock until
// busy_timeout. Other processes wait in SQLite's busy handler, which is what it is for.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { StoreError } from './errors.ts';
import {
  MIGRATIONS,
  SCHEMA_MIGRATIONS_DDL,
  pendingMigrations,
  renderMigration,
} from './migrations.ts';
import type { SqlDriver, SqlExecutor, SqlValue } from './sql.ts';
import { SqlStore } from './sql-store.ts';
import type { Store } from './store.ts';

export interface SqliteOptions {
  /** The database file; its directory is created if missing. */
  file: string;
  now?: () => number;
  /** How long a write waits for another process's write, ms. Default 5,000. */
  busyTimeoutMs?: number;
  /** How often watchers read the change generations, ms. Default 200. */
  pollMs?: number;
  /**
   * NORMAL (default): a commit survives a crash of the process; a power loss may lose the last
   * commits but never corrupts the file. FULL: fsync at every commit, which blocks the event loop
   * for the length of an fsync on every outbox enqueue.
   */
  synchronous?: 'NORMAL' | 'FULL';
  /**
   * false: this connection never checkpoints the WAL (`wal_autocheckpoint = 0`), another one
   * must (the decision log's writer thread does, every second). For a connection on an answer
   * path: SQLite runs the checkpoint inside the commit that takes the WAL past 1,000 pages,
   * copying pages and syncing the file on the caller's thread. Default true.
   */
  autoCheckpoint?: boolean;
  /** Background errors (change feed reads); never thrown. */
  onError?: (err: unknown) => void;
}

const STATEMENT_CACHE_MAX = 256;

type Statement = Database.Statement<unknown[], unknown>;

/** One per database file in this process, shared by every connection to it. */
interface FileTurn {
  locked: boolean;
  waiting: (() => void)[];
  users: number;
}

const turns = new Map<string, FileTurn>();

function turnFor(file: string): FileTurn {
  let t = turns.get(file);
  if (!t) {
    t = { locked: false, waiting: [], users: 0 };
    turns.set(file, t);
  }
  t.users++;
  return t;
}

class SqliteDriver implements SqlDriver {
  readonly dialect = 'sqlite' as const;
  readonly skipLocked = '';
  #db: Database.Database;
  #file: string;
  #statements = new Map<string, Statement>();
  #turn: FileTurn;
  #closed = false;
  #tx: SqlExecutor;

  constructor(db: Database.Database, file: string) {
    this.#db = db;
    this.#file = file;
    this.#turn = turnFor(file);
    this.#tx = {
      all: <T>(sql: string, params?: readonly SqlValue[]) =>
        Promise.resolve(this.#all<T>(sql, params)),
      get: <T>(sql: string, params?: readonly SqlValue[]) =>
        Promise.resolve(this.#all<T>(sql, params)[0]),
      run: (sql, params) => Promise.resolve(this.#run(sql, params)),
      insertMany: (table, columns, rows, suffix) => {
        this.#insertMany(table, columns, rows, suffix);
        return Promise.resolve();
      },
      notify: () => Promise.resolve(),
    };
  }

  #statement(sql: string): Statement {
    let st = this.#statements.get(sql);
    if (!st) {
      if (this.#closed) throw new StoreError('closed', 'the store is closed');
      if (this.#statements.size >= STATEMENT_CACHE_MAX) this.#statements.clear();
      st = this.#db.prepare(sql);
      this.#statements.set(sql, st);
    }
    return st;
  }

  #all<T>(sql: string, params: readonly SqlValue[] = []): T[] {
    return guard(() => {
      const st = this.#statement(sql);
      if (!st.reader) {
        st.run(...params);
        return [];
      }
      return st.all(...params) as T[];
    });
  }

  #run(sql: string, params: readonly SqlValue[] = []): number {
    return guard(() => {
      const st = this.#statement(sql);
      if (st.reader) return st.all(...params).length;
      return st.run(...params).changes;
    });
  }

  #insertMany(
    table: string,
    columns: readonly string[],
    rows: readonly SqlValue[][],
    suffix = '',
  ): void {
    // Inside a transaction, one prepared single-row statement run N times is as fast in SQLite
    // as a multi-row VALUES list, and keeps one cached statement whatever the batch size.
    const sql = `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})${suffix}`;
    guard(() => {
      const st = this.#statement(sql);
      for (const row of rows) st.run(...row);
    });
  }

  async #turnFor<T>(fn: () => T): Promise<T> {
    if (!this.#turn.locked) return fn();
    await this.#acquire();
    try {
      return fn();
    } finally {
      this.#release();
    }
  }

  async #acquire(): Promise<void> {
    const turn = this.#turn;
    if (!turn.locked) {
      turn.locked = true;
      return;
    }
    await new Promise<void>((resolve) => turn.waiting.push(resolve));
  }

  #release(): void {
    const turn = this.#turn;
    const next = turn.waiting.shift();
    // Hand the turn straight to the next waiter so nothing can slip in between.
    if (next) next();
    else turn.locked = false;
  }

  all<T>(sql: string, params?: readonly SqlValue[]): Promise<T[]> {
    return this.#turnFor(() => this.#all<T>(sql, params));
  }

  get<T>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined> {
    return this.#turnFor(() => this.#all<T>(sql, params)[0]);
  }

  run(sql: string, params?: readonly SqlValue[]): Promise<number> {
    return this.#turnFor(() => this.#run(sql, params));
  }

  insertMany(
    table: string,
    columns: readonly string[],
    rows: readonly SqlValue[][],
    suffix?: string,
  ): Promise<void> {
    return this.transaction((tx) => tx.insertMany(table, columns, rows, suffix));
  }

  notify(): Promise<void> {
    return Promise.resolve();
  }

  async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    await this.#acquire();
    try {
      guard(() => this.#statement('BEGIN IMMEDIATE').run());
      try {
        const result = await fn(this.#tx);
        guard(() => this.#statement('COMMIT').run());
        return result;
      } catch (err) {
        if (this.#db.open && this.#db.inTransaction) this.#db.exec('ROLLBACK');
        throw err;
      }
    } finally {
      this.#release();
    }
  }

  /** Journal mode and migrations, in this process's turn for the file (see the header). */
  async init(synchronous: 'NORMAL' | 'FULL', autoCheckpoint = true): Promise<void> {
    await this.#acquire();
    try {
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma(`synchronous = ${synchronous}`);
      if (!autoCheckpoint) this.#db.pragma('wal_autocheckpoint = 0');
      migrate(this.#db);
    } finally {
      this.#release();
    }
  }

  fromJson(raw: unknown): unknown {
    return typeof raw === 'string' ? JSON.parse(raw) : raw;
  }

  listen(): () => void {
    return () => {};
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#statements.clear();
      this.#db.close();
      if (--this.#turn.users === 0 && !this.#turn.locked) turns.delete(this.#file);
    }
    return Promise.resolve();
  }
}

function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw sqliteError(err);
  }
}

/** Maps better-sqlite3 errors onto the catalog; a StoreError passes through. */
export function sqliteError(err: unknown): Error {
  if (err instanceof StoreError) return err;
  const code = (err as { code?: unknown }).code;
  const text = typeof code === 'string' ? code : '';
  if (text.startsWith('SQLITE_CONSTRAINT_UNIQUE') || text === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    return new StoreError('conflict', 'a row with this key already exists', { cause: err });
  }
  if (text.startsWith('SQLITE_CONSTRAINT')) {
    return new StoreError('invalid', 'a value breaks a table constraint', { cause: err });
  }
  if (/^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|PROTOCOL|NOMEM)/.test(text)) {
    return new StoreError('unavailable', `the embedded database is unavailable (${text})`, {
      cause: err,
    });
  }
  if (err instanceof TypeError && /database connection is not open/i.test(err.message)) {
    return new StoreError('closed', 'the store is closed', { cause: err });
  }
  return new StoreError('internal', 'the embedded database failed', { cause: err });
}

/** Opens (creating if needed) the SQLite file and applies pending migrations. */
export async function openSqliteStore(opts: SqliteOptions): Promise<Store> {
  const file = path.resolve(opts.file);
  mkdirSync(path.dirname(file), { recursive: true });
  const busy = opts.busyTimeoutMs ?? 5_000;
  let db: Database.Database;
  try {
    // `timeout` is better-sqlite3's busy_timeout: set before anything that may need a lock.
    db = new Database(file, { timeout: busy });
  } catch (err) {
    throw sqliteError(err);
  }
  const driver = new SqliteDriver(db, file);
  try {
    await driver.init(opts.synchronous ?? 'NORMAL', opts.autoCheckpoint ?? true);
  } catch (err) {
    await driver.close();
    throw sqliteError(err);
  }
  return new SqlStore(driver, {
    now: opts.now ?? Date.now,
    pollMs: opts.pollMs ?? 200,
    ...(opts.onError ? { onError: opts.onError } : {}),
  });
}

/**
 * All pending migrations in one BEGIN IMMEDIATE transaction: a second process opening the same
 * file at the same moment waits on the write lock, then finds them applied.
 */
function migrate(db: Database.Database): void {
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec(SCHEMA_MIGRATIONS_DDL);
    const applied = (
      db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]
    ).map((r) => Number(r.version));
    const insert = db.prepare(
      'INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)',
    );
    for (const m of pendingMigrations(applied, MIGRATIONS)) {
      db.exec(renderMigration(m.sql, 'sqlite'));
      insert.run(m.version, m.name, Date.now());
    }
    db.exec('COMMIT');
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw err;
  }
}
