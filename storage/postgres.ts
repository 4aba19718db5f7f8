// The at-scale adapter: a pg Pool for queries and transactions, plus one dedicated connection
// that LISTENs for change notifications and reconnects by itself. BIGINT columns (our epoch-ms
// times and counters) come back as numbers: every value we store fits a double exactly, and the
// shared store code then sees the same types from both drivers.
import pg from 'pg';
import { StoreError } from './errors.ts';
import {
  MIGRATIONS,
  SCHEMA_MIGRATIONS_DDL,
  pendingMigrations,
  renderMigration,
} from './migrations.ts';
import { numberPlaceholders, type SqlDriver, type SqlExecutor, type SqlValue } from './sql.ts';
import { SqlStore } from './sql-store.ts';
import type { Store } from './store.ts';

export interface PostgresOptions {
  connectionString: string;
  now?: () => number;
  /** Pool size. Default 10. */
  poolMax?: number;
  /** Wait for a connection, ms. Default 5,000. */
  connectTimeoutMs?: number;
  /** Server-side statement timeout, ms. Default 15,000. */
  statementTimeoutMs?: number;
  /** Fallback poll of the change generations, ms (NOTIFY wakes watchers sooner). Default 1,000. */
  pollMs?: number;
  /** Longest pause between reconnect attempts of the LISTEN connection, ms. Default 5,000. */
  listenReconnectMaxMs?: number;
  /** Background errors (change feed reads, the LISTEN connection, idle pool clients); never thrown. */
  onError?: (err: unknown) => void;
}

/** One channel for every topic: the payload is only a hint, watchers re-read the generations. */
const CHANNEL = 'vigil_changes';
const INT8_OID = 20;

const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary'): unknown =>
    oid === INT8_OID && format !== 'binary'
      ? (v: string) => Number(v)
      : (pg.types.getTypeParser(
          oid,
          format ?? 'text',
        ) as unknown)) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * A checked-out client is no longer watched by the pool: a server that goes away between two
 * of its queries (a restart, a terminated backend) emits 'error' on the client, and an 'error'
 * event nobody listens to ends the process. Noted here instead; the next query fails and the
 * client is released as broken. Returns the undo.
 */
function guard(client: pg.PoolClient, onError: (err: Error) => void): () => void {
  client.on('error', onError);
  return () => client.off('error', onError);
}

export class PostgresDriver implements SqlDriver {
  readonly dialect = 'postgres' as const;
  readonly skipLocked = ' FOR UPDATE SKIP LOCKED';
  #pool: pg.Pool;
  #clientConfig: pg.ClientConfig;
  #reconnectMaxMs: number;
  #onError: ((err: unknown) => void) | undefined;
  #sql = new Map<string, string>();
  #closed = false;
  #listeners = new Set<PgListener>();
  #plain: SqlExecutor;

  constructor(
    pool: pg.Pool,
    clientConfig: pg.ClientConfig,
    reconnectMaxMs: number,
    onError?: (err: unknown) => void,
  ) {
    this.#pool = pool;
    this.#clientConfig = clientConfig;
    this.#reconnectMaxMs = reconnectMaxMs;
    this.#onError = onError;
    this.#plain = this.#executor(pool);
  }

  #text(sql: string): string {
    let t = this.#sql.get(sql);
    if (t === undefined) {
      if (this.#sql.size > 1_000) this.#sql.clear();
      t = numberPlaceholders(sql);
      this.#sql.set(sql, t);
    }
    return t;
  }

  #executor(q: pg.Pool | pg.PoolClient): SqlExecutor {
    const query = async <T>(sql: string, params: readonly SqlValue[] = []) => {
      if (this.#closed) throw new StoreError('closed', 'the store is closed');
      try {
        return await q.query<T & pg.QueryResultRow>(this.#text(sql), params as unknown[]);
      } catch (err) {
        throw pgError(err);
      }
    };
    return {
      all: async <T>(sql: string, params?: readonly SqlValue[]) =>
        (await query<T>(sql, params)).rows,
      get: async <T>(sql: string, params?: readonly SqlValue[]) =>
        (await query<T>(sql, params)).rows[0] as T | undefined,
      run: async (sql, params) => (await query(sql, params)).rowCount ?? 0,
      insertMany: async (table, columns, rows, suffix = '') => {
        if (rows.length === 0) return;
        const width = columns.length;
        const values = rows
          .map((_, r) => `(${columns.map((_c, c) => `$${r * width + c + 1}`).join(', ')})`)
          .join(', ');
        // Already numbered: goes straight to the server, not through #text.
        try {
          await q.query(
            `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${values}${suffix}`,
            rows.flat() as unknown[],
          );
        } catch (err) {
          throw pgError(err);
        }
      },
      notify: async (topic) => {
        await query('SELECT pg_notify(?, ?)', [CHANNEL, topic]);
      },
    };
  }

  all<T>(sql: string, params?: readonly SqlValue[]): Promise<T[]> {
    return this.#plain.all<T>(sql, params);
  }

  get<T>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined> {
    return this.#plain.get<T>(sql, params);
  }

  run(sql: string, params?: readonly SqlValue[]): Promise<number> {
    return this.#plain.run(sql, params);
  }

  insertMany(
    table: string,
    columns: readonly string[],
    rows: readonly SqlValue[][],
    suffix?: string,
  ): Promise<void> {
    return this.#plain.insertMany(table, columns, rows, suffix);
  }

  notify(topic: string): Promise<void> {
    return this.#plain.notify(topic);
  }

  async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreError('closed', 'the store is closed');
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw pgError(err);
    }
    let broken: Error | undefined;
    const unguard = guard(client, (err) => (broken ??= err));
    try {
      await client.query('BEGIN');
      const result = await fn(this.#executor(client));
      await client.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackErr) {
        // The connection itself is gone: do not hand it back to the pool.
        broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
      }
      throw pgError(err);
    } finally {
      unguard();
      client.release(broken);
    }
  }

  fromJson(raw: unknown): unknown {
    // `json` columns arrive parsed; a bare string only if a caller stored a JSON string.
    return raw;
  }

  listen(onNotify: () => void): () => void {
    const l = new PgListener(this.#clientConfig, onNotify, this.#reconnectMaxMs, this.#onError);
    this.#listeners.add(l);
    l.start();
    return () => {
      this.#listeners.delete(l);
      void l.stop();
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#listeners].map((l) => l.stop()));
    this.#listeners.clear();
    await this.#pool.end();
  }
}

/**
 * A LISTEN connection that survives database restarts: on any error or end it reconnects with
 * capped exponential backoff, and after every (re)connect it wakes the feed once, because
 * notifications sent while it was away are lost.
 */
class PgListener {
  #config: pg.ClientConfig;
  #onNotify: () => void;
  #maxDelayMs: number;
  #onError: ((err: unknown) => void) | undefined;
  #client: pg.Client | undefined;
  #timer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #stopped = false;

  constructor(
    config: pg.ClientConfig,
    onNotify: () => void,
    maxDelayMs: number,
    onError?: (err: unknown) => void,
  ) {
    this.#config = config;
    this.#onNotify = onNotify;
    this.#maxDelayMs = maxDelayMs;
    this.#onError = onError;
  }

  start(): void {
    void this.#connect();
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    const client = new pg.Client(this.#config);
    this.#client = client;
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      if (!this.#stopped) this.#onError?.(err);
      client.removeAllListeners('notification');
      void client.end().catch(() => {});
      if (this.#client === client) this.#client = undefined;
      this.#schedule();
    };
    client.on('error', fail);
    client.on('end', () => fail(new Error('LISTEN connection ended')));
    client.on('notification', () => this.#onNotify());
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      if (this.#stopped) {
        await client.end();
        return;
      }
      this.#attempt = 0;
      this.#onNotify();
    } catch (err) {
      fail(err);
    }
  }

  #schedule(): void {
    if (this.#stopped || this.#timer) return;
    const delay = Math.min(this.#maxDelayMs, 100 * 2 ** this.#attempt++);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#connect();
    }, delay);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const client = this.#client;
    this.#client = undefined;
    if (client) {
      client.removeAllListeners('end');
      client.removeAllListeners('notification');
      await client.end().catch(() => {});
    }
  }
}

const UNAVAILABLE_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/** Maps pg and socket errors onto the catalog; a StoreError passes through. */
export function pgError(err: unknown): Error {
  if (err instanceof StoreError) return err;
  const code = (err as { code?: unknown }).code;
  const c = typeof code === 'string' ? code : '';
  const message = err instanceof Error ? err.message : String(err);
  if (c === '23505') {
    return new StoreError('conflict', 'a row with this key already exists', { cause: err });
  }
  if (c === '40001' || c === '40P01' || c === '55P03') {
    return new StoreError('conflict', 'a concurrent change won; retry', { cause: err });
  }
  if (c.startsWith('23') || c.startsWith('22')) {
    return new StoreError('invalid', 'a value breaks a table constraint', { cause: err });
  }
  if (
    c.startsWith('08') ||
    c.startsWith('57') ||
    c === '53300' ||
    UNAVAILABLE_NODE_CODES.has(c) ||
    /timeout exceeded when trying to connect|Connection terminated|connection ended|Client has encountered a connection error/i.test(
      message,
    )
  ) {
    return new StoreError('unavailable', 'the database is unavailable', { cause: err });
  }
  if (/Cannot use a pool after calling end/i.test(message)) {
    return new StoreError('closed', 'the store is closed', { cause: err });
  }
  return new StoreError('internal', 'the database failed', { cause: err });
}

/** Opens a pool on `connectionString` and applies pending migrations under an advisory lock. */
export async function openPostgresStore(opts: PostgresOptions): Promise<Store> {
  const statementTimeout = opts.statementTimeoutMs ?? 15_000;
  const clientConfig: pg.ClientConfig = {
    connectionString: opts.connectionString,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5_000,
    statement_timeout: statementTimeout,
    // Client-side too: a server that stops answering (hung, partitioned) must not hang a caller.
    query_timeout: statementTimeout + 1_000,
    keepAlive: true,
    application_name: 'vigil',
    types,
  };
  const pool = new pg.Pool({ ...clientConfig, max: opts.poolMax ?? 10, idleTimeoutMillis: 30_000 });
  // An idle client that loses its connection emits on the pool; unhandled, that kills the process.
  pool.on('error', (err) => opts.onError?.(err));
  try {
    await migrate(pool);
  } catch (err) {
    await pool.end().catch(() => {});
    throw pgError(err);
  }
  const driver = new PostgresDriver(
    pool,
    clientConfig,
    opts.listenReconnectMaxMs ?? 5_000,
    opts.onError,
  );
  return new SqlStore(driver, {
    now: opts.now ?? Date.now,
    pollMs: opts.pollMs ?? 1_000,
    ...(opts.onError ? { onError: opts.onError } : {}),
  });
}

/**
 * Migrations under a session advisory lock keyed by the schema, so two instances starting
 * together run them once (the second waits, then finds them applied) — even the CREATE TABLE IF
 * NOT EXISTS of schema_migrations, which PostgreSQL does not make safe against a concurrent twin.
 */
async function migrate(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const unguard = guard(client, (err) => (broken ??= err));
  try {
    await client.query(
      "SELECT pg_advisory_lock(hashtext('vigil.migrations.' || current_schema()))",
    );
    try {
      await client.query(SCHEMA_MIGRATIONS_DDL);
      const { rows } = await client.query<{ version: number }>(
        'SELECT version FROM schema_migrations',
      );
      for (const m of pendingMigrations(
        rows.map((r) => Number(r.version)),
        MIGRATIONS,
      )) {
        await client.query('BEGIN');
        try {
          await client.query(renderMigration(m.sql, 'postgres'));
          await client.query(
            'INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)',
            [m.version, m.name, Date.now()],
          );
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {});
          throw err;
        }
      }
    } finally {
      await client.query(
        "SELECT pg_advisory_unlock(hashtext('vigil.migrations.' || current_schema()))",
      );
    }
  } catch (err) {
    broken = err instanceof Error ? err : new Error(String(err));
    throw err;
  } finally {
    unguard();
    client.release(broken);
  }
}
