// The IPC counter adapter of proxy workers against the primary's MemoryCounterStore, over an
// in-process channel pair that carries messages as the cluster channel does (JSON, async).
// The multi-process path is test/integration/proxy/cluster-velocity.test.ts.
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import type { CounterRequest } from '../../../rulesets/ports.ts';
import { IpcCounterStore, serveCount, type IpcChannel } from '../../../storage/counters/ipc.ts';
import { MemoryCounterStore } from '../../../storage/counters/memory.ts';
import { isStoreError } from '../../../storage/errors.ts';

const HOUR = 3_600_000;
const card = (value: string): CounterRequest[] => [
  {
    field: '$.credential_fingerprint',
    value,
    windowsMs: [60_000, HOUR],
    distinct: [{ path: '$.device.ip', value: '10.0.0.1', windowsMs: [HOUR] }],
  },
];

/** A worker's end wired to a primary answering from `store` (or not answering: `stalled`). */
function pair(store: MemoryCounterStore, opts: { stalled?: boolean; connected?: boolean } = {}) {
  const worker = new EventEmitter();
  const sent: unknown[] = [];
  const channel: IpcChannel & { connected: boolean } = {
    connected: opts.connected ?? true,
    send(message, cb) {
      sent.push(message);
      const wire = JSON.parse(JSON.stringify(message)) as unknown;
      setImmediate(() => {
        cb?.(null);
        if (opts.stalled) return;
        serveCount(
          store,
          {
            send: (reply) => {
              setImmediate(() => worker.emit('message', JSON.parse(JSON.stringify(reply))));
              return true;
            },
          },
          wire,
        );
      });
      return true;
    },
    on: (e, l) => worker.on(e, l),
    off: (e, l) => worker.off(e, l),
  };
  return { channel, sent, worker };
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

function adapter(channel: IpcChannel, timeoutMs = 50, failureThreshold = 5) {
  const s = new IpcCounterStore({ channel, timeoutMs, failureThreshold, coolDownMs: 60_000 });
  closers.push(() => s.close());
  return s;
}

describe('IpcCounterStore', () => {
  it('returns the counts the primary store gives, for every window and distinct path', async () => {
    const primary = new MemoryCounterStore();
    const a = adapter(pair(primary).channel);
    const b = adapter(pair(primary).channel);
    const t = 1_000_000;
    await a.count('d1', t, card('tok_1'), { record: true });
    const c = await b.count('d2', t + 1, card('tok_1'), { record: true });
    expect(c.get('$.credential_fingerprint', 'tok_1', 60_000)).toBe(2);
    expect(c.get('$.credential_fingerprint', 'tok_1', HOUR)).toBe(2);
    expect(c.get('$.credential_fingerprint', 'tok_1', HOUR, '$.device.ip')).toBe(1);
    // The same as counting in the primary directly.
    const direct = primary.countSync('d3', t + 2, card('tok_1'), { record: false });
    expect(direct.get('$.credential_fingerprint', 'tok_1', HOUR)).toBe(3);
  });

  it('counts a retried decision id once, whichever worker retries it', async () => {
    const primary = new MemoryCounterStore();
    const a = adapter(pair(primary).channel);
    const b = adapter(pair(primary).channel);
    const first = await a.count('dec_same', 5_000, card('tok_r'), { record: true });
    const again = await b.count('dec_same', 5_010, card('tok_r'), { record: true });
    const again2 = await a.count('dec_same', 5_020, card('tok_r'), { record: true });
    expect(first.get('$.credential_fingerprint', 'tok_r', HOUR)).toBe(1);
    expect(again.get('$.credential_fingerprint', 'tok_r', HOUR)).toBe(1);
    expect(again2.get('$.credential_fingerprint', 'tok_r', HOUR)).toBe(1);
    const next = await b.count('dec_other', 5_030, card('tok_r'), { record: true });
    expect(next.get('$.credential_fingerprint', 'tok_r', HOUR)).toBe(2);
  });

  it('passes on that a fresh decision id cannot come again (repeatable: false)', async () => {
    const primary = new MemoryCounterStore();
    const a = adapter(pair(primary).channel);
    const once = { record: true, repeatable: false };
    await a.count('dec_fresh', 6_000, card('tok_f'), once);
    // Not remembered in the primary: the same id again (which decide never sends) counts again.
    const again = await a.count('dec_fresh', 6_010, card('tok_f'), once);
    expect(again.get('$.credential_fingerprint', 'tok_f', HOUR)).toBe(2);
  });

  it('counts 500 concurrent decisions from 4 workers exactly 1..500', async () => {
    const primary = new MemoryCounterStore();
    const workers = Array.from({ length: 4 }, () => adapter(pair(primary).channel, 5_000));
    const seen = await Promise.all(
      Array.from({ length: 500 }, async (_, i) => {
        const c = await workers[i % 4]!.count(`d${i}`, 10_000, card('tok_c'), { record: true });
        return c.get('$.credential_fingerprint', 'tok_c', HOUR)!;
      }),
    );
    expect(seen.sort((x, y) => x - y)).toEqual(Array.from({ length: 500 }, (_, k) => k + 1));
  });

  it('a dry run counts the decision without recording it', async () => {
    const primary = new MemoryCounterStore();
    const a = adapter(pair(primary).channel);
    await a.count('d1', 1_000, card('tok_d'), { record: true });
    const dry = await a.count('d2', 1_001, card('tok_d'), { record: false });
    expect(dry.get('$.credential_fingerprint', 'tok_d', HOUR)).toBe(2);
    const real = await a.count('d3', 1_002, card('tok_d'), { record: true });
    expect(real.get('$.credential_fingerprint', 'tok_d', HOUR)).toBe(2);
  });

  it('fails with counter_unavailable after the timeout when the primary stalls, then fails fast', async () => {
    const { channel, sent } = pair(new MemoryCounterStore(), { stalled: true });
    const a = adapter(channel, 30, 2);
    const t0 = performance.now();
    const err = await a.count('d1', 1, card('tok_s'), { record: true }).catch((e: unknown) => e);
    const waited = performance.now() - t0;
    expect(err).toMatchObject({ code: 'counter_unavailable', reason: 'timeout' });
    expect(isStoreError(err)).toBe(false);
    expect(waited).toBeGreaterThanOrEqual(25);
    expect(waited).toBeLessThan(1_000);
    await expect(a.count('d2', 2, card('tok_s'), { record: true })).rejects.toMatchObject({
      reason: 'timeout',
    });
    // Two timeouts in a row: the circuit is open, and the next call neither waits nor sends.
    const n = sent.length;
    const t1 = performance.now();
    await expect(a.count('d3', 3, card('tok_s'), { record: true })).rejects.toMatchObject({
      code: 'counter_unavailable',
      reason: 'circuit_open',
    });
    expect(performance.now() - t1).toBeLessThan(10);
    expect(sent.length).toBe(n);
    expect(a.status()).toMatchObject({ breaker: 'open', pending: 0 });
  });

  it('ignores a reply that comes after its timeout', async () => {
    const primary = new MemoryCounterStore();
    const { channel, worker } = pair(primary, { stalled: true });
    const a = adapter(channel, 20);
    await expect(a.count('d1', 1, card('tok_l'), { record: true })).rejects.toMatchObject({
      reason: 'timeout',
    });
    expect(() => worker.emit('message', { t: 'vigil.counted', i: 1, c: [1, 1, 1] })).not.toThrow();
    expect(a.status().pending).toBe(0);
  });

  it('fails at once on a closed channel, on a closed adapter, and on an error reply', async () => {
    const closed = adapter(pair(new MemoryCounterStore(), { connected: false }).channel);
    await expect(closed.count('d', 1, card('x'), { record: true })).rejects.toMatchObject({
      reason: 'not_connected',
    });

    const a = new IpcCounterStore({ channel: pair(new MemoryCounterStore()).channel });
    await a.close();
    await expect(a.count('d', 1, card('x'), { record: true })).rejects.toMatchObject({
      reason: 'closed',
    });

    // The primary could not count (a request it cannot read): an error reply, not a hang.
    const primary = new MemoryCounterStore();
    const b = adapter(pair(primary).channel, 1_000);
    const bad = [{ field: '$.f', value: 'v', windowsMs: [HOUR], distinct: null }] as never;
    await expect(b.count('d', 1, bad, { record: true })).rejects.toMatchObject({
      code: 'counter_unavailable',
      reason: 'error',
    });
  });

  it('asks nothing when there is nothing to count', async () => {
    const { channel, sent } = pair(new MemoryCounterStore(), { stalled: true });
    const c = await adapter(channel).count('d', 1, [], { record: true });
    expect(c.get('$.x', 'y', 1)).toBeUndefined();
    expect(sent).toHaveLength(0);
  });
});
