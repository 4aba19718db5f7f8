// A decision made through the API reaches the real Kafka topic vigil.decisions, keyed by its
// session, in the documented vigil.decision/1 shape and without the raw credential.
import { randomUUID } from 'node:crypto';
import { Consumer, stringDeserializers } from '@platformatic/kafka';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { parseEventValue } from '../../../storage/events/schemas.ts';
import { auth, startRuntime } from './helpers.ts';

const services = inject('services');
let rt: Awaited<ReturnType<typeof startRuntime>>;

beforeAll(async () => {
  rt = await startRuntime({
    KAFKA_BROKERS: services.kafkaBrokers,
    VIGIL_EVENTS_REDACT: '$.customer.email',
  });
});
afterAll(async () => rt?.close());

it('publishes each decision to vigil.decisions, keyed by session, schema-valid, credential-free', async () => {
  const session = `sess_${randomUUID()}`;
  const res = await rt.app.inject({
    method: 'POST',
    url: '/api/decisions',
    headers: auth(),
    payload: {
      context: 'checkout',
      credential: { type: 'masked_pan', bin: '411111', last4: '4242', expiry: '12/29' },
      device: { session },
      customer: { id: 'cus_7', email: 'pii@example.com' },
    },
  });
  expect(res.statusCode).toBe(200);
  const id = JSON.parse(res.body).id as string;

  const consumer = new Consumer({
    groupId: `t-${randomUUID()}`,
    clientId: 't',
    bootstrapBrokers: services.kafkaBrokers.split(','),
    deserializers: stringDeserializers,
  });
  const stream = await consumer.consume({
    topics: ['vigil.decisions'],
    mode: 'earliest',
    autocommit: false,
  });
  let found: { key: string; value: string } | undefined;
  const deadline = Date.now() + 20_000;
  for await (const m of stream) {
    if (m.value.includes(id)) {
      found = { key: m.key, value: m.value };
      break;
    }
    if (Date.now() > deadline) break;
  }
  await stream.close();
  await consumer.close(true);

  expect(found?.key).toBe(session);
  const value = JSON.parse(found!.value) as Record<string, unknown>;
  expect(value).toMatchObject({ schema: 'vigil.decision/1', id, decision: 'ALLOW' });
  expect(parseEventValue(value).ok).toBe(true);
  expect(found!.value).not.toContain('411111');
  // VIGIL_EVENTS_REDACT: the email is hashed before publishing, other fields kept.
  expect(found!.value).not.toContain('pii@example.com');
  expect((value.customer as Record<string, unknown>).email).toMatch(/^sha256:/);
  expect((value.customer as Record<string, unknown>).id).toBe('cus_7');
});
