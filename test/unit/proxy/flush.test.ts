import { describe, expect, it } from 'vitest';
import { writeBurst } from '../../../proxy/flush.ts';

describe('writeBurst', () => {
  it('is shared by every caller in one pass of the event loop', () => {
    const a = writeBurst();
    const b = writeBurst();
    expect(b).toBe(a);
  });

  it('resolves after this pass (sync code and microtasks) and before later immediates', async () => {
    const order: string[] = [];
    const burst = writeBurst().then(() => order.push('burst'));
    void Promise.resolve().then(() => order.push('microtask'));
    const later = new Promise<void>((r) =>
      setImmediate(() => {
        order.push('later immediate');
        r();
      }),
    );
    order.push('sync');
    await Promise.all([burst, later]);
    expect(order).toEqual(['sync', 'microtask', 'burst', 'later immediate']);
  });

  it('starts a new burst once the last one went out', async () => {
    const first = writeBurst();
    await first;
    const second = writeBurst();
    expect(second).not.toBe(first);
    let done = false;
    void second.then(() => (done = true));
    await Promise.resolve();
    expect(done).toBe(false);
    await second;
    expect(done).toBe(true);
  });
});
