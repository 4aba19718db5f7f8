// The decision log's writer thread (see decision-log-thread.ts): its own connection to the
// embedded SQLite file, one BEGIN IMMEDIATE transaction per batch. Only erasable TypeScript and
// no project imports: the thread loads this file on its own, outside any bundler.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

interface Init {
  file: string;
  busyTimeoutMs: number;
  synchronous: 'NORMAL' | 'FULL';
  /** How often this connection checkpoints the WAL, ms (0: only SQLite's own auto-checkpoint). */
  checkpointMs: number;
}

/** One decision row in column order: id, created_at, context, decision, ruleset_id, session, credential_fingerprint, record (JSON). */
type Row = [string, number, string, string, string | null, string | null, string | null, string];

type Request = { n: number; rows: Row[] } | { n: number; close: true };

const port = parentPort!;
const init = workerData as Init;
let db: Database.Database | undefined;
let insertAll: ((rows: Row[]) => void) & { immediate: (rows: Row[]) => void };

function errorOf(err: unknown): { code: string; message: string } {
  const code = (err as { code?: unknown }).code;
  return {
    code: typeof code === 'string' ? code : 'ERR_UNKNOWN',
    message: err instanceof Error ? err.message : String(err),
  };
}

function open(): void {
  db = new Database(init.file, { timeout: init.busyTimeoutMs });
  // Per connection: the main connection set WAL on the file already; synchronous is not shared.
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${init.synchronous}`);
  const insert = db.prepare(
    `INSERT INTO decisions (id, created_at, context, decision, ruleset_id, session,
       credential_fingerprint, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
  );
  insertAll = db.transaction((rows: Row[]) => {
    for (const r of rows) insert.run(r);
  });
}

// The process's main connection leaves checkpoints to this thread (`autoCheckpoint: false` in
// sqlite.ts): a checkpoint copies pages into the database file and syncs it, milliseconds that
// on the main thread landed in the answer of whichever REVIEW committed past the threshold.
// PASSIVE: never waits for a writer or a reader; what it cannot copy now waits for the next.
if (init.checkpointMs > 0) {
  setInterval(() => {
    try {
      db?.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // Busy or closing: the next round tries again.
    }
  }, init.checkpointMs).unref();
}

try {
  open();
  port.postMessage({ ready: true });
} catch (err) {
  port.postMessage({ ready: false, error: errorOf(err) });
}

port.on('message', (msg: Request) => {
  if ('close' in msg) {
    db?.close();
    db = undefined;
    port.postMessage({ n: msg.n });
    port.close();
    return;
  }
  try {
    if (!db) open();
    insertAll.immediate(msg.rows);
    port.postMessage({ n: msg.n });
  } catch (err) {
    port.postMessage({ n: msg.n, error: errorOf(err) });
  }
});
