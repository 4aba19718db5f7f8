// The Redis counter store against a real Redis: exactness under concurrency, idempotency per
// decision, distinct counts, windows on the server's clock, dry runs, and outages (a hung Redis
// and a killed one, restarted on the same port).
import { createHmac, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { CounterRequest } from '../../../rulesets/ports.ts';
import { RedisCounterStore } from '../../../storage/counters/redis.ts';
import { CounterUnavailableError } from '../../../storage/errors.ts';
import { OwnRedis } from './own-services.ts';
import { sleep } from './targets.ts';

const services = inject('services');
const CARD = '$.credential_fingerprint';
const IP = '$.device.ip';

function cardRequest(
  card: string,
  windowsMs: number[],
  ip?: string,
  distinctWindows: number[] = [],
): CounterRequest[] {
  return [
    {
      field: CARD,
      value: card,
      windowsMs,
      distinct: distinctWindows.length ? [{ path: IP, value: ip, windowsMs: distinctWindows }] : [],
    },
  ];
}

describe('RedisCounterStore (real Redis)', () => {
  let prefix: string;
  let store: RedisCounterStore;
  let raw: Redis;

  beforeAll(async () => {
    prefix = `test:${randomUUID()}:`;
    // A generous timeout: 1,000 scripts pipelined at once queue behind each other in Redis.
    store = new RedisCounterStore({ url: services.redisUrl, prefix, commandTimeoutMs: 2_000 });
    await store.ready();
    raw = new Redis(services.redisUrl, { maxRetriesPerRequest: 0 });
  });
  afterAll(async () => {
    await store.close();
    const keys = await raw.keys(`${prefix}*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
  });

  it('counts exactly: 1,000 concurrent decisions on one card get exactly 1..1000', async () => {
    const card = `crd_${randomUUID()}`;
    const t0 = performance.now();
    const counts = await Promise.all(
      Array.from({ length: 1_000 }, (_, i) =>
        store.count(`dec_c${i}`, Date.now(), cardRequest(card, [3_600_000, 60_000]), {
          record: true,
        }),
      ),
    );
    const ms = performance.now() - t0;
    const hour = counts.map((c) => c.get(CARD, card, 3_600_000)!).sort((a, b) => a - b);
    expect(hour).toEqual(Array.from({ length: 1_000 }, (_, i) => i + 1));
    const minute = counts.map((c) => c.get(CARD, card, 60_000)!).sort((a, b) => a - b);
    expect(minute).toEqual(hour);
    console.log(`[redis] 1,000 concurrent count() on one card in ${ms.toFixed(0)} ms`);
  });

  it('counts a retried decision id once, keeping its first time', async () => {
    const card = `crd_${randomUUID()}`;
    const req = cardRequest(card, [60_000]);
    expect((await store.count('dec_a', 0, req, { record: true })).get(CARD, card, 60_000)).toBe(1);
    expect((await store.count('dec_a', 0, req, { record: true })).get(CARD, card, 60_000)).toBe(1);
    const again = await Promise.all(
      Array.from({ length: 20 }, () => store.count('dec_b', 0, req, { record: true })),
    );
    expect(again.map((c) => c.get(CARD, card, 60_000))).toEqual(
      Array.from({ length: 20 }, () => 2),
    );
    const keys = await raw.keys(`${prefix}v:*`);
    const scores = await Promise.all(keys.map((k) => raw.zscore(k, 'dec_a')));
    const first = scores.find((s) => s !== null);
    await sleep(5);
    await store.count('dec_a', 0, req, { record: true });
    const after = await Promise.all(keys.map((k) => raw.zscore(k, 'dec_a')));
    expect(after.find((s) => s !== null)).toBe(first);
  });

  it('counts distinct values per window', async () => {
    const ip = `203.0.113.${Math.floor(Math.random() * 250)}-${randomUUID()}`;
    const req = (card: string | undefined): CounterRequest[] => [
      {
        field: IP,
        value: ip,
        windowsMs: [60_000],
        distinct: [{ path: CARD, value: card, windowsMs: [1_000, 60_000] }],
      },
    ];
    const seq: [string, string | undefined][] = [
      ['d1', 'c1'],
      ['d2', 'c2'],
      ['d3', 'c1'],
      ['d4', undefined],
      ['d5', 'c3'],
    ];
    const got: number[] = [];
    for (const [id, card] of seq) {
      const c = await store.count(`dec_${id}`, 0, req(card), { record: true });
      got.push(c.get(IP, ip, 60_000, CARD)!);
    }
    expect(got).toEqual([1, 2, 2, 2, 3]);
    await sleep(1_100);
    const later = await store.count('dec_d6', 0, req('c2'), { record: true });
    expect(later.get(IP, ip, 1_000, CARD)).toBe(1); // only c2, seen just now
    expect(later.get(IP, ip, 60_000, CARD)).toBe(3);
    expect(later.get(IP, ip, 60_000)).toBe(6);
  });

  it('rolls the window on the server clock: a decision older than the window no longer counts', async () => {
    const card = `crd_${randomUUID()}`;
    const req = cardRequest(card, [2_000]);
    expect((await store.count('dec_w1', 0, req, { record: true })).get(CARD, card, 2_000)).toBe(1);
    await sleep(1_000);
    expect((await store.count('dec_w2', 0, req, { record: true })).get(CARD, card, 2_000)).toBe(2);
    await sleep(1_300); // w1 is 2.3 s old, w2 1.3 s
    expect((await store.count('dec_w3', 0, req, { record: true })).get(CARD, card, 2_000)).toBe(2);
    // The caller's clock is ignored: Redis TIME decides.
    expect((await store.count('dec_w4', 0, req, { record: true })).get(CARD, card, 2_000)).toBe(3);
  });

  it('keeps history for the longest window any ruleset asks for on a value', async () => {
    const card = `crd_${randomUUID()}`;
    await store.count('dec_l1', 0, cardRequest(card, [60_000]), { record: true });
    await sleep(1_100);
    // A ruleset with a 1 s window on the same field must not prune the 60 s history.
    expect(
      (await store.count('dec_l2', 0, cardRequest(card, [1_000]), { record: true })).get(
        CARD,
        card,
        1_000,
      ),
    ).toBe(1);
    expect(
      (await store.count('dec_l3', 0, cardRequest(card, [60_000]), { record: true })).get(
        CARD,
        card,
        60_000,
      ),
    ).toBe(3);
  });

  it('dry run: counts as if counted, writes nothing', async () => {
    const card = `crd_${randomUUID()}`;
    const req = cardRequest(card, [60_000], '198.51.100.9', [60_000]);
    const before = (await raw.keys(`${prefix}*`)).length;
    const dry = await store.count('dec_dry', 0, req, { record: false });
    expect(dry.get(CARD, card, 60_000)).toBe(1);
    expect(dry.get(CARD, card, 60_000, IP)).toBe(1);
    expect((await raw.keys(`${prefix}*`)).length).toBe(before);
    await store.count('dec_r1', 0, req, { record: true });
    await store.count('dec_r2', 0, cardRequest(card, [60_000], '198.51.100.10', [60_000]), {
      record: true,
    });
    const dry2 = await store.count('dec_dry', 0, req, { record: false });
    expect(dry2.get(CARD, card, 60_000)).toBe(3);
    expect(dry2.get(CARD, card, 60_000, IP)).toBe(2); // .9 is already among them
    const dry3 = await store.count(
      'dec_dry',
      0,
      cardRequest(card, [60_000], '198.51.100.11', [60_000]),
      { record: false },
    );
    expect(dry3.get(CARD, card, 60_000, IP)).toBe(3);
    // A dry run of a decision already counted does not add it again.
    expect((await store.count('dec_r1', 0, req, { record: false })).get(CARD, card, 60_000)).toBe(
      2,
    );
    expect((await store.count('dec_r3', 0, req, { record: true })).get(CARD, card, 60_000)).toBe(3);
  });

  it('keeps values out of key names (hashed, keyed when a secret is given)', async () => {
    const secretPrefix = `test:${randomUUID()}:`;
    const keyed = new RedisCounterStore({
      url: services.redisUrl,
      prefix: secretPrefix,
      hashKey: 'k1',
    });
    try {
      await keyed.ready();
      const card = `crd_secret_${randomUUID()}`;
      await keyed.count('dec_k', 0, cardRequest(card, [60_000], '192.0.2.44', [60_000]), {
        record: true,
      });
      await store.count('dec_k', 0, cardRequest(card, [60_000], '192.0.2.44', [60_000]), {
        record: true,
      });
      const keys = [...(await raw.keys(`${secretPrefix}*`)), ...(await raw.keys(`${prefix}*`))];
      expect(keys.join(' ')).not.toContain(card);
      const plainKeys = (await raw.keys(`${prefix}v:*`)).map((k) => k.slice(prefix.length));
      const keyedKeys = (await raw.keys(`${secretPrefix}v:*`)).map((k) =>
        k.slice(secretPrefix.length),
      );
      expect(plainKeys).not.toContain(keyedKeys[0]);
      // The key names are what every earlier version wrote (HMAC-SHA-256, hex, 32 chars): counts
      // already in Redis are found again after an upgrade.
      const hmac = (text: string) =>
        createHmac('sha256', 'k1').update(text, 'utf8').digest('hex').slice(0, 32);
      expect(keyedKeys).toEqual([`v:${hmac(`${CARD}\u0000${card}`)}`]);
      expect(
        (await raw.keys(`${secretPrefix}d:*`)).map((k) => k.slice(secretPrefix.length)),
      ).toEqual([`d:${hmac(`${CARD}\u0000${card}\u0000${IP}`)}`]);
      const dKey = (await raw.keys(`${secretPrefix}d:*`))[0]!;
      expect((await raw.zrange(dKey, '0', '-1')).join(' ')).not.toContain('192.0.2.44');
      await raw.del(...(await raw.keys(`${secretPrefix}*`)));
    } finally {
      await keyed.close();
    }
  });
});

describe('RedisCounterStore when Redis fails (own redis-server)', () => {
  const own = new OwnRedis();
  beforeAll(() => own.start());
  afterAll(() => own.stop());

  type Outcome = { ok: boolean; ms: number; reason?: string };

  async function load(
    store: RedisCounterStore,
    untilMs: number,
    outcomes: Outcome[],
    card: string,
  ) {
    let i = 0;
    const worker = async (w: number) => {
      while (Date.now() < untilMs) {
        const t0 = performance.now();
        try {
          await store.count(`dec_${w}_${i++}`, 0, cardRequest(card, [60_000]), { record: true });
          outcomes.push({ ok: true, ms: performance.now() - t0 });
        } catch (err) {
          expect(err).toBeInstanceOf(CounterUnavailableError);
          expect((err as CounterUnavailableError).code).toBe('counter_unavailable');
          outcomes.push({
            ok: false,
            ms: performance.now() - t0,
            reason: (err as CounterUnavailableError).reason,
          });
        }
        await sleep(2);
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
  }

  it('a hung Redis (SIGSTOP): calls fail within the command timeout, then at once with the circuit open', async () => {
    const store = new RedisCounterStore({
      url: own.url,
      prefix: 'hang:',
      commandTimeoutMs: 50,
      coolDownMs: 500,
    });
    try {
      await store.ready();
      const outcomes: Outcome[] = [];
      const running = load(store, Date.now() + 2_500, outcomes, 'crd_hang');
      await sleep(300);
      own.signal('SIGSTOP');
      const stoppedAt = outcomes.length;
      await sleep(1_200);
      own.signal('SIGCONT');
      await running;
      const during = outcomes.slice(stoppedAt);
      const failed = during.filter((o) => !o.ok);
      expect(failed.length).toBeGreaterThan(0);
      // No hang: nothing waits (much) longer than the command timeout.
      expect(Math.max(...during.map((o) => o.ms))).toBeLessThan(250);
      const open = failed.filter((o) => o.reason === 'circuit_open');
      expect(open.length).toBeGreaterThan(0);
      // With the circuit open a call costs nothing: no socket, no timer (the tail is this
      // process's own event-loop noise under the test's load, still far below the timeout).
      const openMs = open.map((o) => o.ms).sort((a, b) => a - b);
      expect(openMs[Math.floor(openMs.length / 2)]!).toBeLessThan(1);
      expect(openMs[openMs.length - 1]!).toBeLessThan(50);
      expect(failed.some((o) => o.reason === 'timeout')).toBe(true);
      // And it comes back after SIGCONT (probe after the cool-down).
      expect(outcomes.slice(-5).every((o) => o.ok)).toBe(true);
      console.log(
        `[redis] hung: ${failed.length} failed calls (${open.length} circuit_open: median ${openMs[Math.floor(openMs.length / 2)]!.toFixed(3)} ms, ` +
          `max ${openMs[openMs.length - 1]!.toFixed(2)} ms; ` +
          `timeouts max ${Math.max(...failed.filter((o) => o.reason === 'timeout').map((o) => o.ms)).toFixed(0)} ms)`,
      );
    } finally {
      await store.close();
    }
  });

  it('a killed Redis: calls reject at once; after a restart on the same port counting resumes within seconds', async () => {
    const store = new RedisCounterStore({
      url: own.url,
      prefix: 'kill:',
      commandTimeoutMs: 50,
      coolDownMs: 500,
      maxReconnectDelayMs: 500,
    });
    try {
      await store.ready();
      const outcomes: Outcome[] = [];
      const running = load(store, Date.now() + 1_500, outcomes, 'crd_kill');
      await sleep(300);
      own.signal('SIGKILL');
      const killedAt = outcomes.length;
      await running;
      const after = outcomes.slice(killedAt);
      expect(after.filter((o) => !o.ok).length).toBeGreaterThan(10);
      expect(Math.max(...after.map((o) => o.ms))).toBeLessThan(250);
      expect(store.status().connection).not.toBe('ready');

      const t0 = performance.now();
      await own.restart();
      let resumed: number | undefined;
      let last: unknown;
      while (performance.now() - t0 < 10_000) {
        try {
          const c = await store.count(`dec_back`, 0, cardRequest('crd_back', [60_000]), {
            record: true,
          });
          resumed = c.get(CARD, 'crd_back', 60_000);
          break;
        } catch (err) {
          last = err;
          await sleep(20);
        }
      }
      const ms = performance.now() - t0;
      expect(resumed, String(last)).toBe(1); // a restarted Redis without persistence starts empty
      expect(ms).toBeLessThan(5_000);
      expect(store.status()).toMatchObject({ connection: 'ready', breaker: 'closed' });
      console.log(`[redis] killed: counting resumed ${ms.toFixed(0)} ms after the restart began`);
    } finally {
      await store.close();
    }
  });
});
