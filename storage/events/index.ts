// The event stream's composition: Kafka when brokers are configured, the local NDJSON file
// otherwise, both behind the same bounded buffer (CONTRACT §6, docs/events.md).
import type { Registry } from 'prom-client';
import { FileTransport } from './file.ts';
import {
  BufferedEventSink,
  type BufferOptions,
  type BufferedEvent,
  type EventTransport,
} from './sink.ts';
import { KafkaThreadTransport } from './thread.ts';
import type { KafkaEventOptions } from './topics.ts';

export interface CreateEventSinkOptions {
  /** Set (with at least one broker) to publish to Kafka; otherwise events go to `<dataDir>/events/`. */
  kafka?: KafkaEventOptions | undefined;
  dataDir: string;
  /** Events the buffer holds at most; past it, new events are dropped and counted. Default 100,000. */
  capacity?: number | undefined;
  registry?: Registry | undefined;
  onError?: ((err: unknown) => void) | undefined;
  /** The rest of the buffer's settings (linger, batch size, backoff, close timeout…). */
  buffer?: Omit<BufferOptions, 'capacity' | 'registry' | 'onError'> | undefined;
  /** The file adapter's rotation size, bytes. Default 64 MiB. */
  maxFileBytes?: number | undefined;
  /**
   * Run the Kafka client on a worker thread (default true): its encoding and socket work then
   * never takes the answer path's thread. `false` runs it inline (one thread fewer).
   */
  kafkaThread?: boolean | undefined;
}

/**
 * The Kafka client on the calling thread (`kafkaThread: false`), loaded when the sink is made
 * rather than with this module: a process that writes the local file never loads it.
 */
class InlineKafkaTransport implements EventTransport {
  readonly name = 'kafka' as const;
  readonly #real: Promise<EventTransport>;
  #loaded: EventTransport | undefined;

  constructor(opts: KafkaEventOptions) {
    if (opts.brokers.length === 0) throw new Error('kafka: no brokers');
    this.#real = import('./kafka.ts').then((m) => (this.#loaded = new m.KafkaTransport(opts)));
    // A load failure surfaces on the first send (and is retried by the sink like any other).
    this.#real.catch(() => {});
  }

  async send(batch: readonly BufferedEvent[]): Promise<void> {
    return (await this.#real).send(batch);
  }

  isPermanent(err: unknown): boolean {
    return this.#loaded?.isPermanent?.(err) ?? false;
  }

  async close(): Promise<void> {
    await (await this.#real.catch(() => undefined))?.close();
  }
}

export function createEventSink(opts: CreateEventSinkOptions): BufferedEventSink {
  const useKafka = opts.kafka !== undefined && opts.kafka.brokers.length > 0;
  const transport = useKafka
    ? opts.kafkaThread === false
      ? new InlineKafkaTransport(opts.kafka!)
      : new KafkaThreadTransport(opts.kafka!)
    : new FileTransport({ dataDir: opts.dataDir, maxFileBytes: opts.maxFileBytes });
  return new BufferedEventSink(transport, {
    // The file takes bigger batches: one write each, no broker limit on their size. Kafka
    // lingers 50 ms: each produce request costs the client thread and the broker about the same
    // whatever its size, and at 10 ms the sink's CPU showed in the decisions' latency on a small
    // machine (bench/events.ts: +10-27 % mean at 10 ms, -1 to +4 % at 50 ms).
    ...(useKafka
      ? { lingerMs: 50 }
      : { batchSize: 5_000, maxBatchBytes: 4 * 1024 * 1024, lingerMs: 20 }),
    ...opts.buffer,
    capacity: opts.capacity,
    registry: opts.registry,
    onError: opts.onError,
  });
}

export {
  BufferedEventSink,
  EVENT_TOPICS,
  type BufferOptions,
  type BufferedEvent,
  type EventSink,
  type EventSinkHealth,
  type EventSinkStats,
  type EventTopic,
  type EventTransport,
} from './sink.ts';
export { KafkaThreadTransport } from './thread.ts';
export { allTopicNames, kafkaTopicNames, type KafkaEventOptions } from './topics.ts';
export { EVENTS_DIR, FileTransport, eventFileName, eventLines, listEventFiles } from './file.ts';
export * from './schemas.ts';
export {
  DEFAULT_LIMITS,
  compileRedaction,
  isSecretKey,
  type EventLimits,
  type RedactOptions,
  type Redactor,
} from './sanitize.ts';
