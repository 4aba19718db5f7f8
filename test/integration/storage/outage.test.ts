// The store failing under the decision log and the change feed: SQLite locked by another
// connection, and a PostgreSQL of our own crashed and restarted on the same port.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionLog } from '../../../storage/decision-log.ts';
import { StoreError } from '../../../storage/errors.ts';
import { SQLITE_FILE, openStore, type Store } from '../../../storage/store.ts';
import { OwnPostgres } from './own-services.ts';
import { sleep, waitFor } from './targets.ts';

function rec(id: string) {
  return {
    response: {
      id,
      decision: 'ALLOW',
      context: 'outage',
      ruleset_id: null,
      credential_fingerprint: null,
    },
    session: null,
    created_at: new Date().toISOString(),
  };
}

describe('DecisionLog while SQLite is locked by another writer', () => {
  let dir: string;
  let store: Store;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'vigil-lock-'));
    // A blocked append would wait this long; far above a GC pause on a busy machine.
    store = await openStore({ dataDir: dir, sqlite: { busyTimeoutMs: 200 } });
  });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps appending (bounded, drops counted), retries with backoff, drains when the lock goes', async () => {
    const errors: unknown[] = [];
    const log = new DecisionLog(store, {
      flushIntervalMs: 5,
      batchSize: 10,
      maxBuffered: 100,
      retryMaxMs: 50,
      onError: (e) => errors.push(e),
    });
    const other = new Database(path.join(dir, SQLITE_FILE));
    other.exec('BEGIN IMMEDIATE');
    let appendMax = 0;
    for (let i = 0; i < 150; i++) {
      const t0 = performance.now();
      log.append(rec(`dec_lock${i}`));
      appendMax = Math.max(appendMax, performance.now() - t0);
    }
    await waitFor(() => log.stats().failures >= 3 || undefined, 3_000);
    expect(log.stats()).toMatchObject({ buffered: 100, dropped: 50, written: 0 });
    expect(errors[0]).toBeInstanceOf(StoreError);
    expect((errors[0] as StoreError).code).toBe('unavailable');
    await expect(log.flush()).rejects.toMatchObject({ code: 'unavailable' });
    // The newest are the ones kept, and readable from memory meanwhile.
    expect(await log.get('dec_lock149')).toBeDefined();
    other.exec('COMMIT');
    other.close();
    await waitFor(() => log.stats().buffered === 0 || undefined, 3_000);
    expect(log.stats()).toMatchObject({ written: 100, dropped: 50, consecutiveFailures: 0 });
    expect(await store.getDecision('dec_lock149')).toBeDefined();
    expect(await store.getDecision('dec_lock0')).toBeUndefined();
    // Never waited for the lock (that is ≥ 200 ms); 9.6 ms was seen once: a GC pause, not I/O.
    expect(appendMax).toBeLessThan(50);
    await log.close();
  });

  it('a record the store refuses costs only itself, not its batch', async () => {
    const log = new DecisionLog(store, { flushIntervalMs: 5, batchSize: 10 });
    const cyclic: Record<string, unknown> = rec('dec_bad');
    cyclic.self = cyclic; // JSON.stringify throws
    log.append(rec('dec_good1'));
    log.append(cyclic as unknown as ReturnType<typeof rec>);
    log.append(rec('dec_good2'));
    await log.flush();
    expect(log.stats()).toMatchObject({ written: 2, rejected: 1, buffered: 0 });
    expect(await store.getDecision('dec_good2')).toBeDefined();
    await log.close();
  });
});

describe('PostgreSQL crashed and restarted (own server)', () => {
  const pg = new OwnPostgres();
  beforeAll(() => pg.start());
  afterAll(() => pg.stop());

  it('reports unavailable, the decision log holds and drains, the change feed reconnects', async () => {
    const a = await openStore({
      dataDir: pg.dir,
      databaseUrl: pg.url,
      postgres: { connectTimeoutMs: 500, listenReconnectMaxMs: 200 },
    });
    const b = await openStore({
      dataDir: pg.dir,
      databaseUrl: pg.url,
      postgres: { connectTimeoutMs: 500, listenReconnectMaxMs: 200 },
    });
    try {
      const draft = await a.createRuleset({ name: 'r', context: 'outage', document: {} });
      let calls = 0;
      const unwatch = b.watchRulesets(() => calls++);
      await waitFor(() => calls >= 1 || undefined, 2_000);

      const log = new DecisionLog(a, { flushIntervalMs: 5, retryMaxMs: 100 });
      await pg.kill();
      log.append(rec('dec_pg1'));
      expect(await log.get('dec_pg1')).toBeDefined();
      await waitFor(() => log.stats().failures >= 1 || undefined, 5_000);
      const err = await a.getRuleset(draft.id).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreError);
      expect((err as StoreError).code).toBe('unavailable');

      await pg.restart();
      await waitFor(() => log.stats().buffered === 0 || undefined, 10_000);
      expect(await a.getDecision('dec_pg1')).toBeDefined();

      // The LISTEN connection came back by itself: an activation on one instance is seen by the
      // other within a second again.
      await sleep(500);
      const before = calls;
      const t0 = performance.now();
      await a.activate(draft.id);
      await waitFor(() => calls > before || undefined, 1_000, 5);
      console.log(
        `[postgres] after a crash and restart, watchRulesets fired ${(performance.now() - t0).toFixed(0)} ms after the activation`,
      );
      unwatch();
      await log.close();
    } finally {
      await a.close();
      await b.close();
    }
  });
});
