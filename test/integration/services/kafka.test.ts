import { randomUUID } from 'node:crypto';
import {
  Admin,
  Consumer,
  Producer,
  stringDeserializers,
  stringSerializers,
} from '@platformatic/kafka';
import { describe, expect, inject, it } from 'vitest';

const services = inject('services');
const bootstrapBrokers = services.kafkaBrokers.split(',');

describe('Kafka broker (real, KRaft)', () => {
  it('produces and consumes keyed messages through @platformatic/kafka', async () => {
    const topic = `svc-${randomUUID()}`;
    const admin = new Admin({ clientId: 'svc-admin', bootstrapBrokers });
    await admin.createTopics({ topics: [topic], partitions: 2, replicas: 1 });
    await admin.close();

    const producer = new Producer({
      clientId: 'svc-producer',
      bootstrapBrokers,
      serializers: stringSerializers,
    });
    const sent = Array.from({ length: 20 }, (_, i) => ({
      topic,
      key: `k${i % 3}`,
      value: `v${i}`,
    }));
    await producer.send({ messages: sent, acks: -1 });
    await producer.close();

    const consumer = new Consumer({
      groupId: `svc-${randomUUID()}`,
      clientId: 'svc-consumer',
      bootstrapBrokers,
      deserializers: stringDeserializers,
    });
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: true });
    const got: { key: string; value: string }[] = [];
    for await (const m of stream) {
      got.push({ key: m.key, value: m.value });
      if (got.length === sent.length) break;
    }
    await stream.close();
    await consumer.close(true);

    expect(got.map((m) => m.value).sort()).toEqual(sent.map((m) => m.value).sort());
    // One key lands on one partition, so each key's messages arrive in the order sent.
    for (const key of ['k0', 'k1', 'k2']) {
      expect(got.filter((m) => m.key === key).map((m) => m.value)).toEqual(
        sent.filter((m) => m.key === key).map((m) => m.value),
      );
    }
  });
});
