// Event stream benchmark: how many events a second reach a real Kafka broker (acks=all,
// idempotent) and the local file, and what publishing costs the answer path.
//   node --experimental-strip-types bench/events.ts
// KAFKA_BROKERS from the environment, or a broker of its own started with scripts/kafka.sh in
// a temp dir (and stopped after).
//
// The overhead figure is a decision-latency proxy: a loop of a fixed CPU-bound work unit (one
// "decision"), yielding to the event loop every few units as a server does between requests,
// timed with and without publishing one decision event per unit. The sink's background work
// (batching, the Kafka client's encoding and socket writes) runs on the same thread, between
// units, so it is counted too; each run ends with flush(). Rounds alternate; medians reported.
import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep, setImmediate as yieldLoop } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  type BufferedEventSink,
  createEventSink,
  decisionEvent,
  type DecisionEventInput,
} from '../storage/events/index.ts';

export interface EventsBenchOptions {
  brokers?: string[] | undefined;
  /** Events for each throughput run. Default 200,000. */
  events?: number;
  /** Work units per overhead run. Default 4,000. */
  units?: number;
  /** Target duration of one work unit, µs (calibrated at start). Default 100. */
  unitUs?: number;
  rounds?: number;
  log?: (line: string) => void;
}

export interface EventsBenchResult {
  kafka: { events: number; seconds: number; eventsPerSecond: number; valueBytes: number };
  file: { events: number; seconds: number; eventsPerSecond: number };
  publish: {
    /** publish() alone, value prepared beforehand: median and p99 per call, µs. */
    callUs: { p50: number; p99: number; max: number };
    /** decisionEvent() + publish(): what the answer path adds per decision, µs. */
    buildAndPublishUs: { p50: number; p99: number };
  };
  overhead: {
    unitUs: number;
    /** Loop time with publish() vs without, as a fraction (0.02 = 2 %). */
    publishOnly: number;
    buildAndPublish: number;
    target: number;
    pass: boolean;
  };
}

const root = path.resolve(import.meta.dirname, '..');

function sampleRecord(i: number): DecisionEventInput {
  return {
    response: {
      id: `dec_${randomUUID()}`,
      decision: i % 10 === 0 ? 'REVIEW' : 'ALLOW',
      context: 'checkout',
      ruleset_id: 'rs_01J9Z6K8Q2',
      credential_fingerprint: 'crd_5f2b8c1e9a7d4f3b',
      rules: [
        { rule_id: 'trusted', result: 'not_matched' },
        { rule_id: 'known-bad', result: 'not_matched' },
        { rule_id: 'card-testing', result: 'not_matched' },
        { rule_id: 'many-cards', result: 'not_matched' },
        {
          rule_id: 'big-amount',
          result: i % 10 === 0 ? 'matched' : 'not_matched',
          action: 'REVIEW',
        },
      ],
      backend_results: [],
      has_errors: false,
      degraded: [],
      evaluation_type: 'RULE_ENGINE',
      workflow_id: i % 10 === 0 ? `session-sess_${i % 500}` : null,
      elapsed_ms: 0.41,
    },
    context: {
      context: 'checkout',
      transaction: { reference: `ord_${i}`, amount: 14999, currency: 'EUR' },
      credential_fingerprint: 'crd_5f2b8c1e9a7d4f3b',
      customer: { id: `cus_${i % 1000}`, email: `user${i % 1000}@example.com` },
      device: {
        ip: '203.0.113.7',
        fingerprint: 'dev_9',
        session: `sess_${i % 500}`,
        user_agent:
          'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
      },
      metadata: { channel: 'web' },
    },
    session: `sess_${i % 500}`,
    created_at: new Date().toISOString(),
  };
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * q))] ?? 0;
};
const median = (xs: number[]) => quantile(xs, 0.5);
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** A fixed CPU-bound unit: `reps` SHA-256 rounds over 1 KiB. */
function work(reps: number, buf: Buffer): number {
  let acc = 0;
  for (let i = 0; i < reps; i++) {
    buf[0] = i & 0xff;
    acc ^= createHash('sha256').update(buf).digest()[0]!;
  }
  return acc;
}

function calibrate(targetUs: number, buf: Buffer): number {
  let reps = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < 200; i++) work(reps, buf);
    const us = ((performance.now() - t0) * 1000) / 200;
    if (us >= targetUs) return Math.max(1, Math.round((reps * targetUs) / us));
    reps *= 2;
  }
}

/** Seconds to deliver n events, the publisher keeping at most ~20,000 waiting (no drops). */
async function throughput(sink: BufferedEventSink, n: number, values: object[]): Promise<number> {
  const before = sink.stats();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    sink.publish('vigil.decisions', `sess_${i % 500}`, values[i % values.length]!);
    // Give the drainer the loop now and then, as a server's request handling would.
    if (i % 1_000 === 999) {
      await yieldLoop();
      while (sink.stats().buffered > 20_000) await sleep(1);
    }
  }
  await sink.flush();
  const s = (performance.now() - t0) / 1000;
  const st = sink.stats();
  if (st.delivered - before.delivered !== n || st.dropped !== before.dropped)
    throw new Error(`delivered ${st.delivered - before.delivered} of ${n} (${JSON.stringify(st)})`);
  return s;
}

export async function runEventsBench(opts: EventsBenchOptions = {}): Promise<EventsBenchResult> {
  const log = opts.log ?? (() => {});
  const N = opts.events ?? 200_000;
  const units = opts.units ?? 4_000;
  const rounds = opts.rounds ?? 5;
  let ownDir: string | undefined;
  let brokers = opts.brokers;
  if (!brokers?.length) {
    ownDir = mkdtempSync(path.join(tmpdir(), 'vigil-bench-kafka-'));
    log(`starting a Kafka broker of its own in ${ownDir}`);
    execFileSync('bash', [path.join(root, 'scripts/kafka.sh'), 'start', ownDir], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const env = readFileSync(path.join(ownDir, 'kafka.env'), 'utf8');
    brokers = (/KAFKA_BROKERS=(.*)/.exec(env)?.[1] ?? '').trim().split(',');
  }
  const dataDir = mkdtempSync(path.join(tmpdir(), 'vigil-bench-events-'));
  try {
    const values = Array.from({ length: 1_000 }, (_, i) =>
      decisionEvent(sampleRecord(i), { source: 'api', redact: ['$.customer.email'] }),
    );
    const valueBytes = Math.round(
      values.reduce((n, v) => n + Buffer.byteLength(JSON.stringify(v)), 0) / values.length,
    );
    const kafkaSink = (prefix: string) =>
      createEventSink({
        kafka: { brokers, clientId: 'vigil-bench', topicPrefix: prefix, partitions: 3 },
        dataDir,
        capacity: 1_000_000,
      });

    // Throughput to the broker (topics created on the first send: warm up first).
    const prefix = `bench-${randomUUID().slice(0, 8)}.`;
    const ks = kafkaSink(prefix);
    await throughput(ks, 5_000, values);
    const kSeconds = await throughput(ks, N, values);
    await ks.close();
    const kafka = {
      events: N,
      seconds: round(kSeconds, 2),
      eventsPerSecond: Math.round(N / kSeconds),
      valueBytes,
    };
    log(
      `kafka: ${kafka.eventsPerSecond} events/s (${N} events of ~${valueBytes} B, acks=all, idempotent)`,
    );

    const fs = createEventSink({ dataDir });
    await throughput(fs, 5_000, values);
    const fSeconds = await throughput(fs, N, values);
    await fs.close();
    const file = {
      events: N,
      seconds: round(fSeconds, 2),
      eventsPerSecond: Math.round(N / fSeconds),
    };
    log(`file: ${file.eventsPerSecond} events/s`);

    // Per-call cost on a warm sink delivering to the broker.
    const cs = kafkaSink(prefix);
    const call: number[] = [];
    const build: number[] = [];
    for (let i = 0; i < 50_000; i++) {
      const v = values[i % values.length]!;
      const t0 = performance.now();
      cs.publish('vigil.decisions', `sess_${i % 500}`, v);
      call.push((performance.now() - t0) * 1000);
      const rec = sampleRecord(i);
      const t1 = performance.now();
      cs.publish(
        'vigil.decisions',
        rec.session!,
        decisionEvent(rec, { source: 'api', redact: ['$.customer.email'] }),
      );
      build.push((performance.now() - t1) * 1000);
      if (i % 100 === 99) await yieldLoop();
    }
    await cs.flush();
    const publish = {
      callUs: {
        p50: round(median(call), 2),
        p99: round(quantile(call, 0.99), 2),
        max: round(Math.max(...call), 0),
      },
      buildAndPublishUs: { p50: round(median(build), 2), p99: round(quantile(build, 0.99), 2) },
    };
    log(
      `publish(): p50 ${publish.callUs.p50} µs, p99 ${publish.callUs.p99} µs; decisionEvent()+publish(): p50 ${publish.buildAndPublishUs.p50} µs, p99 ${publish.buildAndPublishUs.p99} µs`,
    );

    // Overhead on a loop of fixed work units.
    const buf = Buffer.alloc(1024, 7);
    const reps = calibrate(opts.unitUs ?? 100, buf);
    const records = Array.from({ length: 500 }, (_, i) => sampleRecord(i));
    const run = async (mode: 'none' | 'publish' | 'build') => {
      const t0 = performance.now();
      let acc = 0;
      for (let i = 0; i < units; i++) {
        acc ^= work(reps, buf);
        if (mode === 'publish')
          cs.publish('vigil.decisions', `sess_${i % 500}`, values[i % values.length]!);
        else if (mode === 'build') {
          const rec = records[i % records.length]!;
          cs.publish(
            'vigil.decisions',
            rec.session!,
            decisionEvent(rec, { source: 'api', redact: ['$.customer.email'] }),
          );
        }
        if (i % 10 === 9) await yieldLoop();
      }
      await cs.flush();
      return { ms: performance.now() - t0, acc };
    };
    await run('none');
    await run('build');
    const times = { none: [] as number[], publish: [] as number[], build: [] as number[] };
    for (let r = 0; r < rounds; r++) {
      for (const mode of ['none', 'publish', 'build'] as const)
        times[mode].push((await run(mode)).ms);
    }
    await cs.close();
    const base = median(times.none);
    const unitUs = round((base * 1000) / units, 1);
    const overhead = {
      unitUs,
      publishOnly: round(median(times.publish) / base - 1, 4),
      buildAndPublish: round(median(times.build) / base - 1, 4),
      target: 0.05,
      pass: false,
    };
    overhead.pass = overhead.buildAndPublish <= overhead.target;
    log(
      `overhead on a ${unitUs} µs work unit: publish ${(overhead.publishOnly * 100).toFixed(2)} %, decisionEvent+publish ${(overhead.buildAndPublish * 100).toFixed(2)} % (target ≤ 5 %: ${overhead.pass ? 'PASS' : 'FAIL'})`,
    );
    return { kafka, file, publish, overhead };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
    if (ownDir) {
      execFileSync('bash', [path.join(root, 'scripts/kafka.sh'), 'stop', ownDir], {
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      rmSync(ownDir, { recursive: true, force: true });
    }
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const brokers = process.env.KAFKA_BROKERS?.split(',').filter(Boolean);
  const result = await runEventsBench({ brokers, log: (l) => console.log(l) });
  console.log(JSON.stringify(result, null, 2));
  process.exitCode = result.overhead.pass ? 0 : 1;
}
