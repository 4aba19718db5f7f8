// Velocity counts for proxy worker processes without Redis: every worker asks the primary over
// the cluster IPC channel, and the primary answers from its one MemoryCounterStore, so counts
// stay exact across the workers and shared with the API's own decisions (the primary serves
// /api). Idempotency per decision id comes from that store: a retried count request (same id)
// is counted once, whichever worker sends it.
//
// The adapter behaves like the Redis one when its store is away: a request unanswered within
// the counter timeout, a closed channel or an error reply is a CounterUnavailableError (the
// engine turns it into `counter_unavailable` and fails open), and a circuit breaker makes a
// stalled primary cost a decision nothing after a few timeouts in a row.
//
// Wire format (JSON, the cluster channel's default serialization): a request carries the
// decision's counter requests as they are; the reply carries the counts flattened in the order
// normalizeRequests gives (each value's windows, then each distinct path's windows), which both
// ends compute from the same requests.
import type { CountOptions, CounterRequest, CounterStore, Counts } from '../../rulesets/ports.ts';
import { CounterUnavailableError } from '../errors.ts';
import { CircuitBreaker, type BreakerState } from './breaker.ts';
import { CountsMap, normalizeRequests } from './counts.ts';
import type { MemoryCounterStore } from './memory.ts';

export const IPC_COUNT = 'vigil.count';
export const IPC_COUNTED = 'vigil.counted';

export interface IpcCountRequest {
  t: typeof IPC_COUNT;
  /** Request id, unique per worker: the reply names it. */
  i: number;
  /** Decision id: the idempotency key. */
  d: string;
  now: number;
  rec: boolean;
  /** The decision id cannot come again (CountOptions.repeatable false). */
  once?: boolean;
  req: CounterRequest[];
}

export interface IpcCountReply {
  t: typeof IPC_COUNTED;
  i: number;
  /** Counts in normalized order; absent on error. */
  c?: number[];
  /** A stable reason when the primary could not count. */
  e?: string;
}

/** The worker's end of the channel: `process` in a cluster worker. */
export interface IpcChannel {
  send(message: unknown, callback?: (err: Error | null) => void): boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
  readonly connected?: boolean;
}

export interface IpcCounterOptions {
  /** Default: this process's IPC channel (a cluster or fork child). */
  channel?: IpcChannel | undefined;
  /** How long the primary has to answer (VIGIL_COUNTER_TIMEOUT_MS). Default 50. */
  timeoutMs?: number | undefined;
  /** Timeouts or errors in a row that open the circuit. Default 5. */
  failureThreshold?: number | undefined;
  /** How long the circuit stays open before a probe, ms. Default 1,000. */
  coolDownMs?: number | undefined;
}

interface Pending {
  resolve: (c: Counts) => void;
  reject: (e: Error) => void;
  requests: CounterRequest[];
  timer: NodeJS.Timeout;
}

export class IpcCounterStore implements CounterStore {
  #channel: IpcChannel;
  #timeoutMs: number;
  #breaker: CircuitBreaker;
  #pending = new Map<number, Pending>();
  #next = 0;
  #failures = 0;
  #closed = false;

  constructor(opts: IpcCounterOptions = {}) {
    const channel = opts.channel ?? (process.send ? (process as IpcChannel) : undefined);
    if (!channel) throw new CounterUnavailableError('no_ipc_channel');
    this.#channel = channel;
    this.#timeoutMs = Math.max(1, opts.timeoutMs ?? 50);
    this.#breaker = new CircuitBreaker({
      threshold: opts.failureThreshold ?? 5,
      coolDownMs: opts.coolDownMs ?? 1_000,
    });
    this.#channel.on('message', this.#onMessage);
  }

  count(
    decisionId: string,
    nowMs: number,
    requests: CounterRequest[],
    opts: CountOptions,
  ): Promise<Counts> {
    if (requests.length === 0) return Promise.resolve(new CountsMap());
    if (this.#closed) return Promise.reject(new CounterUnavailableError('closed'));
    if (this.#channel.connected === false) {
      this.#failed();
      return Promise.reject(new CounterUnavailableError('not_connected'));
    }
    if (!this.#breaker.allow()) return Promise.reject(new CounterUnavailableError('circuit_open'));
    const i = ++this.#next;
    return new Promise<Counts>((resolve, reject) => {
      const timer = setTimeout(() => this.#settle(i, undefined, 'timeout'), this.#timeoutMs);
      this.#pending.set(i, { resolve, reject, requests, timer });
      const msg: IpcCountRequest = {
        t: IPC_COUNT,
        i,
        d: decisionId,
        now: nowMs,
        rec: opts.record,
        ...(opts.repeatable === false ? { once: true } : {}),
        req: requests,
      };
      try {
        this.#channel.send(msg, (err) => {
          if (err) this.#settle(i, undefined, 'error');
        });
      } catch {
        // The channel closed between the check and the send.
        this.#settle(i, undefined, 'not_connected');
      }
    });
  }

  status(): { breaker: BreakerState; failures: number; pending: number; connected: boolean } {
    return {
      breaker: this.#breaker.state,
      failures: this.#failures,
      pending: this.#pending.size,
      connected: this.#channel.connected !== false,
    };
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#channel.off('message', this.#onMessage);
    for (const i of [...this.#pending.keys()]) this.#settle(i, undefined, 'closed');
    return Promise.resolve();
  }

  readonly #onMessage = (m: unknown): void => {
    const r = m as Partial<IpcCountReply> | null;
    if (!r || r.t !== IPC_COUNTED || typeof r.i !== 'number') return;
    this.#settle(r.i, r.c, r.e ?? (Array.isArray(r.c) ? undefined : 'bad_reply'));
  };

  #settle(i: number, flat: number[] | undefined, error: string | undefined): void {
    const p = this.#pending.get(i);
    // Already settled: a reply after its timeout, or a send error after the reply.
    if (!p) return;
    this.#pending.delete(i);
    clearTimeout(p.timer);
    if (error !== undefined || !flat) {
      this.#failed();
      p.reject(new CounterUnavailableError(error ?? 'bad_reply'));
      return;
    }
    const counts = new CountsMap();
    let k = 0;
    for (const r of normalizeRequests(p.requests)) {
      for (const w of r.windowsMs) counts.set(r.field, r.value, w, undefined, flat[k++] ?? 0);
      for (const d of r.distinct) {
        for (const w of d.windowsMs) counts.set(r.field, r.value, w, d.path, flat[k++] ?? 0);
      }
    }
    if (k !== flat.length) {
      this.#failed();
      p.reject(new CounterUnavailableError('bad_reply'));
      return;
    }
    this.#breaker.success();
    p.resolve(counts);
  }

  #failed(): void {
    this.#failures++;
    this.#breaker.failure();
  }
}

/** Answers one count request from `store`; what the primary sends back to the worker. */
export function answerCount(store: MemoryCounterStore, m: IpcCountRequest): IpcCountReply {
  try {
    const counts = store.countSync(m.d, m.now, m.req, {
      record: m.rec,
      repeatable: m.once !== true,
    });
    const c: number[] = [];
    for (const r of normalizeRequests(m.req)) {
      for (const w of r.windowsMs) c.push(counts.get(r.field, r.value, w) ?? 0);
      for (const d of r.distinct)
        for (const w of d.windowsMs) c.push(counts.get(r.field, r.value, w, d.path) ?? 0);
    }
    return { t: IPC_COUNTED, i: m.i, c };
  } catch {
    return { t: IPC_COUNTED, i: m.i, e: 'error' };
  }
}

export function isCountRequest(m: unknown): m is IpcCountRequest {
  const r = m as Partial<IpcCountRequest> | null;
  return (
    !!r &&
    r.t === IPC_COUNT &&
    typeof r.i === 'number' &&
    typeof r.d === 'string' &&
    typeof r.now === 'number' &&
    typeof r.rec === 'boolean' &&
    Array.isArray(r.req)
  );
}

/** A worker as the primary sees it (node:cluster's Worker has this shape). */
export interface IpcPeer {
  send(message: unknown): boolean;
  isConnected?(): boolean;
}

/**
 * The primary's end: call with every message a worker sends (`cluster.on('message', …)`); count
 * requests are answered from `store`, anything else is ignored. Returns whether it answered.
 */
export function serveCount(store: MemoryCounterStore, peer: IpcPeer, message: unknown): boolean {
  if (!isCountRequest(message)) return false;
  if (peer.isConnected?.() === false) return true;
  try {
    peer.send(answerCount(store, message));
  } catch {
    // The worker went away; it fails open on its own timeout.
  }
  return true;
}
