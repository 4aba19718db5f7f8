// The buffer between the answer path and the adapters, against a scripted transport: what the
// caller sees (never blocked, never thrown at), what is counted, and the order of delivery.
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  BufferedEventSink,
  type BufferedEvent,
  type EventTransport,
} from '../../../storage/events/index.ts';

class PermanentError extends Error {}

/** Records every batch; `fail` decides, per call, whether the send rejects. */
class ScriptedTransport implements EventTransport {
  readonly name = 'file' as const;
  batches: BufferedEvent[][] = [];
  delivered: BufferedEvent[] = [];
  calls = 0;
  closed = false;
  fail: (batch: readonly BufferedEvent[], call: number) => Error | undefined = () => undefined;
  /** When set, a send waits for this promise before answering. */
  gate: Promise<void> | undefined;

  async send(batch: readonly BufferedEvent[]): Promise<void> {
    const call = ++this.calls;
    this.batches.push([...batch]);
    if (this.gate) await this.gate;
    const err = this.fail(batch, call);
    if (err) throw err;
    this.delivered.push(...batch);
  }

  isPermanent(err: unknown): boolean {
    return err instanceof PermanentError;
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

const values = (events: BufferedEvent[]) => events.map((e) => JSON.parse(e.value.toString()));

describe('BufferedEventSink', () => {
  it('delivers in batches bounded by count and bytes, lingering for partial ones', async () => {
    const t = new ScriptedTransport();
    const sink = new BufferedEventSink(t, { batchSize: 100, maxBatchBytes: 4_000, lingerMs: 5 });
    for (let i = 0; i < 250; i++)
      sink.publish('vigil.decisions', `k${i % 7}`, { schema: 'x/1', i });
    // Nothing is sent synchronously inside publish().
    expect(t.calls).toBe(0);
    await sink.flush();
    expect(values(t.delivered).map((v) => v.i)).toEqual([...Array(250).keys()]);
    for (const b of t.batches) {
      expect(b.length).toBeLessThanOrEqual(100);
      expect(b.reduce((n, e) => n + e.value.length, 0)).toBeLessThanOrEqual(4_000);
    }
    expect(t.delivered[0]).toMatchObject({ topic: 'vigil.decisions', key: 'k0', schema: 'x/1' });
    expect(sink.stats()).toEqual({ buffered: 0, delivered: 250, dropped: 0, failed: 0 });

    // A lone event goes out after the linger, without flush().
    sink.publish('vigil.actions', 'w', { one: true });
    await new Promise((r) => setTimeout(r, 50));
    expect(sink.stats().delivered).toBe(251);
    await sink.close();
    expect(t.closed).toBe(true);
  });

  it('serializes at publish: later changes to the object are not published', async () => {
    const t = new ScriptedTransport();
    const sink = new BufferedEventSink(t);
    const v = { n: 1 };
    sink.publish('vigil.requests', 'k', v);
    v.n = 2;
    await sink.flush();
    expect(values(t.delivered)).toEqual([{ n: 1 }]);
    await sink.close();
  });

  it('lingers for each partial batch, not only the first after a quiet spell', async () => {
    const t = new ScriptedTransport();
    let open!: () => void;
    t.gate = new Promise<void>((r) => (open = r));
    const sink = new BufferedEventSink(t, { lingerMs: 40, batchSize: 100 });
    sink.publish('vigil.decisions', 'k', { n: 1 });
    await sleep(60);
    expect(t.calls).toBe(1); // the first batch went after its linger, and waits on the gate
    sink.publish('vigil.decisions', 'k', { n: 2 });
    sink.publish('vigil.decisions', 'k', { n: 3 });
    t.gate = undefined;
    open();
    await sleep(15);
    // Acknowledged: the two that came meanwhile wait for their own linger, not sent at once.
    expect(t.calls).toBe(1);
    await sleep(50);
    expect(t.batches.map((b) => b.length)).toEqual([1, 2]);
    // A flush does not wait for a linger.
    sink.publish('vigil.decisions', 'k', { n: 4 });
    await sink.flush();
    expect(t.batches.map((b) => b.length)).toEqual([1, 2, 1]);
    await sink.close();
  });

  it('builds events published as functions after the caller returns, in publish order', async () => {
    const t = new ScriptedTransport();
    const sink = new BufferedEventSink(t, { lingerMs: 0 });
    const built: string[] = [];
    sink.publish('vigil.decisions', 'k', () => {
      built.push('a');
      return { n: 1 };
    });
    // Nothing built on the caller's turn; a plain value after it waits its turn too.
    expect(built).toEqual([]);
    sink.publish('vigil.decisions', 'k', { n: 2 });
    sink.publish('vigil.decisions', 'k', () => {
      built.push('c');
      return { n: 3 };
    });
    // A builder that throws costs only its own event (dropped, counted).
    sink.publish('vigil.decisions', 'k', () => {
      throw new Error('bad');
    });
    expect(sink.stats().buffered).toBe(4);
    await new Promise((r) => setImmediate(r));
    expect(built).toEqual(['a', 'c']);
    await sink.flush();
    expect(t.delivered.map((e) => JSON.parse(e.value.toString()).n)).toEqual([1, 2, 3]);
    expect(sink.stats()).toMatchObject({ delivered: 3, dropped: 1, buffered: 0 });
    // flush() builds what still waits instead of leaving it behind.
    sink.publish('vigil.decisions', 'k', () => ({ n: 4 }));
    await sink.flush();
    expect(t.delivered).toHaveLength(4);
    await sink.close();
  });

  it('never throws: unserializable, oversized and unknown-topic events are dropped and counted', async () => {
    const registry = new Registry();
    const errors: unknown[] = [];
    const t = new ScriptedTransport();
    const sink = new BufferedEventSink(t, {
      registry,
      maxEventBytes: 1_000,
      onError: (e) => errors.push(e),
    });
    const cyclic: any = {};
    cyclic.self = cyclic;
    const throwing = {
      get x() {
        throw new Error('getter');
      },
    };
    expect(() => {
      sink.publish('vigil.decisions', 'k', cyclic);
      sink.publish('vigil.decisions', 'k', { big: 10n });
      sink.publish('vigil.decisions', 'k', throwing);
      sink.publish('vigil.decisions', 'k', { s: 'é'.repeat(600) }); // 1,200 bytes of UTF-8
      sink.publish('vigil.nope' as any, 'k', {});
      sink.publish('vigil.decisions', 'k', { fine: true });
    }).not.toThrow();
    await sink.flush();
    expect(sink.stats()).toEqual({ buffered: 0, delivered: 1, dropped: 4, failed: 0 });
    expect(errors.length).toBeGreaterThanOrEqual(4);
    await sink.close();
    sink.publish('vigil.actions', 'k', { after: 'close' });
    expect(sink.stats().dropped).toBe(5);
    const text = await registry.metrics();
    expect(text).toMatch(/vigil_events_dropped_total\{topic="vigil.decisions"\} 4/);
    expect(text).toMatch(/vigil_events_dropped_total\{topic="vigil.actions"\} 1/);
    expect(text).toMatch(/vigil_events_delivered_total\{topic="vigil.decisions"\} 1/);
  });

  it('is bounded: a stuck adapter makes publish drop (counted), never wait', async () => {
    const registry = new Registry();
    const t = new ScriptedTransport();
    let release!: () => void;
    t.gate = new Promise((r) => (release = r));
    const sink = new BufferedEventSink(t, { capacity: 1_000, batchSize: 100, registry });
    let worst = 0;
    for (let i = 0; i < 5_000; i++) {
      const t0 = performance.now();
      sink.publish('vigil.decisions', `k${i % 10}`, { i });
      worst = Math.max(worst, performance.now() - t0);
    }
    expect(sink.stats()).toMatchObject({ buffered: 1_000, dropped: 4_000 });
    expect(worst).toBeLessThan(50);
    expect(await registry.metrics()).toMatch(/vigil_events_buffered\{adapter="file"\} 1000/);
    release();
    await sink.flush();
    // The first 1,000 were kept, in order; the rest were refused at the door.
    expect(values(t.delivered).map((v) => v.i)).toEqual([...Array(1_000).keys()]);
    expect(sink.stats()).toEqual({ buffered: 0, delivered: 1_000, dropped: 4_000, failed: 0 });
    await sink.close();
  });

  it('also bounds the bytes held', async () => {
    const t = new ScriptedTransport();
    t.gate = new Promise(() => {});
    const sink = new BufferedEventSink(t, { maxBufferedBytes: 10_000, closeTimeoutMs: 0 });
    // Each event takes 995 bytes: an 18-byte header, a 1-byte key, 976 bytes of JSON (é is 2).
    for (let i = 0; i < 100; i++) sink.publish('vigil.decisions', 'k', { s: 'é'.repeat(484) });
    expect(sink.stats().buffered).toBe(10);
    expect(sink.stats().dropped).toBe(90);
    await sink.close();
  });

  it('retries a failed batch first, with backoff, so per-key order survives an outage', async () => {
    const t = new ScriptedTransport();
    t.fail = (_b, call) => (call <= 4 ? new Error('broker down') : undefined);
    const sink = new BufferedEventSink(t, {
      batchSize: 50,
      retryInitialMs: 5,
      retryMaxMs: 20,
    });
    for (let i = 0; i < 200; i++) sink.publish('vigil.decisions', `k${i % 3}`, { k: i % 3, i });
    expect(sink.health().ok).toBe(true);
    await new Promise((r) => setTimeout(r, 15));
    expect(sink.health()).toMatchObject({ ok: false, last_error: 'broker down' });
    await sink.flush();
    expect(t.calls).toBeGreaterThan(4);
    const got = values(t.delivered);
    expect(got.map((v) => v.i)).toEqual([...Array(200).keys()]);
    expect(sink.stats()).toEqual({ buffered: 0, delivered: 200, dropped: 0, failed: 0 });
    expect(sink.health()).toMatchObject({ ok: true, last_error: null });
    await sink.close();
  });

  it('isolates an event the adapter refuses for good, and delivers the rest in order', async () => {
    const t = new ScriptedTransport();
    t.fail = (b) =>
      b.some((e) => JSON.parse(e.value.toString()).poison)
        ? new PermanentError('too large')
        : undefined;
    const sink = new BufferedEventSink(t, { batchSize: 10 });
    for (let i = 0; i < 30; i++) sink.publish('vigil.actions', 'w', { i, poison: i === 13 });
    await sink.flush();
    expect(values(t.delivered).map((v) => v.i)).toEqual(
      [...Array(30).keys()].filter((i) => i !== 13),
    );
    expect(sink.stats()).toEqual({ buffered: 0, delivered: 29, dropped: 0, failed: 1 });
    await sink.close();
  });

  it('close() delivers what it can within its timeout and counts the rest failed', async () => {
    const t = new ScriptedTransport();
    t.fail = () => new Error('still down');
    const sink = new BufferedEventSink(t, {
      retryInitialMs: 5,
      retryMaxMs: 10,
      closeTimeoutMs: 100,
    });
    for (let i = 0; i < 10; i++) sink.publish('vigil.requests', 'k', { i });
    const t0 = Date.now();
    await sink.close();
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(sink.stats()).toEqual({ buffered: 0, delivered: 0, dropped: 0, failed: 10 });
    expect(t.closed).toBe(true);
  });

  it('close() flushes a healthy adapter completely', async () => {
    const t = new ScriptedTransport();
    const sink = new BufferedEventSink(t, { lingerMs: 1_000 });
    for (let i = 0; i < 10; i++) sink.publish('vigil.requests', 'k', { i });
    await sink.close();
    expect(sink.stats()).toEqual({ buffered: 0, delivered: 10, dropped: 0, failed: 0 });
  });

  it('shares one registry between sinks', async () => {
    const registry = new Registry();
    const a = new BufferedEventSink(new ScriptedTransport(), { registry });
    const b = new BufferedEventSink(new ScriptedTransport(), { registry });
    a.publish('vigil.decisions', 'k', {});
    b.publish('vigil.decisions', 'k', {});
    await Promise.all([a.close(), b.close()]);
    expect(await registry.metrics()).toMatch(
      /vigil_events_delivered_total\{topic="vigil.decisions"\} 2/,
    );
  });
});
