// A PostgreSQL server that drops a connection while a transaction holds it between two queries
// (a restart, a terminated backend) must fail that transaction, not the process: the pool does
// not watch a checked-out client, and an unheard 'error' event crashed `vigil api` whenever
// PostgreSQL stopped under REVIEW traffic (the outbox insert runs in a transaction).
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { PostgresDriver } from '../../../storage/postgres.ts';
import { postgresTarget, type Db } from './targets.ts';

let db: Db;
let pool: pg.Pool;
let admin: pg.Client;

beforeAll(async () => {
  db = await postgresTarget(inject('services').databaseUrl).create();
  const connectionString = db.location.databaseUrl!;
  pool = new pg.Pool({ connectionString, max: 2 });
  pool.on('error', () => {});
  admin = new pg.Client({ connectionString });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await pool?.end();
  await db?.drop();
});

it('a connection dropped between two queries of a transaction fails the transaction only', async () => {
  const driver = new PostgresDriver(pool, { connectionString: db.location.databaseUrl! }, 1_000);
  const run = driver.transaction(async (tx) => {
    const me = await tx.get<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    await admin.query('SELECT pg_terminate_backend($1)', [me!.pid]);
    // The termination arrives now, while no query of this client is running.
    await sleep(300);
    await tx.run('SELECT 1');
  });
  await expect(run).rejects.toBeDefined();
  // The broken client was not handed back: the driver goes on with a fresh one.
  expect(await driver.get<{ one: number }>('SELECT 1 AS one')).toEqual({ one: 1 });
});
