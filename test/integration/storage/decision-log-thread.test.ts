// The decision log's writer thread against a real SQLite file: what it writes is what the store
// reads, read-your-write holds while the batch is on the thread, and a bad record costs only itself.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DecisionLog, type DecisionLogRecord } from '../../../storage/decision-log.ts';
import { SqliteDecisionWriter } from '../../../storage/decision-log-thread.ts';
import type { StoreError } from '../../../storage/errors.ts';
import { SQLITE_FILE, openStore, type Store } from '../../../storage/store.ts';

function record(
  i: number,
  extra: Record<string, unknown> = {},
): DecisionLogRecord & Record<string, unknown> {
  return {
    response: {
      id: `dec_t${String(i).padStart(6, '0')}`,
      decision: i % 2 ? 'ALLOW' : 'REVIEW',
      context: 'checkout',
      ruleset_id: null,
      credential_fingerprint: `crd_${i}`,
    },
    session: `sess_${i}`,
    created_at: new Date(1_700_000_000_000 + i).toISOString(),
    ...extra,
  };
}

describe('SqliteDecisionWriter', () => {
  let dir: string;
  let store: Store;
  let writer: SqliteDecisionWriter;
  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'vigil-logthread-'));
    store = await openStore({ dataDir: dir });
    writer = await SqliteDecisionWriter.open(path.join(dir, SQLITE_FILE));
  });
  afterEach(async () => {
    await writer.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores batches the main connection reads back, idempotently on id', async () => {
    const log = new DecisionLog(store, { flushIntervalMs: 5, batchSize: 100, writer });
    for (let i = 0; i < 1_000; i++) log.append(record(i));
    // Read-your-write while batches are on the thread.
    expect((await log.get('dec_t000999'))?.response.decision).toBe('ALLOW');
    await log.flush();
    expect(log.stats()).toMatchObject({ written: 1_000, buffered: 0, rejected: 0 });
    const row = await store.getDecision('dec_t000010');
    expect(row).toMatchObject({
      decision: 'REVIEW',
      session: 'sess_10',
      credential_fingerprint: 'crd_10',
    });
    expect((row!.record as { response: { id: string } }).response.id).toBe('dec_t000010');
    // A batch retried after a lost acknowledgement is a no-op.
    await writer.insertDecisions([
      {
        id: 'dec_t000010',
        created_at: 1,
        context: 'x',
        decision: 'BLOCK',
        ruleset_id: null,
        session: null,
        credential_fingerprint: null,
        record: {},
      },
    ]);
    expect((await store.getDecision('dec_t000010'))?.decision).toBe('REVIEW');
    // Resolving goes through the main connection while the thread holds its own.
    expect(await log.resolve('dec_t000010', 'accept', null)).toBe('ok');
    await log.close();
  });

  it('rejects one unserializable record without losing its batch', async () => {
    const log = new DecisionLog(store, { flushIntervalMs: 5, batchSize: 10, writer });
    for (let i = 0; i < 10; i++) log.append(record(i, i === 3 ? { bad: 10n } : {}));
    await log.flush();
    expect(log.stats()).toMatchObject({ written: 9, rejected: 1 });
    expect(await store.getDecision('dec_t000003')).toBeUndefined();
    expect(await store.getDecision('dec_t000004')).toBeDefined();
    await log.close();
  });

  it('stores a record structured clone refuses as JSON.stringify would (a function left out)', async () => {
    const log = new DecisionLog(store, { flushIntervalMs: 5, batchSize: 10, writer });
    for (let i = 20; i < 25; i++)
      log.append(record(i, i === 22 ? { fn: () => 1, kept: 'yes' } : {}));
    await log.flush();
    expect(log.stats()).toMatchObject({ written: 5, rejected: 0 });
    const row = await store.getDecision('dec_t000022');
    expect(row?.record).toMatchObject({ kept: 'yes' });
    expect(row?.record).not.toHaveProperty('fn');
    await log.close();
  });

  it('fails with a stable code once closed', async () => {
    await writer.close();
    await expect(
      writer.insertDecisions([
        {
          id: 'dec_x',
          created_at: 1,
          context: 'x',
          decision: 'ALLOW',
          ruleset_id: null,
          session: null,
          credential_fingerprint: null,
          record: {},
        },
      ]),
    ).rejects.toMatchObject({ code: 'closed' } satisfies Partial<StoreError>);
  });
});

describe('WAL checkpoints off the main connection', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vigil-checkpoint-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const walBytes = () => statSync(path.join(dir, `${SQLITE_FILE}-wal`)).size;
  /**
   * ~6 MB of decision rows through the main connection, in batches; with `pauseMs`, a pause after
   * each (a WAL starts over only when a checkpoint has copied all of it before the next write).
   */
  async function writeThroughMain(store: Store, from: number, pauseMs = 0): Promise<void> {
    const log = new DecisionLog(store, { flushIntervalMs: 1, batchSize: 100 });
    for (let i = from; i < from + 3_000; i++) {
      log.append(record(i, { pad: 'x'.repeat(2_000) }));
      if (i % 100 === 99) {
        await log.flush();
        if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      }
    }
    await log.close();
  }

  it('a main connection with autoCheckpoint: false never checkpoints; the writer thread does', async () => {
    const store = await openStore({ dataDir: dir, sqlite: { autoCheckpoint: false } });
    try {
      // Nobody checkpoints: the WAL only grows, well past SQLite's 1,000-page threshold (~4 MB).
      await writeThroughMain(store, 0);
      const grown = walBytes();
      expect(grown).toBeGreaterThan(5_000_000);
      // The writer thread checkpoints on its timer: a complete checkpoint lets the next writes
      // start the WAL over, so as much again hardly grows the file (without: twice the size).
      const writer = await SqliteDecisionWriter.open(path.join(dir, SQLITE_FILE), {
        checkpointMs: 20,
      });
      try {
        await new Promise((r) => setTimeout(r, 200));
        await writeThroughMain(store, 3_000, 25);
        expect(walBytes()).toBeLessThan(grown * 1.3);
      } finally {
        await writer.close();
      }
      expect(await store.getDecision('dec_t005999')).toBeDefined();
    } finally {
      await store.close();
    }
  });
});
