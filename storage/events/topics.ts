// Kafka topic names and the adapter's options: what callers need without loading the Kafka
// client itself (some 12 MB of heap), which only the process or thread that produces loads.
import { EVENT_TOPICS, type EventTopic } from './sink.ts';

export interface KafkaEventOptions {
  brokers: string[];
  clientId: string;
  /** Put before every topic name (`<prefix>vigil.decisions`): tests, or several instances on one cluster. */
  topicPrefix?: string | undefined;
  /** Partitions of a topic this adapter creates (existing topics are left as they are). Default 3. */
  partitions?: number | undefined;
  /** Replication factor of a topic this adapter creates. Default 1 (set 3 on a real cluster). */
  replicationFactor?: number | undefined;
  /** Default true: acks=all with producer ids and sequence numbers, so the broker drops a resent duplicate batch. */
  idempotent?: boolean | undefined;
  compression?: 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd' | undefined;
  /** Per request (produce, metadata), ms. Default 10,000. */
  requestTimeoutMs?: number | undefined;
  /** Per connection attempt, ms. Default 3,000. */
  connectTimeoutMs?: number | undefined;
}

export function kafkaTopicNames(prefix = ''): Record<EventTopic, string> {
  return {
    'vigil.decisions': `${prefix}vigil.decisions`,
    'vigil.requests': `${prefix}vigil.requests`,
    'vigil.actions': `${prefix}vigil.actions`,
  };
}

/** Every topic name the adapter uses, in EVENT_TOPICS order. */
export function allTopicNames(prefix = ''): string[] {
  const names = kafkaTopicNames(prefix);
  return EVENT_TOPICS.map((t) => names[t]);
}
