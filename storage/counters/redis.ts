// The shared counter store: every instance counts in one Redis, exactly. One Lua script per
// decision covers all of its counted values, so a decision costs one round trip and is counted
// atomically (Redis runs a script alone). Time comes from the Redis server (`TIME`), so instances
// with drifting clocks still agree on the windows; the `nowMs` argument is ignored here.
//
// Keys carry no PII: the field path and value are hashed (HMAC-SHA-256 when a key is configured,
// so a key cannot be reversed by hashing every IPv4 address), and so are distinct values stored
// as set members. A value's history is kept for the longest window ever asked for it, recorded
// in the set itself as a sentinel member with a negative score (out of every time range), so
// two rulesets counting the same field with different windows never prune each other's history.
//
// Redis failing must never slow a decision: no offline queue, no per-request retries, a short
// command timeout, reconnection in the background, and a circuit breaker that fails calls at
// once while Redis is known to be down. Every failure is a CounterUnavailableError.
//
// A single Redis (or a primary with replicas) is assumed: the script touches keys in several
// hash slots, which Redis Cluster would refuse.
import { createHash } from 'node:crypto';
import { hmacSha256 } from '../hmac.ts';
import { Redis } from 'ioredis';
import type { CounterRequest, CounterStore, Counts } from '../../rulesets/ports.ts';
import { CounterUnavailableError } from '../errors.ts';
import { CircuitBreaker, type BreakerState } from './breaker.ts';
import { CountsMap, normalizeRequests, type NormalizedRequest } from './counts.ts';

export interface RedisCounterOptions {
  url: string;
  /** Prefix of every key. Default `vigil:vel:`. */
  prefix?: string;
  /** Secret for the key hashes (e.g. derived from VIGIL_SECRET_KEY); without it, plain SHA-256. */
  hashKey?: string | Buffer;
  /** Per-command timeout, ms. Default 50. */
  commandTimeoutMs?: number;
  /** TCP connect timeout, ms. Default 1,000. */
  connectTimeoutMs?: number;
  /** Longest pause between reconnect attempts, ms. Default 2,000. */
  maxReconnectDelayMs?: number;
  /** Failures in a row that open the circuit. Default 5. */
  failureThreshold?: number;
  /** How long the circuit stays open before a probe, ms. Default 1,000. */
  coolDownMs?: number;
  /** Told about connection errors and failed calls (for logs and metrics). */
  onError?: (err: unknown) => void;
}

/** Key hashes kept for values seen again (~200 bytes each: ~3 MB full). */
const HASH_CACHE_SIZE = 16_384;

/** Kept after the last write beyond the retention, so a key never expires under a live window. */
const EXPIRE_SLACK_MS = 60_000;

// Spec (ARGV[3], JSON): [[seriesKeyIndex, [windows…], retainMs, [[distinctKeyIndex, member|'', [windows…]], …]], …]
// Returns the counts flattened in spec order: each series' windows, then each distinct's windows.
export const COUNT_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local record = ARGV[2] == '1'
local spec = cjson.decode(ARGV[3])
local RETAIN = '~retain'
local out = {}

local function retention(key, wanted)
  local r = redis.call('ZSCORE', key, RETAIN)
  if r then
    local prev = -tonumber(r)
    if prev > wanted then return prev end
  end
  return wanted
end

local function trim(key, wanted)
  local keep = retention(key, wanted)
  redis.call('ZADD', key, -keep, RETAIN)
  redis.call('ZREMRANGEBYSCORE', key, 0, now - keep)
  redis.call('PEXPIRE', key, keep + ${EXPIRE_SLACK_MS})
end

for _, r in ipairs(spec) do
  local key = KEYS[r[1]]
  local fresh
  if record then
    -- NX: a retried decision id is counted once and keeps its first time.
    fresh = redis.call('ZADD', key, 'NX', now, id) == 1
    trim(key, r[3])
  else
    fresh = not redis.call('ZSCORE', key, id)
  end
  for _, w in ipairs(r[2]) do
    local c = redis.call('ZCOUNT', key, '(' .. (now - w), '+inf')
    if fresh and not record then c = c + 1 end
    out[#out + 1] = c
  end
  for _, d in ipairs(r[4]) do
    local dkey = KEYS[d[1]]
    local member = d[2]
    if record and fresh and member ~= '' then
      -- GT: a value seen again moves to its latest time, never back.
      redis.call('ZADD', dkey, 'GT', now, member)
    end
    if record and redis.call('EXISTS', dkey) == 1 then trim(dkey, r[3]) end
    for _, w in ipairs(d[3]) do
      local cutoff = now - w
      local c = redis.call('ZCOUNT', dkey, '(' .. cutoff, '+inf')
      if fresh and not record and member ~= '' then
        local s = redis.call('ZSCORE', dkey, member)
        if not s or tonumber(s) <= cutoff then c = c + 1 end
      end
      out[#out + 1] = c
    end
  end
end
return out
`;

const SCRIPT_SHA = createHash('sha1').update(COUNT_SCRIPT).digest('hex');

export interface RedisCounterStatus {
  connection: string;
  breaker: BreakerState;
  breakerOpens: number;
  failures: number;
}

export class RedisCounterStore implements CounterStore {
  #redis: Redis;
  #prefix: string;
  // Several hashes per decision: through ../hmac.ts (pads prepared once), not createHmac, which
  // builds a native object per call (~10% of a Redis-counted decision's main thread).
  #hashKey: Buffer | undefined;
  /** Text → its key hash, for values counted again (see #hash). */
  #hashes = new Map<string, string>();
  #breaker: CircuitBreaker;
  #onError: ((err: unknown) => void) | undefined;
  #failures = 0;
  #closed = false;

  constructor(opts: RedisCounterOptions) {
    this.#prefix = opts.prefix ?? 'vigil:vel:';
    this.#hashKey =
      opts.hashKey === undefined
        ? undefined
        : typeof opts.hashKey === 'string'
          ? Buffer.from(opts.hashKey, 'utf8')
          : Buffer.from(opts.hashKey);
    this.#onError = opts.onError;
    this.#breaker = new CircuitBreaker({
      threshold: opts.failureThreshold ?? 5,
      coolDownMs: opts.coolDownMs ?? 1_000,
    });
    const maxDelay = opts.maxReconnectDelayMs ?? 2_000;
    this.#redis = new Redis(opts.url, {
      // Fail at once while disconnected instead of queueing behind a reconnect.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: opts.commandTimeoutMs ?? 50,
      connectTimeout: opts.connectTimeoutMs ?? 1_000,
      // Never give up: reconnect in the background with capped backoff.
      retryStrategy: (times) => Math.min(maxDelay, 25 * 2 ** Math.min(times, 10)),
      lazyConnect: false,
      // Concurrent decisions' scripts leave in one write (one round trip per tick, not per
      // decision); each is still its own EVALSHA, atomic and idempotent on its decision id.
      enableAutoPipelining: true,
    });
    this.#redis.on('error', (err: unknown) => this.#onError?.(err));
    this.#redis.on('ready', () => {
      // Back: stop failing fast now rather than after the cool-down, and reload the script
      // (a restarted Redis has forgotten it).
      this.#breaker.reset();
      this.#redis.script('LOAD', COUNT_SCRIPT).catch((err: unknown) => this.#onError?.(err));
    });
  }

  /** Resolves when connected (startup, tests); rejects after `timeoutMs`. */
  ready(timeoutMs = 5_000): Promise<void> {
    if (this.#redis.status === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#redis.off('ready', onReady);
        reject(new CounterUnavailableError('not_connected'));
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#redis.once('ready', onReady);
    });
  }

  status(): RedisCounterStatus {
    return {
      connection: this.#redis.status,
      breaker: this.#breaker.state,
      breakerOpens: this.#breaker.opens,
      failures: this.#failures,
    };
  }

  async count(
    decisionId: string,
    _nowMs: number,
    requests: CounterRequest[],
    opts: { record: boolean },
  ): Promise<Counts> {
    const normalized = normalizeRequests(requests);
    const counts = new CountsMap();
    if (normalized.length === 0) return counts;
    if (this.#closed) throw new CounterUnavailableError('closed');
    if (!this.#breaker.allow()) throw new CounterUnavailableError('circuit_open');
    if (this.#redis.status !== 'ready') {
      this.#breaker.failure();
      this.#failures++;
      throw new CounterUnavailableError('not_connected');
    }
    const { keys, spec } = this.#spec(normalized);
    const args = [decisionId, opts.record ? '1' : '0', JSON.stringify(spec)];
    let reply: unknown;
    try {
      reply = await this.#eval(keys, args);
    } catch (err) {
      this.#breaker.failure();
      this.#failures++;
      this.#onError?.(err);
      const timeout = err instanceof Error && /timed out/i.test(err.message);
      throw new CounterUnavailableError(timeout ? 'timeout' : 'error', { cause: err });
    }
    this.#breaker.success();
    if (!Array.isArray(reply)) throw new CounterUnavailableError('bad_reply');
    let i = 0;
    const next = () => Number(reply[i++]);
    for (const r of normalized) {
      for (const w of r.windowsMs) counts.set(r.field, r.value, w, undefined, next());
      for (const d of r.distinct) {
        for (const w of d.windowsMs) counts.set(r.field, r.value, w, d.path, next());
      }
    }
    return counts;
  }

  async #eval(keys: string[], args: string[]): Promise<unknown> {
    try {
      return await this.#redis.evalsha(SCRIPT_SHA, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      await this.#redis.script('LOAD', COUNT_SCRIPT);
      return this.#redis.evalsha(SCRIPT_SHA, keys.length, ...keys, ...args);
    }
  }

  #spec(normalized: NormalizedRequest[]): { keys: string[]; spec: unknown[] } {
    const keys: string[] = [];
    const spec = normalized.map((r) => {
      keys.push(`${this.#prefix}v:${this.#hash(`${r.field}\u0000${r.value}`)}`);
      const seriesIndex = keys.length;
      const distinct = r.distinct.map((d) => {
        keys.push(`${this.#prefix}d:${this.#hash(`${r.field}\u0000${r.value}\u0000${d.path}`)}`);
        return [keys.length, d.value === undefined ? '' : this.#hash(d.value), d.windowsMs];
      });
      return [seriesIndex, r.windowsMs, r.retainMs, distinct];
    });
    return { keys, spec };
  }

  #hash(text: string): string {
    // Counted values come back (that is what counting them is for): a card, an IP or a customer
    // seen again reuses its hash instead of two SHA-256 passes (~2 µs each, five per decision
    // with the bench's ruleset). Bounded; emptied when full rather than tracking recency.
    let h = this.#hashes.get(text);
    if (h !== undefined) return h;
    const hex = this.#hashKey
      ? hmacSha256(this.#hashKey, text, 'hex')
      : createHash('sha256').update(text, 'utf8').digest('hex');
    h = hex.slice(0, 32);
    if (this.#hashes.size >= HASH_CACHE_SIZE) this.#hashes.clear();
    this.#hashes.set(text, h);
    return h;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#redis.quit();
    } catch {
      this.#redis.disconnect();
    }
  }
}
