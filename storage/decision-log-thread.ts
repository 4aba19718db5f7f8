// Writing the decision log on the embedded store blocked the event loop: better-sqlite3 is
// synchronous, and a batch's INSERTs and COMMIT (a WAL append) took ~5% of a decision's CPU in a
// profile and several milliseconds at a time, which every request queued behind. This writer does
// the same INSERTs on a thread with its own connection, so the answer path only serializes the
// records. The thread is one more SQLite connection to the file, like another process: WAL lets
// it write beside readers, and busy_timeout makes it wait for the main connection's writes (and
// them for its short, synchronous transactions) instead of failing.
import { Worker } from 'node:worker_threads';
import { StoreError } from './errors.ts';
import { sqliteError } from './sqlite.ts';
import type { SqlValue } from './sql.ts';
import { decisionValues } from './sql-store.ts';
import type { DecisionInsert } from './store.ts';

export interface DecisionWriter {
  insertDecisions(rows: DecisionInsert[]): Promise<void>;
  close(): Promise<void>;
}

export interface SqliteDecisionWriterOptions {
  /** How long a write waits for another connection's write, ms. Default 5,000. */
  busyTimeoutMs?: number;
  synchronous?: 'NORMAL' | 'FULL';
  /** How often the thread checkpoints the WAL, ms (0: SQLite's auto-checkpoint only). Default 1,000. */
  checkpointMs?: number;
}

type Reply = { n: number; error?: { code: string; message: string } };

const WORKER_URL = new URL('./decision-log-worker.ts', import.meta.url);

/** A thread that inserts decision batches into the SQLite file; a crashed thread is restarted on the next batch. */
export class SqliteDecisionWriter implements DecisionWriter {
  #file: string;
  #opts: Required<SqliteDecisionWriterOptions>;
  #worker: Worker | undefined;
  #starting: Promise<Worker> | undefined;
  #calls = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  #n = 0;
  #closed = false;

  private constructor(file: string, opts: SqliteDecisionWriterOptions) {
    this.#file = file;
    this.#opts = {
      busyTimeoutMs: opts.busyTimeoutMs ?? 5_000,
      synchronous: opts.synchronous ?? 'NORMAL',
      checkpointMs: opts.checkpointMs ?? 1_000,
    };
  }

  /** Starts the thread and waits until its connection is open (the file must exist, migrated). */
  static async open(
    file: string,
    opts: SqliteDecisionWriterOptions = {},
  ): Promise<SqliteDecisionWriter> {
    const w = new SqliteDecisionWriter(file, opts);
    await w.#start();
    return w;
  }

  #start(): Promise<Worker> {
    if (this.#worker) return Promise.resolve(this.#worker);
    this.#starting ??= new Promise<Worker>((resolve, reject) => {
      const worker = new Worker(WORKER_URL, {
        workerData: { file: this.#file, ...this.#opts },
        // No --cpu-prof or inspector flags of the parent: the thread needs none of them.
        execArgv: [],
      });
      // The log never keeps the process alive on its own; shutdown goes through close().
      worker.unref();
      const gone = (err: Error) => {
        if (this.#worker === worker) this.#worker = undefined;
        this.#starting = undefined;
        reject(err);
        for (const c of this.#calls.values()) c.reject(err);
        this.#calls.clear();
      };
      worker.once('message', (m: { ready: boolean; error?: { code: string; message: string } }) => {
        if (!m.ready) {
          gone(mapError(m.error));
          void worker.terminate();
          return;
        }
        this.#worker = worker;
        this.#starting = undefined;
        worker.on('message', (r: Reply) => {
          const call = this.#calls.get(r.n);
          if (!call) return;
          this.#calls.delete(r.n);
          if (r.error) call.reject(mapError(r.error));
          else call.resolve();
        });
        resolve(worker);
      });
      worker.once('error', (err) =>
        gone(
          new StoreError('unavailable', 'the decision log writer thread failed', { cause: err }),
        ),
      );
      worker.once('exit', () =>
        gone(new StoreError('unavailable', 'the decision log writer thread exited')),
      );
    });
    return this.#starting;
  }

  async insertDecisions(rows: DecisionInsert[]): Promise<void> {
    if (rows.length === 0) return;
    if (this.#closed) throw new StoreError('closed', 'the decision log writer is closed');
    // Serialized here, as the store would: a record that cannot be serialized fails its own
    // batch with `invalid` (the log then writes one by one) rather than the thread.
    const values = rows.map(serialize);
    const worker = await this.#start();
    const n = ++this.#n;
    await new Promise<void>((resolve, reject) => {
      this.#calls.set(n, { resolve, reject });
      worker.postMessage({ n, rows: values });
    });
  }

  /** Lets the batch being written finish, then closes the connection and the thread. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const worker = this.#worker ?? (await this.#starting?.catch(() => undefined));
    if (!worker) return;
    const n = ++this.#n;
    await new Promise<void>((resolve) => {
      this.#calls.set(n, { resolve, reject: () => resolve() });
      worker.postMessage({ n, close: true });
    });
    await worker.terminate();
  }
}

/** The row in column order (the store's own mapping); `invalid` if it cannot be serialized. */
function serialize(row: DecisionInsert): SqlValue[] {
  try {
    return decisionValues(row);
  } catch (err) {
    throw new StoreError('invalid', 'a decision record is not serializable', { cause: err });
  }
}

function mapError(e: { code: string; message: string } | undefined): Error {
  const err = Object.assign(new Error(e?.message ?? 'the decision log writer failed'), {
    code: e?.code,
  });
  return sqliteError(err);
}
