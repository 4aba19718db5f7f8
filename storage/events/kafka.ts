// The Kafka adapter: one idempotent producer (acks=all), the three topics created when missing.
// It sends what the buffer hands it and reports errors; the buffer (sink.ts) owns retrying with
// backoff, ordering and bounds, so a broker outage costs memory up to the bound, never a decision.
import { Buffer } from 'node:buffer';
import {
  Admin,
  Producer,
  findErrorBy,
  type GenericError,
  type MessageToProduce,
} from '@platformatic/kafka';
import type { BufferedEvent, EventTopic, EventTransport } from './sink.ts';
import { kafkaTopicNames, type KafkaEventOptions } from './topics.ts';

export { allTopicNames, kafkaTopicNames, type KafkaEventOptions } from './topics.ts';

const SCHEMA_HEADER = Buffer.from('schema');

// Broker answers that no resend can change: the record itself is refused.
const PERMANENT = [
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_RECORD',
  'CORRUPT_MESSAGE',
  'INVALID_TOPIC_EXCEPTION',
];

export class KafkaTransport implements EventTransport {
  readonly name = 'kafka' as const;
  readonly topics: Record<EventTopic, string>;
  readonly #opts: KafkaEventOptions;
  // Buffers in and out: the values are already UTF-8 JSON in the sink's buffer, sent as they are.
  readonly #producer: Producer;
  readonly #schemaHeaders = new Map<string, Buffer>();
  #topicsReady: Promise<void> | undefined;
  #closed = false;

  constructor(opts: KafkaEventOptions) {
    if (opts.brokers.length === 0) throw new Error('kafka: no brokers');
    this.#opts = opts;
    this.topics = kafkaTopicNames(opts.topicPrefix);
    const idempotent = opts.idempotent ?? true;
    this.#producer = new Producer({
      clientId: opts.clientId,
      bootstrapBrokers: opts.brokers,
      idempotent,
      acks: -1,
      compression: opts.compression ?? 'none',
      // The client's own retries stay short (it would retry an idempotent send forever
      // otherwise, and close() would wait for it); the sink backs off between batches.
      retries: 2,
      retryDelay: 100,
      timeout: opts.requestTimeoutMs ?? 10_000,
      connectTimeout: opts.connectTimeoutMs ?? 3_000,
      // A topic created by someone else must still be found: Vigil never auto-creates by producing.
      autocreateTopics: false,
    });
  }

  /** Creates the topics that do not exist yet; safe against another instance doing the same. */
  ensureTopics(): Promise<void> {
    this.#topicsReady ??= this.#createTopics().catch((err: unknown) => {
      // Next send tries again (the broker may be down at startup).
      this.#topicsReady = undefined;
      throw err;
    });
    return this.#topicsReady;
  }

  async #createTopics(): Promise<void> {
    const admin = new Admin({
      clientId: `${this.#opts.clientId}-admin`,
      bootstrapBrokers: this.#opts.brokers,
      retries: 1,
      retryDelay: 100,
      timeout: this.#opts.requestTimeoutMs ?? 10_000,
      connectTimeout: this.#opts.connectTimeoutMs ?? 3_000,
    });
    try {
      const existing = new Set(await admin.listTopics());
      const missing = Object.values(this.topics).filter((t) => !existing.has(t));
      if (missing.length === 0) return;
      try {
        await admin.createTopics({
          topics: missing,
          partitions: Math.max(1, this.#opts.partitions ?? 3),
          replicas: Math.max(1, this.#opts.replicationFactor ?? 1),
        });
      } catch (err) {
        // Another Vigil instance created them between our list and our create.
        if (!findErrorBy(err as GenericError, 'apiId', 'TOPIC_ALREADY_EXISTS')) throw err;
      }
    } finally {
      await admin.close().catch(() => {});
    }
  }

  async send(batch: readonly BufferedEvent[]): Promise<void> {
    if (this.#closed) throw new Error('kafka event transport closed');
    await this.ensureTopics();
    const messages: MessageToProduce[] = [];
    for (const e of batch) {
      const m: MessageToProduce = {
        topic: this.topics[e.topic],
        key: Buffer.from(e.key),
        value: e.value,
        timestamp: BigInt(e.ts),
      };
      if (e.schema) m.headers = new Map([[SCHEMA_HEADER, this.#schemaHeader(e.schema)]]);
      messages.push(m);
    }
    await this.#producer.send({ messages });
  }

  #schemaHeader(schema: string): Buffer {
    let b = this.#schemaHeaders.get(schema);
    if (!b) {
      b = Buffer.from(schema);
      this.#schemaHeaders.set(schema, b);
    }
    return b;
  }

  isPermanent(err: unknown): boolean {
    if (!(err instanceof Error)) return false;
    for (const id of PERMANENT) if (findErrorBy(err, 'apiId', id)) return true;
    // A value the client could not serialize: resending it changes nothing.
    return findErrorBy(err, 'message', 'Failed to serialize a message.') !== null;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // force: a send still retrying inside the client is abandoned; the sink counts its events.
    await this.#producer.close(true);
  }
}
