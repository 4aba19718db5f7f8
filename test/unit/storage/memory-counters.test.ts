import { describe, expect, it } from 'vitest';
import type { CounterRequest } from '../../../rulesets/ports.ts';
import { MemoryCounterStore } from '../../../storage/counters/memory.ts';

const CARD = '$.credential_fingerprint';
const IP = '$.device.ip';

const card = (value: string, windowsMs: number[]): CounterRequest[] => [
  { field: CARD, value, windowsMs, distinct: [] },
];
const ipCards = (ip: string, c: string | undefined, windowsMs: number[]): CounterRequest[] => [
  { field: IP, value: ip, windowsMs: [], distinct: [{ path: CARD, value: c, windowsMs }] },
];

describe('MemoryCounterStore', () => {
  it('counts exactly: 1,000 concurrent decisions on one card get exactly 1..1000', async () => {
    const s = new MemoryCounterStore();
    const counts = await Promise.all(
      Array.from({ length: 1_000 }, (_, i) =>
        s.count(`dec_${i}`, 1_000 + (i % 7), card('c', [60_000]), { record: true }),
      ),
    );
    expect(counts.map((c) => c.get(CARD, 'c', 60_000)!).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 1_000 }, (_, i) => i + 1),
    );
  });

  it('counts a retried decision once and keeps its first time', () => {
    const s = new MemoryCounterStore();
    const w = [1_000];
    expect(s.countSync('a', 0, card('c', w), { record: true }).get(CARD, 'c', 1_000)).toBe(1);
    expect(s.countSync('b', 500, card('c', w), { record: true }).get(CARD, 'c', 1_000)).toBe(2);
    expect(s.countSync('a', 900, card('c', w), { record: true }).get(CARD, 'c', 1_000)).toBe(2);
    // 'a' still counts at its first time (0): gone from the window at 1,000.
    expect(s.countSync('c', 1_000, card('c', w), { record: true }).get(CARD, 'c', 1_000)).toBe(2);
  });

  it('remembers only repeatable ids: a fresh id is counted without a dedup entry', () => {
    const s = new MemoryCounterStore();
    const w = [1_000];
    const once = { record: true, repeatable: false };
    // The caller promised these ids cannot come again, so nothing is kept to recognise them:
    // the same id sent twice anyway counts twice.
    expect(s.countSync('f', 0, card('c', w), once).get(CARD, 'c', 1_000)).toBe(1);
    expect(s.countSync('f', 10, card('c', w), once).get(CARD, 'c', 1_000)).toBe(2);
    // A repeatable id is still counted once however often it comes, beside the others.
    const keyed = { record: true, repeatable: true };
    expect(s.countSync('k', 20, card('c', w), keyed).get(CARD, 'c', 1_000)).toBe(3);
    expect(s.countSync('k', 30, card('c', w), keyed).get(CARD, 'c', 1_000)).toBe(3);
    // The default is repeatable.
    expect(s.countSync('k', 40, card('c', w), { record: true }).get(CARD, 'c', 1_000)).toBe(3);
    // Fresh ids roll out of the window like any other: at 1,015 only 20 (k) and 1,015 are in.
    expect(s.countSync('g', 1_015, card('c', w), once).get(CARD, 'c', 1_000)).toBe(2);
    expect(s.stats().events).toBe(2);
  });

  it('rolls the window exactly at its edge: (now - window, now]', () => {
    const s = new MemoryCounterStore();
    s.countSync('a', 1_000, card('c', [60_000]), { record: true });
    expect(
      s.countSync('b', 60_999, card('c', [60_000]), { record: true }).get(CARD, 'c', 60_000),
    ).toBe(2);
    expect(
      s.countSync('x', 61_000, card('c', [60_000]), { record: false }).get(CARD, 'c', 60_000),
    ).toBe(2); // a out, b and x in
    expect(s.countSync('y', 61_000, card('c', [1]), { record: false }).get(CARD, 'c', 1)).toBe(1);
  });

  it('answers several windows of one value in one call, and keeps different values apart', () => {
    const s = new MemoryCounterStore();
    for (let i = 0; i < 5; i++)
      s.countSync(`d${i}`, i * 10_000, card('c', [3_600_000]), { record: true });
    s.countSync('other', 45_000, card('c2', [3_600_000]), { record: true });
    const c = s.countSync('d5', 50_000, card('c', [15_000, 3_600_000]), { record: true });
    expect(c.get(CARD, 'c', 15_000)).toBe(2); // 40,000 and 50,000
    expect(c.get(CARD, 'c', 3_600_000)).toBe(6);
    expect(c.get(CARD, 'c2', 3_600_000)).toBeUndefined();
  });

  it('counts distinct values per window, by last-seen time', () => {
    const s = new MemoryCounterStore();
    const w = [10_000, 60_000];
    const got: number[] = [];
    const steps: [string, number, string | undefined][] = [
      ['d1', 0, 'c1'],
      ['d2', 1_000, 'c2'],
      ['d3', 2_000, 'c1'],
      ['d4', 3_000, undefined],
      ['d5', 4_000, 'c3'],
    ];
    for (const [id, t, c] of steps)
      got.push(
        s.countSync(id, t, ipCards('ip', c, w), { record: true }).get(IP, 'ip', 60_000, CARD)!,
      );
    expect(got).toEqual([1, 2, 2, 2, 3]);
    const later = s.countSync('d6', 14_500, ipCards('ip', 'c1', w), { record: true });
    expect(later.get(IP, 'ip', 10_000, CARD)).toBe(1); // c2 (1,000) and c3 (4,000) are 10 s old or more
    expect(later.get(IP, 'ip', 60_000, CARD)).toBe(3);
    // A retry does not move a distinct value's time.
    s.countSync('d2', 15_000, ipCards('ip', 'c2', w), { record: true });
    expect(
      s
        .countSync('d7', 15_000, ipCards('ip', 'c1', w), { record: false })
        .get(IP, 'ip', 10_000, CARD),
    ).toBe(1);
  });

  it('dry run: counts as if counted, stores nothing', () => {
    const s = new MemoryCounterStore();
    const dry = s.countSync('x', 0, [...card('c', [60_000]), ...ipCards('ip', 'c', [60_000])], {
      record: false,
    });
    expect(dry.get(CARD, 'c', 60_000)).toBe(1);
    expect(dry.get(IP, 'ip', 60_000, CARD)).toBe(1);
    expect(s.stats()).toEqual({ keys: 0, events: 0, evicted: 0 });
    s.countSync('a', 0, [...card('c', [60_000]), ...ipCards('ip', 'c', [60_000])], {
      record: true,
    });
    const before = s.stats();
    const dry2 = s.countSync('x', 1, [...card('c', [60_000]), ...ipCards('ip', 'c', [60_000])], {
      record: false,
    });
    expect(dry2.get(CARD, 'c', 60_000)).toBe(2);
    expect(dry2.get(IP, 'ip', 60_000, CARD)).toBe(1); // 'c' is already among them
    expect(s.countSync('a', 2, card('c', [60_000]), { record: false }).get(CARD, 'c', 60_000)).toBe(
      1,
    );
    expect(s.stats()).toEqual(before);
  });

  it('keeps history for the longest window ever asked for a value', () => {
    const s = new MemoryCounterStore();
    s.countSync('a', 0, card('c', [60_000]), { record: true });
    s.countSync('b', 5_000, card('c', [1_000]), { record: true }); // must not prune 'a'
    expect(
      s.countSync('c', 6_000, card('c', [60_000]), { record: true }).get(CARD, 'c', 60_000),
    ).toBe(3);
  });

  it('stays bounded: LRU eviction past maxKeys, a per-key cap, idle keys swept', () => {
    const s = new MemoryCounterStore({ maxKeys: 10, maxEventsPerKey: 50 });
    for (let i = 0; i < 20; i++) s.countSync(`d${i}`, 0, card(`c${i}`, [60_000]), { record: true });
    expect(s.stats()).toMatchObject({ keys: 10, evicted: 10 });
    // c0 was evicted: its count restarts (an undercount, failing open).
    expect(
      s.countSync('again', 1, card('c0', [60_000]), { record: true }).get(CARD, 'c0', 60_000),
    ).toBe(1);
    for (let i = 0; i < 80; i++)
      s.countSync(`h${i}`, 2 + i, card('hot', [60_000]), { record: true });
    expect(
      s.countSync('h80', 100, card('hot', [60_000]), { record: false }).get(CARD, 'hot', 60_000),
    ).toBe(51);
    const t = new MemoryCounterStore();
    for (let i = 0; i < 10; i++) t.countSync(`d${i}`, 0, card(`c${i}`, [1_000]), { record: true });
    for (let i = 0; i < 10; i++)
      t.countSync(`n${i}`, 5_000, card('live', [1_000]), { record: true });
    expect(t.stats().keys).toBe(1);
    expect(t.stats().events).toBe(10);
  });

  it('caps total stored times with maxEvents', () => {
    const s = new MemoryCounterStore({ maxEvents: 100 });
    for (let k = 0; k < 10; k++)
      for (let i = 0; i < 20; i++)
        s.countSync(`d${k}_${i}`, i, card(`c${k}`, [60_000]), { record: true });
    expect(s.stats().events).toBeLessThanOrEqual(100);
  });
  it('evicts the least recently used value: a value touched again stays', () => {
    const s = new MemoryCounterStore({ maxKeys: 3 });
    s.countSync('a', 0, card('c1', [60_000]), { record: true });
    s.countSync('b', 1, card('c2', [60_000]), { record: true });
    s.countSync('c', 2, card('c3', [60_000]), { record: true });
    s.countSync('d', 3, card('c1', [60_000]), { record: true }); // c1 is now the hottest
    s.countSync('e', 4, card('c4', [60_000]), { record: true }); // evicts c2, the coldest
    expect(
      s.countSync('x', 5, card('c1', [60_000]), { record: false }).get(CARD, 'c1', 60_000),
    ).toBe(3);
    expect(
      s.countSync('y', 5, card('c2', [60_000]), { record: false }).get(CARD, 'c2', 60_000),
    ).toBe(1);
    expect(s.stats()).toMatchObject({ keys: 3, evicted: 1 });
  });

  it('counts distinct values exactly with out-of-order times and merged duplicate requests', () => {
    const s = new MemoryCounterStore();
    const w = [1_000, 10_000];
    s.countSync('d1', 5_000, ipCards('ip', 'c1', w), { record: true });
    s.countSync('d2', 3_000, ipCards('ip', 'c2', w), { record: true }); // older than c1
    s.countSync('d3', 6_000, ipCards('ip', 'c3', w), { record: true });
    const c = s.countSync(
      'd4',
      6_500,
      [...ipCards('ip', 'c3', [10_000]), ...ipCards('ip', 'c3', [1_000])],
      {
        record: true,
      },
    );
    expect(c.get(IP, 'ip', 1_000, CARD)).toBe(1); // c3 only: c1 at 5,000 is not after 5,500
    expect(c.get(IP, 'ip', 10_000, CARD)).toBe(3);
    // 13,000: the 10 s window starts after 3,000, so c2 leaves it; c1 (5,000) and c3 (6,500) stay.
    expect(
      s
        .countSync('d5', 13_000, ipCards('ip', undefined, w), { record: true })
        .get(IP, 'ip', 10_000, CARD),
    ).toBe(2);
    expect(s.stats().events).toBe(2 + 4); // distinct values c1, c3; series times of d1, d3, d4, d5 (d2 pruned)
  });
});
