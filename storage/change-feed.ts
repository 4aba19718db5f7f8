// How every instance learns of a change another one made: each topic has a generation row
// (change_feed) bumped in the changing transaction. The feed reads all generations in one cheap
// query, on a timer (SQLite: the only way across processes; PostgreSQL: a fallback) and whenever
// the driver hears a NOTIFY. Because subscribers are only called when a generation they have not
// seen shows up, a spurious wake-up (another schema's NOTIFY, a reconnect) costs one query.
import type { Unsubscribe } from './store.ts';

interface Subscription {
  topic: string;
  onChange: () => void;
  /** The generation this subscriber was last told about; undefined until its first call. */
  seen: number | undefined;
}

export interface ChangeFeedOptions {
  read: () => Promise<{ topic: string; generation: number }[]>;
  /** Starts push wake-ups; returns the stop function. */
  listen: (wake: () => void) => () => void;
  pollMs: number;
  /** Called when a read fails (the feed keeps polling). */
  onError?: (err: unknown) => void;
}

export class ChangeFeed {
  #opts: ChangeFeedOptions;
  #subs = new Set<Subscription>();
  #timer: NodeJS.Timeout | undefined;
  #unlisten: (() => void) | undefined;
  #checking: Promise<void> | undefined;
  #again = false;
  #closed = false;

  constructor(opts: ChangeFeedOptions) {
    this.#opts = opts;
  }

  /**
   * `onChange` is called once as soon as the watch is in place (so a subscriber that loads on
   * every call can never miss a change made between its own load and the subscription), then
   * after every change of the topic, at most once per observed generation.
   */
  subscribe(topic: string, onChange: () => void): Unsubscribe {
    if (this.#closed) return () => {};
    const sub: Subscription = { topic, onChange, seen: undefined };
    this.#subs.add(sub);
    if (!this.#timer) {
      this.#timer = setInterval(() => void this.check(), this.#opts.pollMs);
      this.#timer.unref();
      this.#unlisten = this.#opts.listen(() => void this.check());
    }
    void this.check();
    return () => {
      this.#subs.delete(sub);
      if (this.#subs.size === 0) this.#stop();
    };
  }

  /** Reads the generations now; concurrent calls coalesce into at most one more read. */
  check(): Promise<void> {
    if (this.#checking) {
      this.#again = true;
      return this.#checking;
    }
    this.#checking = (async () => {
      try {
        do {
          this.#again = false;
          await this.#checkOnce();
        } while (this.#again && !this.#closed);
      } finally {
        this.#checking = undefined;
      }
    })();
    return this.#checking;
  }

  async #checkOnce(): Promise<void> {
    if (this.#subs.size === 0 || this.#closed) return;
    let rows: { topic: string; generation: number }[];
    try {
      rows = await this.#opts.read();
    } catch (err) {
      this.#opts.onError?.(err);
      return;
    }
    const gens = new Map(rows.map((r) => [r.topic, Number(r.generation)]));
    for (const sub of [...this.#subs]) {
      const gen = gens.get(sub.topic);
      if (gen === undefined || gen === sub.seen || !this.#subs.has(sub)) continue;
      sub.seen = gen;
      try {
        sub.onChange();
      } catch (err) {
        // One failing subscriber must not starve the others of changes.
        this.#opts.onError?.(err);
      }
    }
  }

  #stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#unlisten?.();
    this.#unlisten = undefined;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#subs.clear();
    this.#stop();
    await this.#checking;
  }
}
