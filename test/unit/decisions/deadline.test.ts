import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { deadline, pendingDeadlines } from '../../../decisions/deadline.ts';

describe('deadline', () => {
  it('expires each call once its time has passed, in the order they started', async () => {
    const fired: number[] = [];
    const t0 = performance.now();
    const at: number[] = [];
    for (let i = 0; i < 5; i++) {
      deadline(30, () => {
        fired.push(i);
        at.push(performance.now() - t0);
      });
      await sleep(5);
    }
    await sleep(80);
    expect(fired).toEqual([0, 1, 2, 3, 4]);
    // None early: the i-th started ~5·i ms in.
    at.forEach((ms, i) => expect(ms).toBeGreaterThanOrEqual(30 + 5 * i - 1));
    expect(pendingDeadlines()).toBe(0);
  });

  it('never expires a cancelled call, whichever place it holds in its lane', async () => {
    const fired: string[] = [];
    const a = deadline(20, () => fired.push('a'));
    deadline(20, () => fired.push('b'));
    const c = deadline(20, () => fired.push('c'));
    deadline(20, () => fired.push('d'));
    a.cancel();
    c.cancel();
    await sleep(60);
    expect(fired).toEqual(['b', 'd']);
  });

  it('keeps durations apart: a short one after a long one is not held behind it', async () => {
    const fired: string[] = [];
    deadline(200, () => fired.push('long'));
    deadline(10, () => fired.push('short'));
    await sleep(60);
    expect(fired).toEqual(['short']);
    await sleep(200);
    expect(fired).toEqual(['short', 'long']);
  });

  it('takes setTimeout bounds: NaN at once, Infinity never within the test', async () => {
    const fired: string[] = [];
    deadline(Number.NaN, () => fired.push('nan'));
    const inf = deadline(Number.POSITIVE_INFINITY, () => fired.push('inf'));
    await sleep(30);
    expect(fired).toEqual(['nan']);
    inf.cancel();
  });

  it('goes on after a callback that throws, and with thousands in flight', async () => {
    let n = 0;
    deadline(5, () => {
      throw new Error('boom');
    });
    const handles = [];
    for (let i = 0; i < 5_000; i++) handles.push(deadline(15, () => n++));
    for (let i = 0; i < 5_000; i += 2) handles[i]!.cancel();
    await sleep(60);
    expect(n).toBe(2_500);
    expect(pendingDeadlines()).toBe(0);
  });
});
