// A small HTTP load generator for the benchmarks, on undici, loopback only, bounded in time.
// Two modes: closed loop (N connections each sending back to back: max throughput) and open
// loop (a fixed request rate: latency at a given load, free of coordinated omission because
// each request's latency counts from its scheduled start, not from when a connection freed up).
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';

export interface LoadTarget {
  url: string;
  method?: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  /** Called per request so bodies can vary (e.g. another card each time). */
  body?: (i: number) => string;
}

export interface LoadResult {
  requests: number;
  errors: number;
  statuses: Record<number, number>;
  seconds: number;
  rps: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  /**
   * Open loop only: latency from the moment the request was sent, and how late the generator
   * sent it. At a load far below saturation the generator's own timer lateness (1–5 ms at p99 on
   * a busy 2-core machine) is noise the server did not cause; these separate the two.
   */
  sent?: { p50_ms: number; p90_ms: number; p99_ms: number; max_ms: number };
  send_late_p99_ms?: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length));
  return sorted[i]!;
}

function summarize(
  lat: number[],
  errors: number,
  statuses: Record<number, number>,
  seconds: number,
): LoadResult {
  const s = Float64Array.from(lat).sort();
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return {
    requests: lat.length,
    errors,
    statuses,
    seconds: r(seconds),
    rps: Math.round(lat.length / seconds),
    p50_ms: r(percentile(s, 50)),
    p90_ms: r(percentile(s, 90)),
    p99_ms: r(percentile(s, 99)),
    max_ms: r(s.length ? s[s.length - 1]! : Number.NaN),
  };
}

async function one(
  pool: Pool,
  t: LoadTarget,
  i: number,
  statuses: Record<number, number>,
): Promise<boolean> {
  try {
    const res = await pool.request({
      method: t.method ?? 'GET',
      path: t.path,
      headers: t.headers,
      body: t.body?.(i),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    await res.body.dump();
    statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
    return res.statusCode < 500;
  } catch {
    return false;
  }
}

/** Closed loop: `connections` workers sending back to back for `seconds` (after a warm-up). */
export async function closedLoop(
  t: LoadTarget,
  connections: number,
  seconds: number,
  warmupSeconds = 1,
  onMeasureStart?: () => void,
): Promise<LoadResult> {
  const pool = new Pool(t.url, { connections, pipelining: 1 });
  let i = 0;
  const run = async (
    untilMs: number,
    lat: number[] | undefined,
    statuses: Record<number, number>,
    errs: { n: number },
  ) => {
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (performance.now() < untilMs) {
          const t0 = performance.now();
          const ok = await one(pool, t, i++, statuses);
          if (!ok) errs.n++;
          lat?.push(performance.now() - t0);
        }
      }),
    );
  };
  await run(performance.now() + warmupSeconds * 1000, undefined, {}, { n: 0 });
  const lat: number[] = [];
  const statuses: Record<number, number> = {};
  const errs = { n: 0 };
  onMeasureStart?.();
  const start = performance.now();
  await run(start + seconds * 1000, lat, statuses, errs);
  const res = summarize(lat, errs.n, statuses, (performance.now() - start) / 1000);
  await pool.close();
  return res;
}

/** Open loop: `rps` requests per second for `seconds`, latency from each scheduled start. */
export async function openLoop(
  t: LoadTarget,
  rps: number,
  seconds: number,
  connections = 64,
): Promise<LoadResult> {
  const pool = new Pool(t.url, { connections, pipelining: 1 });
  const total = Math.max(1, Math.round(rps * seconds));
  const interval = 1000 / rps;
  const lat: number[] = [];
  const fromSend: number[] = [];
  const late: number[] = [];
  const statuses: Record<number, number> = {};
  let errors = 0;
  const inflight: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const scheduled = start + i * interval;
    const wait = scheduled - performance.now();
    if (wait > 1) await sleep(wait);
    const sent = performance.now();
    late.push(Math.max(0, sent - scheduled));
    inflight.push(
      one(pool, t, i, statuses).then((ok) => {
        if (!ok) errors++;
        const now = performance.now();
        lat.push(now - scheduled);
        fromSend.push(now - sent);
      }),
    );
    if (inflight.length > 4096) await Promise.all(inflight.splice(0, 2048));
  }
  await Promise.all(inflight);
  const res = summarize(lat, errors, statuses, (performance.now() - start) / 1000);
  const s = summarize(fromSend, errors, statuses, 1);
  res.sent = { p50_ms: s.p50_ms, p90_ms: s.p90_ms, p99_ms: s.p99_ms, max_ms: s.max_ms };
  res.send_late_p99_ms = summarize(late, 0, {}, 1).p99_ms;
  await pool.close();
  return res;
}

export function ratio(a: number, b: number): string {
  return b > 0 ? (a / b).toFixed(2) : 'n/a';
}
