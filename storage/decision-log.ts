// The decision log: every answered decision is kept, but writing it is not on the answer path.
// `append` only puts the record in memory; a background writer sends batches (every
// `flushIntervalMs`, or as soon as `batchSize` records wait) as one multi-row INSERT in one
// transaction. `get` looks in memory first, so a client that reads its decision right after the
// answer finds it. While the store fails, the writer retries with capped backoff and the buffer
// stays bounded: past `maxBuffered`, the oldest waiting records are dropped and counted.
import { setTimeout as sleep } from 'node:timers/promises';
import { StoreError } from './errors.ts';
import { idTimeMs } from './ids.ts';
import type { DecisionInsert, DecisionQuery, DecisionRow, ResolveResult, Store } from './store.ts';

/** The shape the log needs of a decision record; decisions/ passes its DecisionRecord. */
export interface DecisionLogRecord {
  response: {
    id: string;
    decision: string;
    context: string;
    ruleset_id: string | null;
    credential_fingerprint: string | null;
  };
  session: string | null;
  created_at: string;
}

export type DecisionLogStore = Pick<
  Store,
  'insertDecisions' | 'getDecision' | 'resolveDecision' | 'setFinalOutcome' | 'listDecisions'
>;

/** How long after its birth a decision id not found yet is looked for again, ms. */
const RECENT_WAIT_MS = 500;
const RECENT_POLL_MS = 10;

export interface DecisionLogOptions {
  /** Longest time a record waits in memory when the store is healthy, ms. Default 25. */
  flushIntervalMs?: number;
  /** Records per INSERT, and the count that triggers an immediate write. Default 250. */
  batchSize?: number;
  /** Records kept in memory at most (waiting + being written). Default 50,000. */
  maxBuffered?: number;
  /** Backoff between failed writes: doubles from flushIntervalMs up to this, ms. Default 5,000. */
  retryMaxMs?: number;
  /** Told about every failed write (for logs and metrics); never about the records. */
  onError?: (err: unknown) => void;
  /**
   * Where batches are inserted instead of the store (e.g. SqliteDecisionWriter, off the event
   * loop); reads and resolves still go to the store. The log does not close it.
   */
  writer?: Pick<Store, 'insertDecisions'>;
}

export interface DecisionLogStats {
  /** Records in memory, not yet stored. */
  buffered: number;
  written: number;
  /** Dropped because the buffer was full while the store was failing (or left at close). */
  dropped: number;
  /** Records the store refused one by one (unserializable, invalid): never retried. */
  rejected: number;
  /** Failed batch writes so far, and in a row right now. */
  failures: number;
  consecutiveFailures: number;
}

interface Entry<R> {
  record: R;
  seq: number;
}

export class DecisionLog<R extends DecisionLogRecord = DecisionLogRecord> {
  #store: DecisionLogStore;
  #writer: Pick<Store, 'insertDecisions'>;
  #intervalMs: number;
  #batchSize: number;
  #maxBuffered: number;
  #retryMaxMs: number;
  #onError: ((err: unknown) => void) | undefined;
  // Insertion-ordered maps double as FIFO queues and as the read-your-write index.
  #pending = new Map<string, Entry<R>>();
  #inflight = new Map<string, Entry<R>>();
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #closed = false;
  #written = 0;
  #dropped = 0;
  #rejected = 0;
  #failures = 0;
  #consecutive = 0;

  constructor(store: DecisionLogStore, opts: DecisionLogOptions = {}) {
    this.#store = store;
    this.#writer = opts.writer ?? store;
    this.#intervalMs = Math.max(1, opts.flushIntervalMs ?? 25);
    this.#batchSize = Math.max(1, opts.batchSize ?? 250);
    this.#maxBuffered = Math.max(this.#batchSize, opts.maxBuffered ?? 50_000);
    this.#retryMaxMs = Math.max(this.#intervalMs, opts.retryMaxMs ?? 5_000);
    this.#onError = opts.onError;
  }

  /** Synchronous, never throws, never waits for I/O. A repeated id keeps the first record. */
  append(record: R): void {
    const id = record.response.id;
    if (this.#closed) {
      this.#dropped++;
      return;
    }
    if (this.#pending.has(id) || this.#inflight.has(id)) return;
    if (this.#pending.size + this.#inflight.size >= this.#maxBuffered) {
      // Drop the oldest waiting record rather than the new one: the newest decision is the one
      // its client is about to read back.
      const oldest = this.#pending.keys().next();
      if (oldest.done) {
        this.#dropped++;
        return;
      }
      this.#pending.delete(oldest.value);
      this.#dropped++;
    }
    this.#pending.set(id, { record, seq: ++this.#seq });
    this.#schedule();
  }

  /**
   * Stored before it resolves, for decisions whose answer promises a case (REVIEW, BLOCK,
   * PROVISIONAL): the batched path could lose them to a crash right after the answer, and the
   * case would then hold a decision that `GET /api/decisions/{id}` and `resolve` cannot find.
   * A store that fails here leaves the record to the batched path (its retries) and rethrows.
   */
  async appendDurable(record: R): Promise<void> {
    try {
      await this.#store.insertDecisions([insertOf(record)]);
    } catch (err) {
      this.append(record);
      throw err;
    }
  }

  /** The record as appended, with the stored resolution and final outcome laid over it. */
  /**
   * The decision, from memory or the store. An id minted in the last moments that is not found
   * yet may be another instance's, still in its batch (up to flushIntervalMs plus the write):
   * for it the store is asked again until RECENT_WAIT_MS after its birth, so a lifecycle event
   * or a read sent to another instance right after the answer finds it.
   */
  async get(id: string): Promise<R | undefined> {
    const mem = this.#pending.get(id) ?? this.#inflight.get(id);
    if (mem) return mem.record;
    const row = await this.#store.getDecision(id);
    if (row) return recordOf<R>(row);
    const born = idTimeMs(id);
    if (born === undefined) return undefined;
    const until = born + RECENT_WAIT_MS;
    // A time far off is not a minted id's (ids derived from a key decode to noise).
    if (Math.abs(Date.now() - born) > RECENT_WAIT_MS) return undefined;
    // Backing off: a made-up id stamped now costs a handful of reads, not fifty.
    for (let wait = RECENT_POLL_MS; Date.now() < until && !this.#closed; wait *= 2) {
      await sleep(Math.min(wait, Math.max(1, until - Date.now())));
      const again = await this.#store.getDecision(id);
      if (again) return recordOf<R>(again);
    }
    return undefined;
  }

  /** The stored row (resolution and final outcome columns included), after any pending write. */
  async row(id: string): Promise<DecisionRow | undefined> {
    if (this.#pending.has(id) || this.#inflight.has(id)) await this.flush();
    return this.#store.getDecision(id);
  }

  /** Stored decisions in a time range (simulate); writes what is waiting first. */
  async list(query: DecisionQuery): Promise<R[]> {
    await this.flush();
    const rows = await this.#store.listDecisions(query);
    return rows.map((r) => recordOf<R>(r));
  }

  /** Resolves once ('already_resolved' after); a decision still in memory is written first. */
  async resolve(id: string, resolution: string, note?: string | null): Promise<ResolveResult> {
    if (this.#pending.has(id) || this.#inflight.has(id)) await this.flush();
    return this.#store.resolveDecision(id, resolution, note);
  }

  async setFinalOutcome(
    id: string,
    outcome: string,
    detail?: unknown,
  ): Promise<'ok' | 'not_found'> {
    if (this.#pending.has(id) || this.#inflight.has(id)) await this.flush();
    return this.#store.setFinalOutcome(id, outcome, detail);
  }

  /**
   * Resolves once every record appended before the call is stored; rejects (records kept, the
   * background retry goes on) if a write fails.
   */
  async flush(): Promise<void> {
    const target = this.#seq;
    for (;;) {
      if (this.#running) {
        await this.#running.catch(() => {});
        continue;
      }
      const first = this.#inflight.values().next().value ?? this.#pending.values().next().value;
      if (!first || first.seq > target) return;
      await this.#cycle();
    }
  }

  /** Stops the timer and writes what is waiting; what cannot be written is counted as dropped. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#clearTimer();
    try {
      await this.flush();
    } catch (err) {
      this.#onError?.(err);
      this.#dropped += this.#pending.size + this.#inflight.size;
      this.#pending.clear();
      this.#inflight.clear();
    }
  }

  stats(): DecisionLogStats {
    return {
      buffered: this.#pending.size + this.#inflight.size,
      written: this.#written,
      dropped: this.#dropped,
      rejected: this.#rejected,
      failures: this.#failures,
      consecutiveFailures: this.#consecutive,
    };
  }

  #schedule(): void {
    if (this.#running || this.#pending.size === 0) return;
    const full = this.#pending.size >= this.#batchSize && this.#consecutive === 0;
    if (this.#timer && !full) return;
    this.#clearTimer();
    const delay = full
      ? 0
      : this.#consecutive > 0
        ? Math.min(this.#retryMaxMs, this.#intervalMs * 2 ** Math.min(this.#consecutive, 20))
        : this.#intervalMs;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#running) this.#cycle().catch(() => {});
    }, delay);
    // The log never keeps the process alive on its own; shutdown goes through close().
    this.#timer.unref();
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** One writer at a time: batches in order until nothing waits, or the first failure. */
  #cycle(): Promise<void> {
    this.#clearTimer();
    // `.finally` runs as a later reaction, so `#running` is always set before it is cleared.
    const run: Promise<void> = this.#drain().finally(() => {
      if (this.#running === run) this.#running = undefined;
      if (!this.#closed) this.#schedule();
    });
    this.#running = run;
    return run;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#pending.size > 0) await this.#writeBatch();
      this.#consecutive = 0;
    } catch (err) {
      this.#failures++;
      this.#consecutive++;
      this.#onError?.(err);
      throw err;
    }
  }

  async #writeBatch(): Promise<void> {
    for (const [id, e] of this.#pending) {
      if (this.#inflight.size >= this.#batchSize) break;
      this.#inflight.set(id, e);
      this.#pending.delete(id);
    }
    const batch = [...this.#inflight.values()];
    try {
      await this.#writer.insertDecisions(batch.map((e) => insertOf(e.record)));
    } catch (err) {
      if (isOutage(err)) {
        // Back to the front of the queue, in order, for the retry.
        this.#pending = new Map([...this.#inflight, ...this.#pending]);
        this.#inflight.clear();
        throw err;
      }
      // Not an outage: some record in the batch is bad. Write them one by one so one bad record
      // costs only itself, not its batch and every later one.
      await this.#writeOneByOne(batch);
      return;
    }
    this.#written += batch.length;
    this.#inflight.clear();
  }

  async #writeOneByOne(batch: Entry<R>[]): Promise<void> {
    for (const e of batch) {
      const id = e.record.response.id;
      try {
        await this.#writer.insertDecisions([insertOf(e.record)]);
        this.#written++;
      } catch (err) {
        if (isOutage(err)) {
          this.#pending = new Map([...this.#inflight, ...this.#pending]);
          this.#inflight.clear();
          throw err;
        }
        this.#rejected++;
        this.#onError?.(err);
      }
      this.#inflight.delete(id);
    }
  }
}

function isOutage(err: unknown): boolean {
  return err instanceof StoreError && (err.code === 'unavailable' || err.code === 'closed');
}

/** The row a record is stored as. */
export function insertOf(r: DecisionLogRecord): DecisionInsert {
  const res = r.response;
  return {
    id: res.id,
    created_at: r.created_at,
    context: res.context,
    decision: res.decision,
    ruleset_id: res.ruleset_id,
    session: r.session,
    credential_fingerprint: res.credential_fingerprint,
    record: r,
  };
}

/**
 * The stored record with what happened after the answer laid over its response: the analyst's
 * resolution and, for async backend rules, the final decision (CONTRACT §1 semantic 10).
 */
function recordOf<R>(row: DecisionRow): R {
  const record = row.record as { response?: Record<string, unknown> };
  if (
    record &&
    typeof record === 'object' &&
    record.response &&
    typeof record.response === 'object'
  ) {
    const response: Record<string, unknown> = { ...record.response };
    if (row.resolution !== null) {
      response.resolution = {
        resolution: row.resolution,
        ...(row.resolution_note !== null ? { note: row.resolution_note } : {}),
        resolved_at: row.resolved_at,
      };
    }
    if (row.final_outcome !== null) {
      response.final_decision = row.final_outcome;
      // The async rules' settled traces (cli/worker-role.ts) replace the pending ones; the
      // answered `decision` (PROVISIONAL) stays what the client was told.
      const d = row.final_detail as Record<string, unknown> | null;
      if (d && typeof d === 'object') {
        for (const k of ['rules', 'backend_results', 'has_errors', 'degraded'] as const)
          if (k in d) response[k] = d[k];
      }
    }
    return { ...record, response } as R;
  }
  return record as R;
}
