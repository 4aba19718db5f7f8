// The event buffer's slab storage: records come back as they went in, across slab boundaries,
// and a queue that empties keeps its slab (a fresh 1 MiB slab per batch under a light load was
// tens of MiB a second of external memory churn, and kept V8 collecting).
import { describe, expect, it } from 'vitest';
import { SlabQueue } from '../../../storage/events/slab-queue.ts';

function push(q: SlabQueue, key: string, value: string): void {
  q.push(0, key, Buffer.byteLength(key), value, Buffer.byteLength(value), 'vigil.decision/1', 1);
}

describe('SlabQueue', () => {
  it('returns records in order across slabs, and drops them from the head', () => {
    const q = new SlabQueue();
    const big = 'x'.repeat(300_000);
    for (let i = 0; i < 10; i++) push(q, `k${i}`, `${i}${big}`);
    expect(q.length).toBe(10);
    const all = q.peek(100, Number.MAX_SAFE_INTEGER);
    expect(all.map((r) => r.key)).toEqual(Array.from({ length: 10 }, (_, i) => `k${i}`));
    expect(all[7]!.value.toString()).toBe(`7${big}`);
    expect(all[0]!.schema).toBe('vigil.decision/1');
    q.shift(4, () => {});
    expect(q.peek(1, 0)[0]!.key).toBe('k4');
    q.shift(6, () => {});
    expect(q.length).toBe(0);
    expect(q.bytes).toBe(0);
  });

  it('writes into the same slab again once it has emptied', () => {
    const q = new SlabQueue();
    push(q, 'a', '{"n":1}');
    const first = q.peek(1, 1_000)[0]!.value.buffer;
    q.shift(1, () => {});
    push(q, 'b', '{"n":2}');
    const again = q.peek(1, 1_000)[0]!;
    expect(again.key).toBe('b');
    expect(again.value.toString()).toBe('{"n":2}');
    expect(again.value.buffer).toBe(first);
  });
});
