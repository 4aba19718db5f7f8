// The event sink port and the buffer that keeps it off the answer path. publish() only
// serializes the value and appends it to a bounded in-memory queue; a background drainer hands
// batches to an adapter (Kafka or the local file). A full buffer drops the new event and counts
// it; nothing the adapter does (a slow broker, an outage, a full disk) ever reaches the caller.
import { Buffer } from 'node:buffer';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { SlabQueue } from './slab-queue.ts';

export const EVENT_TOPICS = ['vigil.decisions', 'vigil.requests', 'vigil.actions'] as const;
export type EventTopic = (typeof EVENT_TOPICS)[number];

export interface EventSinkStats {
  /** Accepted and not yet delivered (nor given up on). */
  buffered: number;
  /** Acknowledged by the adapter: acks=all on Kafka, written to the file. */
  delivered: number;
  /** Refused by publish(): buffer full, value not serializable or too large, sink closed. */
  dropped: number;
  /** Accepted but never delivered: refused by the broker as malformed, or still buffered when close() gave up. */
  failed: number;
}

export interface EventSink {
  /**
   * Never blocks, never throws, never awaits: the value is serialized at once (later changes to
   * it are not seen). A function is called later instead, on a next turn of the event loop, in
   * publish order: what it builds stays off the caller's path (the answer is written first).
   * While such functions wait, a plain value published after them waits (and is serialized)
   * with them, so order is kept.
   */
  publish(topic: EventTopic, key: string, value: object | (() => object)): void;
  /** Resolves once every event published before the call is delivered or given up on. */
  flush(): Promise<void>;
  /** Stops accepting events, delivers what it can within the close timeout, releases the adapter. */
  close(): Promise<void>;
  stats(): EventSinkStats;
}

/** An event as the drainer hands it to an adapter. */
export interface BufferedEvent {
  readonly topic: EventTopic;
  readonly key: string;
  /** The value's JSON, UTF-8: a view into the buffer, valid until the send settles. */
  readonly value: Buffer;
  /** The value's `schema` field, when it had one (a Kafka header, so consumers can route unparsed). */
  readonly schema: string | undefined;
  /** Publish time, epoch ms. */
  readonly ts: number;
}

/** What an adapter does: deliver a batch in order, all of it or an error. */
export interface EventTransport {
  readonly name: 'kafka' | 'file';
  /**
   * Resolves when the whole batch is acknowledged. A rejection makes the sink send the same
   * batch again (after a backoff) before anything published later, which keeps per-key order;
   * a batch that was partly written before the error is written again (at-least-once).
   */
  send(batch: readonly BufferedEvent[]): Promise<void>;
  /** Errors that sending again cannot fix (a record the broker refuses); others are retried. */
  isPermanent?(err: unknown): boolean;
  close(): Promise<void>;
}

export interface BufferOptions {
  /** Events kept in memory at most. Default 100,000. */
  capacity?: number;
  /** Bytes kept in memory at most (keys, values and an 18-byte header per event), outside the JS heap. Default 64 MiB. */
  maxBufferedBytes?: number;
  /** An event whose JSON is larger than this (UTF-8 bytes) is dropped. Default 256 KiB. */
  maxEventBytes?: number;
  /** Events per batch at most; this many waiting sends at once without lingering. Default 1,000. */
  batchSize?: number;
  /** UTF-8 bytes of values per batch at most (Kafka's default message.max.bytes is 1 MiB a batch). Default 512 KiB. */
  maxBatchBytes?: number;
  /** Longest wait before a partial batch is sent, ms. Default 10. */
  lingerMs?: number;
  /** Backoff after a failed send: starts here, doubles, with jitter. Default 100 ms. */
  retryInitialMs?: number;
  /** Backoff ceiling, ms. Default 5,000. */
  retryMaxMs?: number;
  /** How long close() keeps trying to deliver what is buffered, ms. Default 10,000. */
  closeTimeoutMs?: number;
  /** Metrics land here (`vigil_events_*`); several sinks may share one registry. */
  registry?: Registry | undefined;
  /** Told about failed sends and dropped events' causes (for logs); never given the events. */
  onError?: ((err: unknown) => void) | undefined;
}

export interface EventSinkHealth {
  adapter: 'kafka' | 'file';
  /** False while the adapter's last send failed and the sink is backing off. */
  ok: boolean;
  last_error: string | null;
  buffered: number;
}

const TOPIC_INDEX: Record<string, number> = Object.fromEntries(EVENT_TOPICS.map((t, i) => [t, i]));

interface SinkMetrics {
  dropped: Counter<'topic'>;
  delivered: Counter<'topic'>;
  failed: Counter<'topic'>;
  sendErrors: Counter<'adapter'>;
  sendSeconds: Histogram<'adapter'>;
  buffered: Gauge<'adapter'>;
  sinks: Set<BufferedEventSink>;
}

const metricsByRegistry = new WeakMap<Registry, SinkMetrics>();

function sinkMetrics(registry: Registry): SinkMetrics {
  const known = metricsByRegistry.get(registry);
  if (known) return known;
  const sinks = new Set<BufferedEventSink>();
  // Another copy of this module (or a test) may have registered the names already.
  const reuse = <T>(name: string, make: () => T): T =>
    (registry.getSingleMetric(name) as T | undefined) ?? make();
  const m: SinkMetrics = {
    sinks,
    dropped: reuse(
      'vigil_events_dropped_total',
      () =>
        new Counter({
          name: 'vigil_events_dropped_total',
          help: 'Events refused by publish(): buffer full, too large, not serializable, or sink closed',
          labelNames: ['topic'],
          registers: [registry],
        }),
    ),
    delivered: reuse(
      'vigil_events_delivered_total',
      () =>
        new Counter({
          name: 'vigil_events_delivered_total',
          help: 'Events acknowledged by the event adapter (Kafka acks=all, or written to the event file)',
          labelNames: ['topic'],
          registers: [registry],
        }),
    ),
    failed: reuse(
      'vigil_events_failed_total',
      () =>
        new Counter({
          name: 'vigil_events_failed_total',
          help: 'Events accepted but never delivered (refused by the broker, or buffered at close)',
          labelNames: ['topic'],
          registers: [registry],
        }),
    ),
    sendErrors: reuse(
      'vigil_events_send_errors_total',
      () =>
        new Counter({
          name: 'vigil_events_send_errors_total',
          help: 'Failed batch sends (each is retried with backoff)',
          labelNames: ['adapter'],
          registers: [registry],
        }),
    ),
    sendSeconds: reuse(
      'vigil_events_send_seconds',
      () =>
        new Histogram({
          name: 'vigil_events_send_seconds',
          help: 'Time to deliver one batch of events',
          labelNames: ['adapter'],
          buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
          registers: [registry],
        }),
    ),
    buffered: reuse(
      'vigil_events_buffered',
      () =>
        new Gauge({
          name: 'vigil_events_buffered',
          help: 'Events waiting in memory for the event adapter',
          labelNames: ['adapter'],
          registers: [registry],
          // Read at scrape time so publish() never touches the gauge.
          collect() {
            this.reset();
            for (const s of sinks) this.inc({ adapter: s.adapter }, s.stats().buffered);
          },
        }),
    ),
  };
  metricsByRegistry.set(registry, m);
  return m;
}

interface FlushWaiter {
  upTo: number;
  resolve: () => void;
}

export class BufferedEventSink implements EventSink {
  readonly adapter: 'kafka' | 'file';
  readonly #transport: EventTransport;
  readonly #capacity: number;
  readonly #maxBytes: number;
  readonly #maxEventBytes: number;
  readonly #batchSize: number;
  readonly #maxBatchBytes: number;
  readonly #lingerMs: number;
  readonly #retryInitialMs: number;
  readonly #retryMaxMs: number;
  readonly #closeTimeoutMs: number;
  readonly #onError: ((err: unknown) => void) | undefined;
  readonly #metrics: SinkMetrics | undefined;

  #queue = new SlabQueue();
  /** Events ever accepted, and ever settled (delivered or failed): flush() waits on these. */
  #accepted = 0;
  // Events published as functions, built on the next turn of the event loop.
  #deferred: { topic: EventTopic; key: string; build: () => object }[] = [];
  #deferTimer: NodeJS.Immediate | undefined;
  #settled = 0;
  #delivered = [0, 0, 0];
  #dropped = [0, 0, 0];
  #failed = [0, 0, 0];

  #draining = false;
  #linger: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  #attempt = 0;
  /** After a permanent error, this many events at the head are sent one at a time to find the bad one. */
  #isolate = 0;
  #lastError: string | null = null;
  #waiters: FlushWaiter[] = [];
  #closed = false;
  #closing: Promise<void> | undefined;
  #deadline = Infinity;
  /** Set when close() has counted the rest failed: a send that still answers must not settle again. */
  #abandoned = false;

  constructor(transport: EventTransport, opts: BufferOptions = {}) {
    this.#transport = transport;
    this.adapter = transport.name;
    this.#capacity = Math.max(1, Math.floor(opts.capacity ?? 100_000));
    this.#maxBytes = Math.max(1, opts.maxBufferedBytes ?? 64 * 1024 * 1024);
    this.#maxEventBytes = Math.max(1, opts.maxEventBytes ?? 256 * 1024);
    this.#batchSize = Math.max(1, Math.floor(opts.batchSize ?? 1_000));
    this.#maxBatchBytes = Math.max(1, opts.maxBatchBytes ?? 512 * 1024);
    this.#lingerMs = Math.max(0, opts.lingerMs ?? 10);
    this.#retryInitialMs = Math.max(1, opts.retryInitialMs ?? 100);
    this.#retryMaxMs = Math.max(this.#retryInitialMs, opts.retryMaxMs ?? 5_000);
    this.#closeTimeoutMs = Math.max(0, opts.closeTimeoutMs ?? 10_000);
    this.#onError = opts.onError;
    if (opts.registry) {
      this.#metrics = sinkMetrics(opts.registry);
      this.#metrics.sinks.add(this);
    }
  }

  publish(topic: EventTopic, key: string, value: object | (() => object)): void {
    if (typeof value === 'function') {
      if (this.#closed || this.#queue.length + this.#deferred.length >= this.#capacity) {
        const t = TOPIC_INDEX[topic];
        if (t !== undefined) this.#drop(t, topic);
        return;
      }
      this.#deferred.push({ topic, key, build: value as () => object });
      this.#deferTimer ??= setImmediate(() => this.#buildDeferred());
      return;
    }
    // Behind deferred events still to be built, a plain value waits its turn too: events keep
    // the order they were published in.
    if (this.#deferred.length > 0) {
      this.#deferred.push({ topic, key, build: () => value });
      return;
    }
    this.#publishNow(topic, key, value);
  }

  /** The deferred events, built and queued in publish order. */
  #buildDeferred(): void {
    if (this.#deferTimer) clearImmediate(this.#deferTimer);
    this.#deferTimer = undefined;
    const list = this.#deferred;
    this.#deferred = [];
    for (const d of list) {
      let value: object;
      try {
        value = d.build();
      } catch (err) {
        const t = TOPIC_INDEX[d.topic];
        if (t !== undefined) this.#drop(t, d.topic);
        this.#report(err);
        continue;
      }
      this.#publishNow(d.topic, d.key, value);
    }
  }

  #publishNow(topic: EventTopic, key: string, value: object): void {
    try {
      const t = TOPIC_INDEX[topic];
      if (t === undefined) {
        this.#report(new Error(`unknown event topic ${String(topic)}`));
        return;
      }
      const length = this.#queue.length;
      if (this.#closed || length >= this.#capacity) {
        this.#drop(t, topic);
        return;
      }
      const json = JSON.stringify(value);
      // JSON.stringify answers undefined for a function or symbol, and throws on cycles/BigInt.
      if (typeof json !== 'string' || json.length > this.#maxEventBytes) {
        this.#drop(t, topic);
        return;
      }
      const valueBytes = Buffer.byteLength(json);
      const k = typeof key === 'string' ? key : String(key);
      const keyBytes = Buffer.byteLength(k);
      if (
        valueBytes > this.#maxEventBytes ||
        this.#queue.bytes + SlabQueue.recordBytes(keyBytes, valueBytes) > this.#maxBytes
      ) {
        this.#drop(t, topic);
        return;
      }
      const schema = (value as { schema?: unknown }).schema;
      this.#queue.push(
        t,
        k,
        keyBytes,
        json,
        valueBytes,
        typeof schema === 'string' ? schema : undefined,
        Date.now(),
      );
      this.#accepted++;
      this.#schedule(length + 1);
    } catch (err) {
      // A getter that throws, a cycle, a BigInt: the caller's problem is never ours to raise.
      const t = TOPIC_INDEX[topic];
      if (t !== undefined) this.#drop(t, topic);
      this.#report(err);
    }
  }

  flush(): Promise<void> {
    this.#buildDeferred();
    const upTo = this.#accepted;
    if (this.#settled >= upTo) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#waiters.push({ upTo, resolve });
      this.#kick();
    });
  }

  close(): Promise<void> {
    if (!this.#closing) this.#buildDeferred();
    this.#closing ??= this.#close();
    return this.#closing;
  }

  stats(): EventSinkStats {
    return {
      buffered: this.#queue.length + this.#deferred.length,
      delivered: sum(this.#delivered),
      dropped: sum(this.#dropped),
      failed: sum(this.#failed),
    };
  }

  health(): EventSinkHealth {
    return {
      adapter: this.adapter,
      ok: this.#attempt === 0,
      last_error: this.#lastError,
      buffered: this.#queue.length + this.#deferred.length,
    };
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#deadline = Date.now() + this.#closeTimeoutMs;
    if (this.#queue.length > 0) {
      const done = this.flush();
      this.#kick();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#closeTimeoutMs);
      });
      await Promise.race([done, timeout]);
      clearTimeout(timer);
    }
    if (this.#linger) clearTimeout(this.#linger);
    this.#linger = undefined;
    // Closing the adapter aborts a send still in flight; its events are counted failed below.
    try {
      await this.#transport.close();
    } catch (err) {
      this.#report(err);
    }
    const left = this.#queue.length;
    this.#abandoned = true;
    if (left > 0) {
      this.#report(new Error(`event sink closed with ${left} events undelivered`));
      this.#settle(left, this.#failed, this.#metrics?.failed);
    }
    this.#wake?.();
    this.#metrics?.sinks.delete(this);
  }

  #drop(t: number, topic: EventTopic): void {
    this.#dropped[t]!++;
    this.#metrics?.dropped.inc({ topic });
  }

  #report(err: unknown): void {
    if (!this.#onError) return;
    try {
      this.#onError(err);
    } catch {
      // A logger that throws must not stop the drainer.
    }
  }

  /** Called with the queue length after a publish: linger for a partial batch, go now for a full one. */
  #schedule(length: number): void {
    if (this.#draining) return;
    if (length >= this.#batchSize || this.#lingerMs === 0) {
      this.#kick();
      return;
    }
    this.#linger ??= setTimeout(() => {
      this.#linger = undefined;
      this.#startDrain();
    }, this.#lingerMs);
  }

  /** Send now: cut the linger short, or the backoff (flush and close want an attempt at once). */
  #kick(): void {
    if (this.#linger) {
      clearTimeout(this.#linger);
      this.#linger = undefined;
    }
    if (this.#wake) {
      this.#wake();
      return;
    }
    // Never synchronously inside publish(): the caller is on the answer path.
    if (!this.#draining) setImmediate(() => this.#startDrain());
  }

  #startDrain(): void {
    if (this.#draining) return;
    this.#draining = true;
    this.#drain().then(
      () => {
        this.#draining = false;
        // Events published while the last send was finishing.
        if (this.#queue.length > 0 && this.#transportOpen()) this.#schedule(this.#queue.length);
      },
      (err: unknown) => {
        this.#draining = false;
        this.#report(err);
      },
    );
  }

  #transportOpen(): boolean {
    return !this.#abandoned && (!this.#closed || Date.now() < this.#deadline);
  }

  /**
   * Another batch now, rather than after a linger: a full one is waiting, or someone waits
   * (flush, close), or a failed or isolated batch is being retried. Sending every partial batch
   * as soon as the previous one was acknowledged made batches of a few events under a steady
   * load (one per broker round trip), each costing the Kafka thread and the broker a request.
   */
  #sendNow(): boolean {
    return (
      this.#queue.length >= this.#batchSize ||
      this.#lingerMs === 0 ||
      this.#closed ||
      this.#waiters.length > 0 ||
      this.#attempt > 0 ||
      this.#isolate > 0
    );
  }

  async #drain(): Promise<void> {
    let first = true;
    while (this.#queue.length > 0 && this.#transportOpen() && (first || this.#sendNow())) {
      first = false;
      const batch = this.#take();
      const t0 = performance.now();
      try {
        await this.#transport.send(batch);
        if (this.#abandoned) return;
        this.#metrics?.sendSeconds.observe(
          { adapter: this.adapter },
          (performance.now() - t0) / 1000,
        );
        if (this.#isolate > 0) this.#isolate = Math.max(0, this.#isolate - batch.length);
        this.#attempt = 0;
        this.#lastError = null;
        this.#settle(batch.length, this.#delivered, this.#metrics?.delivered);
      } catch (err) {
        if (this.#abandoned) return;
        this.#metrics?.sendErrors.inc({ adapter: this.adapter });
        this.#lastError = err instanceof Error ? err.message : String(err);
        this.#report(err);
        if (this.#transport.isPermanent?.(err)) {
          // Retrying cannot help: find the event the broker refuses and give up on it alone.
          if (batch.length > 1) this.#isolate = batch.length;
          else {
            this.#isolate = Math.max(0, this.#isolate - 1);
            this.#settle(batch.length, this.#failed, this.#metrics?.failed);
          }
          continue;
        }
        this.#attempt++;
        await this.#backoff();
      }
    }
  }

  /** The next batch from the head of the queue; it stays there until settled. */
  #take(): BufferedEvent[] {
    const limit = this.#isolate > 0 ? 1 : this.#batchSize;
    return this.#queue.peek(limit, this.#maxBatchBytes).map((r) => ({
      topic: EVENT_TOPICS[r.topic]!,
      key: r.key,
      value: r.value,
      schema: r.schema,
      ts: r.ts,
    }));
  }

  /** Removes the n events at the head, counted as delivered or failed. */
  #settle(n: number, counts: number[], metric?: Counter<'topic'>): void {
    const per = [0, 0, 0];
    this.#queue.shift(n, (t) => per[t]!++);
    for (let t = 0; t < per.length; t++) {
      counts[t]! += per[t]!;
      if (per[t]! > 0) metric?.inc({ topic: EVENT_TOPICS[t]! }, per[t]);
    }
    this.#settled += n;
    if (this.#waiters.length > 0) {
      const still: FlushWaiter[] = [];
      for (const w of this.#waiters) {
        if (this.#settled >= w.upTo) w.resolve();
        else still.push(w);
      }
      this.#waiters = still;
    }
  }

  /** Exponential with full jitter, cut short by flush()/close(); unref'd so an outage never holds the process open. */
  #backoff(): Promise<void> {
    const ceiling = Math.min(this.#retryMaxMs, this.#retryInitialMs * 2 ** (this.#attempt - 1));
    let ms = ceiling / 2 + Math.random() * (ceiling / 2);
    if (this.#closed) ms = Math.min(ms, Math.max(0, this.#deadline - Date.now()));
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.#wake = done;
    });
  }
}

function sum(a: number[]): number {
  return a[0]! + a[1]! + a[2]!;
}
