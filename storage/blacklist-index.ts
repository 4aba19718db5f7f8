// The blacklist as the engine reads it: an in-memory Map, so a lookup on the answer path is a
// hash probe, synchronous. It follows the store's change stream: every add, extension and delete
// carries a sequence number (the blacklist's change generation), and a refresh applies the rows
// changed since the last sequence it saw. A purge of old tombstones moves a second generation,
// and then the index reloads in full (a change it had not seen may be gone from the table).
import type { BlacklistLookup } from '../rulesets/ports.ts';
import type { BlacklistChange, Store, Unsubscribe } from './store.ts';

export type BlacklistSource = Pick<
  Store,
  'blacklistChanges' | 'blacklistGeneration' | 'watchBlacklist'
>;

export interface BlacklistIndexOptions {
  /** Rows read per query while catching up. Default 5,000. */
  pageSize?: number;
  /** How often expired entries are dropped from memory, ms. Default 60,000. */
  pruneEveryMs?: number;
  /** Follow the other instances' changes (default true); false: refresh() only. */
  watch?: boolean;
  onError?: (err: unknown) => void;
  now?: () => number;
}

function keyOf(fieldPath: string, value: string): string {
  return `${fieldPath}\u0000${value}`;
}

export class BlacklistIndex implements BlacklistLookup {
  #source: BlacklistSource;
  #pageSize: number;
  #pruneEveryMs: number;
  #onError: ((err: unknown) => void) | undefined;
  #now: () => number;
  /** field path + value → expiry in ms (Infinity: never). */
  #entries = new Map<string, number>();
  #seq = 0;
  #purges = -1;
  #lastPrune = 0;
  #refreshing: Promise<void> | undefined;
  #again = false;
  #unwatch: Unsubscribe | undefined;
  #closed = false;

  private constructor(source: BlacklistSource, opts: BlacklistIndexOptions) {
    this.#source = source;
    this.#pageSize = Math.max(1, opts.pageSize ?? 5_000);
    this.#pruneEveryMs = opts.pruneEveryMs ?? 60_000;
    this.#onError = opts.onError;
    this.#now = opts.now ?? Date.now;
  }

  /** Loads the whole blacklist, then follows changes. Rejects if the first load fails. */
  static async open(
    source: BlacklistSource,
    opts: BlacklistIndexOptions = {},
  ): Promise<BlacklistIndex> {
    const index = new BlacklistIndex(source, opts);
    await index.refresh();
    if (opts.watch ?? true) {
      index.#unwatch = source.watchBlacklist(() => {
        index.refresh().catch((err: unknown) => index.#onError?.(err));
      });
    }
    return index;
  }

  has(fieldPath: string, value: string, nowMs: number): boolean {
    const expires = this.#entries.get(keyOf(fieldPath, value));
    return expires !== undefined && expires > nowMs;
  }

  /** Entries in memory (expired ones linger until the next prune). */
  get size(): number {
    return this.#entries.size;
  }

  /** The last change sequence applied. */
  get seq(): number {
    return this.#seq;
  }

  /** Catches up with the store now; concurrent calls coalesce into at most one more pass. */
  refresh(): Promise<void> {
    if (this.#refreshing) {
      this.#again = true;
      return this.#refreshing;
    }
    this.#refreshing = (async () => {
      try {
        do {
          this.#again = false;
          await this.#catchUp();
        } while (this.#again && !this.#closed);
      } finally {
        this.#refreshing = undefined;
      }
    })();
    return this.#refreshing;
  }

  async #catchUp(): Promise<void> {
    const gen = await this.#source.blacklistGeneration();
    if (gen.purges !== this.#purges) {
      // Build aside and swap: lookups keep the old, whole map until the new one is complete.
      const fresh = new Map<string, number>();
      const seq = await this.#read(0, fresh);
      this.#entries = fresh;
      this.#seq = seq;
      this.#purges = gen.purges;
    } else if (gen.seq > this.#seq) {
      this.#seq = await this.#read(this.#seq, this.#entries);
    }
    const now = this.#now();
    if (now - this.#lastPrune >= this.#pruneEveryMs) {
      this.#lastPrune = now;
      for (const [k, exp] of this.#entries) if (exp <= now) this.#entries.delete(k);
    }
  }

  async #read(since: number, into: Map<string, number>): Promise<number> {
    let seq = since;
    for (;;) {
      const page = await this.#source.blacklistChanges(seq, this.#pageSize);
      for (const c of page) apply(into, c);
      if (page.length > 0) seq = page[page.length - 1]!.seq;
      if (page.length < this.#pageSize) return seq;
    }
  }

  close(): void {
    this.#closed = true;
    this.#unwatch?.();
    this.#unwatch = undefined;
  }
}

function apply(into: Map<string, number>, c: BlacklistChange): void {
  const k = keyOf(c.field_path, c.value);
  if (c.deleted) into.delete(k);
  else into.set(k, c.expires_at_ms ?? Number.POSITIVE_INFINITY);
}
