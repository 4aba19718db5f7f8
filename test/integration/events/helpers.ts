// Reading topics back with the real consumer, and a Kafka broker of the test's own to stop and
// restart on the same port (the shared development broker must stay up for everyone else).
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Admin, Consumer, stringDeserializers } from '@platformatic/kafka';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../../..');

export interface Consumed {
  topic: string;
  partition: number;
  offset: bigint;
  key: string;
  value: any;
  headers: Map<string, string>;
}

/** Every message of the topic, from the beginning, until `count` arrived (or the timeout). */
export async function consumeTopic(
  brokers: string[],
  topic: string,
  count: number,
  timeoutMs = 60_000,
): Promise<Consumed[]> {
  const consumer = new Consumer({
    groupId: `test-${randomUUID()}`,
    clientId: 'events-test-consumer',
    bootstrapBrokers: brokers,
    deserializers: stringDeserializers,
    maxWaitTime: 200,
  });
  const got: Consumed[] = [];
  try {
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false });
    const timer = setTimeout(() => void stream.close(), timeoutMs);
    try {
      for await (const m of stream) {
        got.push({
          topic: m.topic,
          partition: m.partition,
          offset: m.offset,
          key: m.key,
          value: JSON.parse(m.value),
          headers: m.headers,
        });
        if (got.length >= count) break;
      }
    } finally {
      clearTimeout(timer);
      await stream.close().catch(() => {});
    }
  } finally {
    await consumer.close(true).catch(() => {});
  }
  return got;
}

/** Messages stored in the topic: the sum of its partitions' end offsets (fresh topics, no compaction). */
export async function topicSize(brokers: string[], topic: string): Promise<number> {
  const consumer = new Consumer({
    groupId: `test-${randomUUID()}`,
    clientId: 'events-test-offsets',
    bootstrapBrokers: brokers,
  });
  try {
    const offsets = await consumer.listOffsets({ topics: [topic] });
    return (offsets.get(topic) ?? []).reduce((n, o) => n + Number(o), 0);
  } finally {
    await consumer.close(true).catch(() => {});
  }
}

export async function describeTopics(
  brokers: string[],
  topics: string[],
): Promise<Map<string, number>> {
  const admin = new Admin({ clientId: 'events-test-admin', bootstrapBrokers: brokers });
  try {
    const md = await admin.metadata({ topics });
    return new Map([...md.topics].map(([name, t]) => [name, t.partitionsCount]));
  } finally {
    await admin.close();
  }
}

export async function listTopics(brokers: string[]): Promise<string[]> {
  const admin = new Admin({ clientId: 'events-test-admin', bootstrapBrokers: brokers });
  try {
    return await admin.listTopics();
  } finally {
    await admin.close();
  }
}

/** Per key, the `seq` values in the order they were consumed. */
export function seqsByKey(msgs: Consumed[], seq: (m: Consumed) => number): Map<string, number[]> {
  const by = new Map<string, number[]>();
  for (const m of msgs) {
    let l = by.get(m.key);
    if (!l) by.set(m.key, (l = []));
    l.push(seq(m));
  }
  return by;
}

export class OwnKafka {
  readonly dir: string;
  brokers: string[] = [];

  constructor() {
    this.dir = mkdtempSync(path.join(tmpdir(), 'vigil-kafka-'));
  }

  async start(): Promise<void> {
    await run('bash', [path.join(root, 'scripts/kafka.sh'), 'start', this.dir]);
    const env = readFileSync(path.join(this.dir, 'kafka.env'), 'utf8');
    const line = env.split('\n').find((l) => l.startsWith('KAFKA_BROKERS='));
    if (!line) throw new Error('KAFKA_BROKERS missing');
    this.brokers = line.slice('KAFKA_BROKERS='.length).trim().split(',');
  }

  /** The broker's process ends (SIGTERM, then SIGKILL after 5 s); its data stays. */
  async stop(): Promise<void> {
    await run('bash', [path.join(root, 'scripts/kafka.sh'), 'stop', this.dir]);
  }

  /** Same port, same data (scripts/kafka.sh restart). */
  async restart(): Promise<void> {
    await run('bash', [path.join(root, 'scripts/kafka.sh'), 'restart', this.dir]);
  }

  async destroy(): Promise<void> {
    await this.stop().catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }
}
