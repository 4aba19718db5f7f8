// The Kafka client on its own thread. Encoding record batches, CRCs, the protocol and the
// sockets cost more CPU per event than building the event does, and on the main thread that CPU
// is taken between requests: a batch of a thousand events encoded at once holds up every
// decision waiting behind it. Here the main thread only copies each batch into one buffer and
// transfers it (no copy across the boundary); the worker runs the real KafkaTransport.
import { Buffer } from 'node:buffer';
import { Worker } from 'node:worker_threads';
import type { KafkaEventOptions } from './topics.ts';
import { EVENT_TOPICS, type BufferedEvent, type EventTopic, type EventTransport } from './sink.ts';

/** Main → worker. */
export type ToKafkaThread =
  { op: 'send'; id: number; packed: ArrayBuffer; count: number } | { op: 'close'; id: number };

/** Worker → main. */
export type FromKafkaThread =
  { id: number; ok: true } | { id: number; ok: false; message: string; permanent: boolean };

const TOPIC_INDEX = new Map<string, number>(EVENT_TOPICS.map((t, i) => [t, i]));

/**
 * One buffer per batch: per event `u8 topic, f64 ts, u16 keyLen, u16 schemaLen, u32 valueLen`,
 * then the key, schema and value bytes. Keys and schemas are short (session ids, schema names).
 */
export function packBatch(batch: readonly BufferedEvent[]): ArrayBuffer {
  let size = 0;
  for (const e of batch) {
    size += 17 + Buffer.byteLength(e.key) + (e.schema ? Buffer.byteLength(e.schema) : 0);
    size += e.value.length;
  }
  // allocUnsafeSlow: a buffer of its own (not a slice of the shared pool), so it can be transferred.
  const buf = Buffer.allocUnsafeSlow(size);
  let o = 0;
  for (const e of batch) {
    buf.writeUInt8(TOPIC_INDEX.get(e.topic) ?? 0, o);
    buf.writeDoubleLE(e.ts, o + 1);
    const keyLen = buf.write(e.key, o + 17, 'utf8');
    buf.writeUInt16LE(keyLen, o + 9);
    const schemaLen = e.schema ? buf.write(e.schema, o + 17 + keyLen, 'utf8') : 0;
    buf.writeUInt16LE(schemaLen, o + 11);
    buf.writeUInt32LE(e.value.length, o + 13);
    o += 17 + keyLen + schemaLen;
    e.value.copy(buf, o);
    o += e.value.length;
  }
  return buf.buffer;
}

export function unpackBatch(packed: ArrayBuffer, count: number): BufferedEvent[] {
  const buf = Buffer.from(packed);
  const out: BufferedEvent[] = [];
  let o = 0;
  for (let i = 0; i < count; i++) {
    const topic = EVENT_TOPICS[buf.readUInt8(o)] as EventTopic;
    const ts = buf.readDoubleLE(o + 1);
    const keyLen = buf.readUInt16LE(o + 9);
    const schemaLen = buf.readUInt16LE(o + 11);
    const valueLen = buf.readUInt32LE(o + 13);
    o += 17;
    const key = buf.toString('utf8', o, o + keyLen);
    o += keyLen;
    const schema = schemaLen ? buf.toString('utf8', o, o + schemaLen) : undefined;
    o += schemaLen;
    const value = buf.subarray(o, o + valueLen);
    o += valueLen;
    out.push({ topic, key, schema, ts, value });
  }
  return out;
}

class ThreadSendError extends Error {
  readonly permanent: boolean;
  constructor(message: string, permanent: boolean) {
    super(message);
    this.permanent = permanent;
  }
}

interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
}

export class KafkaThreadTransport implements EventTransport {
  readonly name = 'kafka' as const;
  readonly #opts: KafkaEventOptions;
  #worker: Worker | undefined;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  #closed = false;

  constructor(opts: KafkaEventOptions) {
    if (opts.brokers.length === 0) throw new Error('kafka: no brokers');
    this.#opts = opts;
    // Started now: loading the client and meeting the broker take a while, better not on the
    // first batch.
    this.#thread();
  }

  /** Started at once, and again after it died (its batches were rejected: the sink resends). */
  #thread(): Worker {
    if (this.#worker) return this.#worker;
    const w = new Worker(new URL('./kafka-thread.ts', import.meta.url), {
      workerData: this.#opts,
      // The producer's buffers live in the worker; this bounds a runaway without affecting decisions.
      resourceLimits: { maxOldGenerationSizeMb: 256 },
    });
    // A worker with nothing in flight must not keep the process alive.
    w.unref();
    w.on('message', (m: FromKafkaThread) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (this.#pending.size === 0) w.unref();
      if (m.ok) p.resolve();
      else p.reject(new ThreadSendError(m.message, m.permanent));
    });
    const fail = (err: Error) => {
      if (this.#worker !== w) return;
      this.#worker = undefined;
      for (const [id, p] of this.#pending) {
        this.#pending.delete(id);
        p.reject(new ThreadSendError(`kafka thread stopped: ${err.message}`, false));
      }
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`exit code ${code}`)));
    this.#worker = w;
    return w;
  }

  #call(msg: ToKafkaThread, transfer: ArrayBuffer[] = []): Promise<void> {
    const w = this.#thread();
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(msg.id, { resolve, reject });
      // In flight: keep the process alive until the broker answers (or close() gives up).
      w.ref();
      w.postMessage(msg, transfer);
    });
  }

  send(batch: readonly BufferedEvent[]): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('kafka event transport closed'));
    const packed = packBatch(batch);
    return this.#call({ op: 'send', id: this.#nextId++, packed, count: batch.length }, [packed]);
  }

  isPermanent(err: unknown): boolean {
    return err instanceof ThreadSendError && err.permanent;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const w = this.#worker;
    if (!w) return;
    try {
      await this.#call({ op: 'close', id: this.#nextId++ });
    } catch {
      // Already gone: nothing to release.
    }
    await w.terminate();
  }
}
