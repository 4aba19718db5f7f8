// Deadlines without a timer each. Every decision the proxy and /api/authz ask for runs under a
// deadline, and so does every call to a counter store that answers asynchronously (Redis); a
// setTimeout per call (a Timeout object, a list insert, a clearTimeout) was ~3 % of the answer
// thread's CPU on /api/authz. Calls with the same duration expire in the order they started,
// so each duration keeps a FIFO lane with one timer, armed for its oldest call still waiting:
// a call that settles is only marked, and passed over when the timer comes round.
import { performance } from 'node:perf_hooks';

interface Waiter {
  at: number;
  done: boolean;
  expire: () => void;
}

interface Lane {
  ms: number;
  items: (Waiter | undefined)[];
  head: number;
  timer: NodeJS.Timeout | undefined;
}

const lanes = new Map<number, Lane>();

/** The longest delay setTimeout takes (2^31 − 1 ms); a longer one would fire after 1 ms. */
const TIMEOUT_MAX = 2 ** 31 - 1;

/** A pending deadline: cancel() once the call settled (its expire will not run). */
export interface Deadline {
  cancel(): void;
}

/**
 * Calls `expire` once `ms` milliseconds have passed, unless cancelled first. Never throws into
 * the caller; an `expire` that throws is ignored. The timer does not keep the process alive.
 */
export function deadline(ms: number, expire: () => void): Deadline {
  // setTimeout's own bounds: NaN or negative is at once, past ~24.8 days is that long.
  const d = Number.isNaN(ms) ? 0 : Math.min(TIMEOUT_MAX, Math.max(0, Math.ceil(ms)));
  const w: Waiter = { at: performance.now() + d, done: false, expire };
  let lane = lanes.get(d);
  if (!lane) {
    lane = { ms: d, items: [], head: 0, timer: undefined };
    lanes.set(d, lane);
  }
  lane.items.push(w);
  if (!lane.timer) arm(lane, d);
  return {
    cancel: () => {
      w.done = true;
    },
  };
}

function arm(lane: Lane, ms: number): void {
  lane.timer = setTimeout(sweep, Math.max(1, Math.ceil(ms)), lane);
  lane.timer.unref();
}

function sweep(lane: Lane): void {
  lane.timer = undefined;
  const now = performance.now();
  const items = lane.items;
  while (lane.head < items.length) {
    const w = items[lane.head]!;
    if (!w.done) {
      // The loop's clock may run a little behind: not due yet, the timer comes back for it.
      if (w.at > now) break;
      w.done = true;
      try {
        w.expire();
      } catch {
        // The caller's callback; a deadline never fails anyone else.
      }
    }
    items[lane.head++] = undefined;
  }
  if (lane.head === items.length) {
    // Empty: the lane goes (durations in use are few; one not used again is not kept).
    lanes.delete(lane.ms);
    return;
  }
  if (lane.head > 1024 && lane.head * 2 > items.length) {
    lane.items = items.slice(lane.head);
    lane.head = 0;
  }
  arm(lane, lane.items[lane.head]!.at - now);
}

/** Calls still waiting (neither expired nor cancelled) across all lanes (for tests). */
export function pendingDeadlines(): number {
  let n = 0;
  for (const l of lanes.values()) {
    for (let i = l.head; i < l.items.length; i++) if (!l.items[i]!.done) n++;
  }
  return n;
}
