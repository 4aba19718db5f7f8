// The in-process counter store: the embedded default without REDIS_URL, and the replay store
// of simulate. Exact rolling windows: per (field, value) the decisions' times in order with
// their ids (so a retried decision counts once and keeps its first time); per (field, value,
// distinct path) each distinct value's last-seen time. The clock is the caller's `nowMs`.
//
// Memory is bounded: history older than the longest window ever asked for a value is pruned as
// the value is touched; values idle past that are swept from the cold end of the LRU; beyond
// `maxKeys` keys or `maxEvents` stored times in all, the least recently used values are evicted
// whole (their counts restart from zero, an undercount that fails open); one value keeps at most
// `maxEventsPerKey` times (older ones dropped: its count saturates there).
//
// This runs once per decision on the answer path, so it is built to allocate little: values are
// found through a map per field (no key strings built per call), recency is an intrusive list
// (no Map delete/re-insert per touch, which made V8 rehash the big map over and over), the
// distinct values of a (field, value) hang off its series, and a decision's requests are used as
// they come when they are already one per value with sorted windows (the compiled ruleset's are).
import type { CountOptions, CounterRequest, CounterStore, Counts } from '../../rulesets/ports.ts';
import { normalizeRequests } from './counts.ts';

export interface MemoryCounterOptions {
  /** Default 100,000 (field, value) and (field, value, distinct path) keys. */
  maxKeys?: number;
  /** Default 2,000,000 stored times over all keys (roughly 100 bytes each). */
  maxEvents?: number;
  /** Default 100,000. */
  maxEventsPerKey?: number;
}

interface Distinct {
  /** distinct value → last time seen. */
  last: Map<string, number>;
  /** No value's time is below this: pruning and counting skip the scan when a window covers it. */
  oldest: number;
}

interface Series {
  field: string;
  value: string;
  /** times[head..] ascending, ids aligned; the dead prefix is compacted now and then. */
  times: number[];
  ids: string[];
  head: number;
  seen: Set<string>;
  /** By distinct path. */
  distinct: Map<string, Distinct> | undefined;
  retainMs: number;
  lastMs: number;
  /** The LRU list: `older` toward the cold end. */
  older: Series | undefined;
  newer: Series | undefined;
}

/** A decision's request for one value, windows ascending and unique, one entry per distinct path. */
interface Request {
  field: string;
  value: string;
  windowsMs: readonly number[];
  distinct: readonly { path: string; value: string | undefined; windowsMs: readonly number[] }[];
}

const SWEEP_PER_CALL = 2;
/** In `ids` for a time whose decision cannot come again (not in `seen`). */
const NO_ID = '';

export class MemoryCounterStore implements CounterStore {
  #maxKeys: number;
  #maxEvents: number;
  #maxPerKey: number;
  #byField = new Map<string, Map<string, Series>>();
  /** Cold end and hot end of the recency list. */
  #coldest: Series | undefined;
  #hottest: Series | undefined;
  #keys = 0;
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
    opts: CountOptions,
  ): Promise<Counts> {
    return Promise.resolve(this.countSync(decisionId, nowMs, requests, opts));
  }

  /** The same as count(), without the promise: the store never waits for anything. */
  countSync(
    decisionId: string,
    nowMs: number,
    requests: readonly CounterRequest[],
    opts: CountOptions,
  ): Counts {
    const counts = new FlatCounts();
    const record = opts.record;
    // A decision id that cannot come again needs no entry in `seen`: keeping each decision's id
    // string in every series it touched (and a Set entry) was most of what a young-generation
    // collection had to copy, and made each such pause twice as long.
    const repeatable = opts.repeatable !== false;
    const reqs: readonly Request[] = alreadyNormal(requests)
      ? requests
      : normalizeRequests(requests);
    for (let r = 0; r < reqs.length; r++) {
      const req = reqs[r]!;
      const retainMs = retainOf(req);
      let values = this.#byField.get(req.field);
      let s = values?.get(req.value);
      if (s) this.#touch(s);
      else if (record) {
        if (!values) {
          values = new Map();
          this.#byField.set(req.field, values);
        }
        s = {
          field: req.field,
          value: req.value,
          times: [],
          ids: [],
          head: 0,
          seen: new Set(),
          distinct: undefined,
          retainMs: 0,
          lastMs: nowMs,
          older: undefined,
          newer: undefined,
        };
        values.set(req.value, s);
        this.#keys++;
        this.#link(s);
      }
      const fresh = !s || !repeatable || !s.seen.has(decisionId);
      if (record && s) {
        if (retainMs > s.retainMs) s.retainMs = retainMs;
        if (nowMs > s.lastMs) s.lastMs = nowMs;
        if (fresh) this.#insert(s, nowMs, repeatable ? decisionId : NO_ID);
        this.#prune(s, nowMs - s.retainMs);
      }
      const ws = req.windowsMs;
      for (let i = 0; i < ws.length; i++) {
        const w = ws[i]!;
        let n = s ? countAfter(s, nowMs - w) : 0;
        if (!record && fresh) n++;
        counts.add(req.field, req.value, w, undefined, n);
      }
      for (let k = 0; k < req.distinct.length; k++) {
        const d = req.distinct[k]!;
        let ds = s?.distinct?.get(d.path);
        // A retried decision does not move its distinct value's time: it keeps its first.
        if (record && fresh && d.value !== undefined && s) {
          if (!ds) {
            ds = { last: new Map(), oldest: nowMs };
            (s.distinct ??= new Map()).set(d.path, ds);
            this.#keys++;
          }
          const prev = ds.last.get(d.value);
          if (prev === undefined) {
            this.#events++;
            ds.last.set(d.value, nowMs);
            if (nowMs < ds.oldest) ds.oldest = nowMs;
          } else if (prev < nowMs) ds.last.set(d.value, nowMs);
        }
        if (record && ds) this.#pruneDistinct(ds, nowMs - s!.retainMs);
        for (let i = 0; i < d.windowsMs.length; i++) {
          const w = d.windowsMs[i]!;
          const cutoff = nowMs - w;
          let n = 0;
          if (ds) {
            if (ds.oldest > cutoff) n = ds.last.size;
            else for (const t of ds.last.values()) if (t > cutoff) n++;
          }
          if (!record && fresh && d.value !== undefined) {
            const t = ds?.last.get(d.value);
            if (t === undefined || t <= cutoff) n++;
          }
          counts.add(req.field, req.value, w, d.path, n);
        }
      }
    }
    if (record) this.#bound(nowMs);
    return counts;
  }

  /** Keys and stored times right now, and keys evicted so far (for metrics). */
  stats(): { keys: number; events: number; evicted: number } {
    return { keys: this.#keys, events: this.#events, evicted: this.#evicted };
  }

  close(): Promise<void> {
    this.#byField.clear();
    this.#coldest = this.#hottest = undefined;
    this.#keys = 0;
    this.#events = 0;
    return Promise.resolve();
  }

  #link(s: Series): void {
    s.older = this.#hottest;
    s.newer = undefined;
    if (this.#hottest) this.#hottest.newer = s;
    else this.#coldest = s;
    this.#hottest = s;
  }

  #unlink(s: Series): void {
    if (s.older) s.older.newer = s.newer;
    else this.#coldest = s.newer;
    if (s.newer) s.newer.older = s.older;
    else this.#hottest = s.older;
    s.older = s.newer = undefined;
  }

  #touch(s: Series): void {
    if (this.#hottest === s) return;
    this.#unlink(s);
    this.#link(s);
  }

  #remove(s: Series): void {
    this.#unlink(s);
    const values = this.#byField.get(s.field);
    values?.delete(s.value);
    if (values?.size === 0) this.#byField.delete(s.field);
    this.#keys -= 1 + (s.distinct?.size ?? 0);
    let events = s.times.length - s.head;
    if (s.distinct) for (const ds of s.distinct.values()) events += ds.last.size;
    this.#events -= events;
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
    if (id !== NO_ID) s.seen.add(id);
    this.#events++;
    if (s.times.length - s.head > this.#maxPerKey) this.#dropFront(s, 1);
  }

  #prune(s: Series, cutoff: number): void {
    let k = 0;
    while (s.head + k < s.times.length && s.times[s.head + k]! <= cutoff) k++;
    if (k > 0) this.#dropFront(s, k);
  }

  #dropFront(s: Series, k: number): void {
    for (let i = s.head; i < s.head + k; i++) {
      const id = s.ids[i]!;
      if (id !== NO_ID) s.seen.delete(id);
    }
    s.head += k;
    this.#events -= k;
    if (s.head > 64 && s.head * 2 > s.times.length) {
      s.times = s.times.slice(s.head);
      s.ids = s.ids.slice(s.head);
      s.head = 0;
    }
  }

  #pruneDistinct(ds: Distinct, cutoff: number): void {
    if (ds.oldest > cutoff) return;
    let oldest = Infinity;
    for (const [v, t] of ds.last) {
      if (t <= cutoff) {
        ds.last.delete(v);
        this.#events--;
      } else if (t < oldest) oldest = t;
    }
    ds.oldest = oldest;
  }

  /** Sweeps idle values from the cold end, then evicts least recently used values over the limits. */
  #bound(nowMs: number): void {
    for (let swept = 0; swept < SWEEP_PER_CALL; swept++) {
      const s = this.#coldest;
      if (!s || s.lastMs + s.retainMs > nowMs) break;
      this.#remove(s);
    }
    while (this.#keys > this.#maxKeys || this.#events > this.#maxEvents) {
      const s = this.#coldest;
      if (!s || s === this.#hottest) break;
      this.#remove(s);
      this.#evicted += 1 + (s.distinct?.size ?? 0);
    }
  }
}

/** The counts of one decision: a handful of entries, so a scan beats building string keys. */
class FlatCounts implements Counts {
  #fields: string[] = [];
  #values: string[] = [];
  #windows: number[] = [];
  #paths: (string | undefined)[] = [];
  #n: number[] = [];

  add(field: string, value: string, windowMs: number, path: string | undefined, n: number): void {
    this.#fields.push(field);
    this.#values.push(value);
    this.#windows.push(windowMs);
    this.#paths.push(path);
    this.#n.push(n);
  }

  get(field: string, value: string, windowMs: number, distinctPath?: string): number | undefined {
    const ws = this.#windows;
    for (let i = 0; i < ws.length; i++) {
      if (
        ws[i] === windowMs &&
        this.#fields[i] === field &&
        this.#values[i] === value &&
        this.#paths[i] === distinctPath
      )
        return this.#n[i];
    }
    return undefined;
  }
}

/** Windows that normalizeRequests would leave as they are: whole, ≥ 1, ascending, unique. */
function normalWindows(ws: readonly number[]): boolean {
  for (let i = 0; i < ws.length; i++) {
    const w = ws[i]!;
    if (!Number.isInteger(w) || w < 1 || (i > 0 && w <= ws[i - 1]!)) return false;
  }
  return true;
}

/** Whether normalizeRequests would change nothing but the shape: one request per value, clean windows. */
function alreadyNormal(requests: readonly CounterRequest[]): boolean {
  for (let i = 0; i < requests.length; i++) {
    const r = requests[i]!;
    if (!normalWindows(r.windowsMs)) return false;
    for (let j = 0; j < i; j++)
      if (requests[j]!.field === r.field && requests[j]!.value === r.value) return false;
    for (let k = 0; k < r.distinct.length; k++) {
      const d = r.distinct[k]!;
      if (!normalWindows(d.windowsMs)) return false;
      for (let m = 0; m < k; m++) if (r.distinct[m]!.path === d.path) return false;
    }
  }
  return true;
}

/** The longest window anything on this value asks for: how long its history must be kept. */
function retainOf(r: Request): number {
  let m = 1;
  if (r.windowsMs.length > 0) m = Math.max(m, r.windowsMs[r.windowsMs.length - 1]!);
  for (let k = 0; k < r.distinct.length; k++) {
    const ws = r.distinct[k]!.windowsMs;
    if (ws.length > 0) m = Math.max(m, ws[ws.length - 1]!);
  }
  return m;
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
