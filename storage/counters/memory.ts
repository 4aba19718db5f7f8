// The in-process counter store: the embedded default without REDIS_URL, and the replay store
// of simulate. Exact rolling windows: per (field, value) the decisions' times in order with
// their ids (so a retried decision counts once and keeps its first time); per (field, value,
// distinct path) each distinct value's last-seen time. The clock is the caller's `nowMs`.
//
// Memory is bounded: history older than the longest window ever asked for a value is pruned as
// the value is touched; values idle past that are swept from the cold end of the LRU; beyond
// `maxKeys` values or `maxEvents` stored times in all, the least recently used values are
// evicted whole (their counts restart from zero, an undercount that fails open); one value keeps
// at most `maxEventsPerKey` times (older ones dropped: its count saturates there).
import type { CounterRequest, CounterStore, Counts } from '../../rulesets/ports.ts';
import { CountsMap, normalizeRequests } from './counts.ts';

export interface MemoryCounterOptions {
  /** Default 100,000 (field, value) and (field, value, distinct path) keys. */
  maxKeys?: number;
  /** Default 2,000,000 stored times over all keys (roughly 100 bytes each). */
  maxEvents?: number;
  /** Default 100,000. */
  maxEventsPerKey?: number;
}

interface Series {
  kind: 'series';
  /** times[head..] ascending, ids aligned; the dead prefix is compacted now and then. */
  times: number[];
  ids: string[];
  head: number;
  seen: Set<string>;
  retainMs: number;
  lastMs: number;
}

interface Distinct {
  kind: 'distinct';
  /** distinct value → last time seen. */
  last: Map<string, number>;
  retainMs: number;
  lastMs: number;
}

type Entry = Series | Distinct;

const SWEEP_PER_CALL = 2;

export class MemoryCounterStore implements CounterStore {
  #maxKeys: number;
  #maxEvents: number;
  #maxPerKey: number;
  /** Insertion order is recency order: touched keys are moved to the end. */
  #entries = new Map<string, Entry>();
  #events = 0;
  #evicted = 0;

  constructor(opts: MemoryCounterOptions = {}) {
    this.#maxKeys = Math.max(1, opts.maxKeys ?? 100_000);
    this.#maxEvents = Math.max(1, opts.maxEvents ?? 2_000_000);
    this.#maxPerKey = Math.max(1, opts.maxEventsPerKey ?? 100_000);
  }

  count(
    decisionId: string,
    nowMs: number,
    requests: CounterRequest[],
    opts: { record: boolean },
  ): Promise<Counts> {
    return Promise.resolve(this.countSync(decisionId, nowMs, requests, opts));
  }

  /** The same as count(), without the promise: the store never waits for anything. */
  countSync(
    decisionId: string,
    nowMs: number,
    requests: readonly CounterRequest[],
    opts: { record: boolean },
  ): CountsMap {
    const counts = new CountsMap();
    const record = opts.record;
    for (const req of normalizeRequests(requests)) {
      const sKey = `s\u0000${req.field}\u0000${req.value}`;
      let s = this.#touch(sKey) as Series | undefined;
      if (!s && record) {
        s = {
          kind: 'series',
          times: [],
          ids: [],
          head: 0,
          seen: new Set(),
          retainMs: 0,
          lastMs: nowMs,
        };
        this.#entries.set(sKey, s);
      }
      const fresh = !s || !s.seen.has(decisionId);
      if (record && s) {
        s.retainMs = Math.max(s.retainMs, req.retainMs);
        s.lastMs = Math.max(s.lastMs, nowMs);
        if (fresh) this.#insert(s, nowMs, decisionId);
        this.#prune(s, nowMs - s.retainMs);
      }
      for (const w of req.windowsMs) {
        let n = s ? countAfter(s, nowMs - w) : 0;
        if (!record && fresh) n++;
        counts.set(req.field, req.value, w, undefined, n);
      }
      for (const d of req.distinct) {
        const dKey = `d\u0000${req.field}\u0000${req.value}\u0000${d.path}`;
        let ds = this.#touch(dKey) as Distinct | undefined;
        // A retried decision does not move its distinct value's time: it keeps its first.
        if (record && fresh && d.value !== undefined) {
          if (!ds) {
            ds = { kind: 'distinct', last: new Map(), retainMs: 0, lastMs: nowMs };
            this.#entries.set(dKey, ds);
          }
          const prev = ds.last.get(d.value);
          if (prev === undefined) this.#events++;
          if (prev === undefined || prev < nowMs) ds.last.set(d.value, nowMs);
        }
        if (record && ds) {
          ds.retainMs = Math.max(ds.retainMs, req.retainMs);
          ds.lastMs = Math.max(ds.lastMs, nowMs);
          this.#pruneDistinct(ds, nowMs - ds.retainMs);
        }
        for (const w of d.windowsMs) {
          const cutoff = nowMs - w;
          let n = 0;
          if (ds) for (const t of ds.last.values()) if (t > cutoff) n++;
          if (!record && fresh && d.value !== undefined) {
            const t = ds?.last.get(d.value);
            if (t === undefined || t <= cutoff) n++;
          }
          counts.set(req.field, req.value, w, d.path, n);
        }
      }
    }
    if (record) this.#bound(nowMs);
    return counts;
  }

  /** Keys and stored times right now, and keys evicted so far (for metrics). */
  stats(): { keys: number; events: number; evicted: number } {
    return { keys: this.#entries.size, events: this.#events, evicted: this.#evicted };
  }

  close(): Promise<void> {
    this.#entries.clear();
    this.#events = 0;
    return Promise.resolve();
  }

  #touch(key: string): Entry | undefined {
    const e = this.#entries.get(key);
    if (e) {
      this.#entries.delete(key);
      this.#entries.set(key, e);
    }
    return e;
  }

  #insert(s: Series, t: number, id: string): void {
    const n = s.times.length;
    if (n === s.head || s.times[n - 1]! <= t) {
      s.times.push(t);
      s.ids.push(id);
    } else {
      // Concurrent callers may hand in slightly out-of-order times: keep the array sorted.
      const i = upperBound(s.times, s.head, t);
      s.times.splice(i, 0, t);
      s.ids.splice(i, 0, id);
    }
    s.seen.add(id);
    this.#events++;
    if (s.times.length - s.head > this.#maxPerKey) this.#dropFront(s, 1);
  }

  #prune(s: Series, cutoff: number): void {
    let k = 0;
    while (s.head + k < s.times.length && s.times[s.head + k]! <= cutoff) k++;
    if (k > 0) this.#dropFront(s, k);
  }

  #dropFront(s: Series, k: number): void {
    for (let i = s.head; i < s.head + k; i++) s.seen.delete(s.ids[i]!);
    s.head += k;
    this.#events -= k;
    if (s.head > 64 && s.head * 2 > s.times.length) {
      s.times = s.times.slice(s.head);
      s.ids = s.ids.slice(s.head);
      s.head = 0;
    }
  }

  #pruneDistinct(ds: Distinct, cutoff: number): void {
    for (const [v, t] of ds.last) {
      if (t <= cutoff) {
        ds.last.delete(v);
        this.#events--;
      }
    }
  }

  #size(e: Entry): number {
    return e.kind === 'series' ? e.times.length - e.head : e.last.size;
  }

  /** Sweeps idle keys from the cold end, then evicts least recently used keys over the limits. */
  #bound(nowMs: number): void {
    let swept = 0;
    for (const [key, e] of this.#entries) {
      if (swept++ >= SWEEP_PER_CALL) break;
      if (e.lastMs + e.retainMs > nowMs) break;
      this.#entries.delete(key);
      this.#events -= this.#size(e);
    }
    while (this.#entries.size > this.#maxKeys || this.#events > this.#maxEvents) {
      const first = this.#entries.entries().next();
      if (first.done || this.#entries.size === 1) break;
      const [key, e] = first.value;
      this.#entries.delete(key);
      this.#events -= this.#size(e);
      this.#evicted++;
    }
  }
}

/** Stored times strictly after `cutoff`: the window (now - w, now], later times included. */
function countAfter(s: Series, cutoff: number): number {
  return s.times.length - upperBound(s.times, s.head, cutoff);
}

/** First index ≥ lo whose time is > t. */
function upperBound(a: number[], lo: number, t: number): number {
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
