// The Kafka adapter against the shared development broker (KRaft, auto topic creation off).
// Each test uses topics of its own prefix.
import { randomUUID } from 'node:crypto';
import { Admin } from '@platformatic/kafka';
import { Registry } from 'prom-client';
import { describe, expect, inject, it } from 'vitest';
import { eventsTail } from '../../../cli/events-tail.ts';
import {
  DecisionEventSchema,
  allTopicNames,
  createEventSink,
  decisionEvent,
  kafkaTopicNames,
  requestEvent,
} from '../../../storage/events/index.ts';
import { consumeTopic, describeTopics, seqsByKey, topicSize } from './helpers.ts';

const brokers = inject('services').kafkaBrokers.split(',');
const prefix = () => `t-${randomUUID().slice(0, 8)}.`;

function decision(i: number, session: string, seq: number, extra: Record<string, unknown> = {}) {
  return decisionEvent(
    {
      response: {
        id: `dec_${i}`,
        decision: 'ALLOW',
        context: 'checkout',
        ruleset_id: 'rs_1',
        credential_fingerprint: 'crd_1',
        rules: [{ rule_id: 'big-amount', result: 'not_matched' }],
        backend_results: [],
        has_errors: false,
        degraded: [],
        evaluation_type: 'RULE_ENGINE',
        workflow_id: null,
        elapsed_ms: 0.3,
      },
      context: {
        transaction: { amount: 100 + i, seq },
        customer: { id: `cus_${session}`, email: `${session}@example.com` },
        device: { ip: '203.0.113.7', session },
        ...extra,
      },
      session,
      created_at: new Date().toISOString(),
    },
    { source: 'api', redact: ['$.customer.email'] },
  );
}

describe('Kafka event sink (real broker)', () => {
  it('creates missing topics, then 10,000 decisions arrive exactly once, in order per key', async () => {
    const p = prefix();
    const registry = new Registry();
    const sink = createEventSink({
      kafka: { brokers, clientId: 'events-test', topicPrefix: p, partitions: 4 },
      dataDir: '/nonexistent',
      registry,
    });
    expect(sink.adapter).toBe('kafka');
    const N = 10_000;
    const seq = new Map<string, number>();
    let worst = 0;
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const session = `sess_${i % 50}`;
      const s = seq.get(session) ?? 0;
      seq.set(session, s + 1);
      const value = decision(i, session, s);
      const c0 = performance.now();
      sink.publish('vigil.decisions', session, value);
      worst = Math.max(worst, performance.now() - c0);
    }
    const publishMs = performance.now() - t0;
    await sink.flush();
    const deliveredMs = performance.now() - t0;
    expect(sink.stats()).toEqual({ buffered: 0, delivered: N, dropped: 0, failed: 0 });
    await sink.close();

    // All three topics exist, with the partitions asked for.
    const parts = await describeTopics(brokers, allTopicNames(p));
    expect([...parts.values()]).toEqual([4, 4, 4]);

    const topic = kafkaTopicNames(p)['vigil.decisions'];
    expect(await topicSize(brokers, topic)).toBe(N);
    const got = await consumeTopic(brokers, topic, N);
    expect(got).toHaveLength(N);
    expect(new Set(got.map((m) => m.value.event_id)).size).toBe(N);
    // One key, one partition, and its events in the order published.
    const partitionOf = new Map<string, Set<number>>();
    for (const m of got) {
      const s = partitionOf.get(m.key) ?? new Set();
      s.add(m.partition);
      partitionOf.set(m.key, s);
    }
    expect([...partitionOf.values()].every((s) => s.size === 1)).toBe(true);
    for (const [key, seqs] of seqsByKey(got, (m) => m.value.transaction.seq)) {
      expect(seqs, key).toEqual([...Array(seq.get(key)).keys()]);
    }
    const first = got[0]!;
    expect(first.headers.get('schema')).toBe('vigil.decision/1');
    expect(DecisionEventSchema.safeParse(first.value).success).toBe(true);
    expect(first.value.customer.email).toMatch(/^sha256:[0-9a-f]{16}$/);
    expect(JSON.stringify(first.value)).not.toContain('@example.com');
    expect(await registry.metrics()).toMatch(
      /vigil_events_delivered_total\{topic="vigil.decisions"\} 10000/,
    );
    console.log(
      `[events] 10,000 decisions: publish loop ${publishMs.toFixed(1)} ms (worst call ${worst.toFixed(3)} ms), delivered (acks=all) after ${deliveredMs.toFixed(0)} ms`,
    );
  });

  it('leaves an existing topic as it is and still publishes to it', async () => {
    const p = prefix();
    const names = kafkaTopicNames(p);
    const admin = new Admin({ clientId: 'events-test-admin', bootstrapBrokers: brokers });
    await admin.createTopics({ topics: [names['vigil.actions']], partitions: 1, replicas: 1 });
    await admin.close();
    const sink = createEventSink({
      kafka: { brokers, clientId: 'events-test', topicPrefix: p, partitions: 2 },
      dataDir: '/nonexistent',
    });
    sink.publish('vigil.actions', 'session-s', { schema: 'vigil.action/1', n: 1 });
    await sink.close();
    expect(sink.stats().delivered).toBe(1);
    const parts = await describeTopics(brokers, allTopicNames(p));
    expect(parts.get(names['vigil.actions'])).toBe(1);
    expect(parts.get(names['vigil.decisions'])).toBe(2);
  });

  it('publishes a valid event for malformed and oversized input', async () => {
    const p = prefix();
    const sink = createEventSink({
      kafka: { brokers, clientId: 'events-test', topicPrefix: p },
      dataDir: '/nonexistent',
    });
    const cyclic: any = { a: 1 };
    cyclic.self = cyclic;
    const huge = 'z'.repeat(2_000_000);
    const value = decision(1, 'sess_x', 0, {
      transaction: { amount: Number.NaN, huge, list: Array(100_000).fill('item'), cyclic, n: 10n },
      customer: {
        password: 'hunter2',
        blob: Array.from({ length: 200 }, () => huge.slice(0, 5000)),
      },
      device: { ip: { not: 'a string' }, user_agent: huge },
    });
    sink.publish('vigil.decisions', 'sess_x', value);
    await sink.close();
    expect(sink.stats()).toEqual({ buffered: 0, delivered: 1, dropped: 0, failed: 0 });
    const [m] = await consumeTopic(brokers, kafkaTopicNames(p)['vigil.decisions'], 1);
    const parsed = DecisionEventSchema.safeParse(m!.value);
    expect(parsed.success).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(m!.value))).toBeLessThanOrEqual(64 * 1024);
    expect(m!.value.truncated.length).toBeGreaterThan(0);
    expect(m!.value.customer.password).toBe('***');
    expect(m!.value.device).toEqual({ user_agent: expect.stringMatching(/…\[\+\d+ chars\]$/) });
  });

  it('events tail reads the topics back, and follows new events', async () => {
    const p = prefix();
    const sink = createEventSink({
      kafka: { brokers, clientId: 'events-test', topicPrefix: p },
      dataDir: '/nonexistent',
    });
    const req = (i: number) =>
      requestEvent({
        method: 'GET',
        path: `/item/${i}?q=secret`,
        route: '/item/*',
        status: 200,
        decision_id: `dec_${i}`,
        decision: 'ALLOW',
        ip: '198.51.100.2',
        elapsed_ms: 2,
        session: 'sess_t',
      });
    for (let i = 0; i < 20; i++) sink.publish('vigil.requests', 'sess_t', req(i));
    sink.publish('vigil.decisions', 'sess_t', decision(0, 'sess_t', 0));
    await sink.flush();

    const out: string[] = [];
    const r = await eventsTail({
      dataDir: '/nonexistent',
      kafkaBrokers: brokers,
      topicPrefix: p,
      topic: 'requests',
      out: (l) => out.push(l),
    });
    expect(r).toEqual({ events: 20, skipped: 0 });
    expect(out[0]).toMatch(
      / request GET \/item\/0 → 200 ALLOW dec_0 ip=198\.51\.100\.2 key=sess_t 2ms$/,
    );
    const all: string[] = [];
    expect(
      (
        await eventsTail({
          dataDir: '',
          kafkaBrokers: brokers,
          topicPrefix: p,
          out: (l) => all.push(l),
        })
      ).events,
    ).toBe(21);

    const ac = new AbortController();
    const live: string[] = [];
    const following = eventsTail({
      dataDir: '',
      kafkaBrokers: brokers,
      topicPrefix: p,
      topic: 'vigil.requests',
      follow: true,
      from: 'end',
      out: (l) => live.push(l),
      signal: ac.signal,
    });
    // The consumer joins its group first; publish until it sees one.
    for (let i = 100; i < 400 && live.length === 0; i++) {
      sink.publish('vigil.requests', 'sess_t', req(i));
      await new Promise((res) => setTimeout(res, 50));
    }
    ac.abort();
    await following;
    expect(live.length).toBeGreaterThan(0);
    expect(live.every((l) => /dec_(1\d\d|[23]\d\d)\b/.test(l))).toBe(true);
    await sink.close();
  });
});
