// The two store adapters as test targets: each `create()` makes a fresh, empty database (a
// PostgreSQL database of its own, or a SQLite file in a temp dir) so test files and tests that
// need a virgin schema never collide.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { SQLITE_FILE, openStore, type Store } from '../../../storage/store.ts';

export interface Db {
  /** Opens one more store instance on this database (as another process would). */
  open(opts?: { now?: () => number }): Promise<Store>;
  /** Runs SQL straight on the database, outside the store. */
  query<T>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Where the store lives: the data dir (SQLite) or the URL (PostgreSQL). */
  location: { dataDir: string; databaseUrl?: string };
  drop(): Promise<void>;
}

export interface Target {
  name: 'sqlite' | 'postgres';
  create(): Promise<Db>;
}

export function sqliteTarget(): Target {
  return {
    name: 'sqlite',
    create() {
      const dataDir = mkdtempSync(path.join(tmpdir(), 'vigil-store-'));
      const opened: Store[] = [];
      return Promise.resolve<Db>({
        location: { dataDir },
        async open(opts = {}) {
          const s = await openStore({ dataDir, ...(opts.now ? { now: opts.now } : {}) });
          opened.push(s);
          return s;
        },
        async query<T>(sql: string, params: unknown[] = []) {
          await Promise.resolve();
          const db = new Database(path.join(dataDir, SQLITE_FILE));
          try {
            const st = db.prepare(sql);
            return (st.reader ? st.all(...params) : (st.run(...params), [])) as T[];
          } finally {
            db.close();
          }
        },
        async drop() {
          await Promise.all(opened.map((s) => s.close()));
          rmSync(dataDir, { recursive: true, force: true });
        },
      });
    },
  };
}

export function postgresTarget(adminUrl: string): Target {
  return {
    name: 'postgres',
    async create() {
      const name = `vigil_t_${randomBytes(6).toString('hex')}`;
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.end();
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      const databaseUrl = url.toString();
      const dataDir = mkdtempSync(path.join(tmpdir(), 'vigil-store-'));
      const opened: Store[] = [];
      return {
        location: { dataDir, databaseUrl },
        async open(opts = {}) {
          const s = await openStore({
            dataDir,
            databaseUrl,
            ...(opts.now ? { now: opts.now } : {}),
          });
          opened.push(s);
          return s;
        },
        async query<T>(sql: string, params: unknown[] = []) {
          const c = new pg.Client({ connectionString: databaseUrl });
          await c.connect();
          try {
            let n = 0;
            const text = sql.replace(/\?/g, () => `$${++n}`);
            return (await c.query(text, params)).rows as T[];
          } finally {
            await c.end();
          }
        },
        async drop() {
          await Promise.all(opened.map((s) => s.close()));
          const c = new pg.Client({ connectionString: adminUrl });
          await c.connect();
          await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
          await c.end();
          rmSync(dataDir, { recursive: true, force: true });
        },
      };
    },
  };
}

export async function waitFor<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
  everyMs = 10,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
