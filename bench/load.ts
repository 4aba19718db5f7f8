// A small HTTP load generator for the benchmarks, on undici, loopback only, bounded in time.
// Two modes: closed loop (N connections each sending back to back: max throughput) and open
// loop (a fixed request rate: latency at a given load, free of coordinated omission because
// each request's latency counts from its scheduled start, not from when a connection freed up).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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
  /** Open loop only: every latency from the send, ms, to pool several runs (pooledSent()). */
  sent_samples_ms?: number[];
  /** Beside sent_samples_ms: each request's index (the `i` its body was made from), -1 unknown. */
  sent_samples_index?: number[];
}

/**
 * Percentiles over the from-send latencies of several open-loop runs taken together; with
 * `keep`, only the requests whose index it accepts (e.g. the REVIEWs of a mixed load).
 */
export function pooledSent(runs: LoadResult[], keep?: (i: number) => boolean): LoadResult {
  const lat = runs.flatMap((r) =>
    (r.sent_samples_ms ?? []).filter((_, k) => !keep || keep(r.sent_samples_index?.[k] ?? -1)),
  );
  const statuses: Record<number, number> = {};
  for (const r of runs)
    for (const [k, v] of Object.entries(r.statuses))
      statuses[Number(k)] = (statuses[Number(k)] ?? 0) + v;
  const res = summarize(
    lat,
    runs.reduce((n, r) => n + r.errors, 0),
    statuses,
    runs.reduce((n, r) => n + r.seconds, 0),
  );
  res.sent = { p50_ms: res.p50_ms, p90_ms: res.p90_ms, p99_ms: res.p99_ms, max_ms: res.max_ms };
  return res;
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
  const fromSendIndex: number[] = [];
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
        fromSendIndex.push(i);
      }),
    );
    if (inflight.length > 4096) await Promise.all(inflight.splice(0, 2048));
  }
  await Promise.all(inflight);
  const res = summarize(lat, errors, statuses, (performance.now() - start) / 1000);
  const s = summarize(fromSend, errors, statuses, 1);
  res.sent = { p50_ms: s.p50_ms, p90_ms: s.p90_ms, p99_ms: s.p99_ms, max_ms: s.max_ms };
  res.sent_samples_ms = fromSend;
  res.sent_samples_index = fromSendIndex;
  res.send_late_p99_ms = summarize(late, 0, {}, 1).p99_ms;
  await pool.close();
  return res;
}

export function ratio(a: number, b: number): string {
  return b > 0 ? (a / b).toFixed(2) : 'n/a';
}

/**
 * vegeta (scripts/vegeta.sh builds it into the cache; VIGIL_VEGETA names another): a
 * constant-rate generator in Go. Where it is installed the open-loop figures come from it: it
 * sends each request when due on its own threads and times it from the send, so a GC pause or a
 * late timer in this Node process (1–6 ms at p99 on a busy 2-core machine) no longer lands in
 * the figures of the server under test.
 */
export function vegetaBin(): string | undefined {
  const cache = process.env.VIGIL_CACHE ?? path.join(os.homedir(), '.cache', 'vigil');
  const candidates = [
    process.env.VIGIL_VEGETA,
    path.join(cache, `vegeta-${process.env.VIGIL_VEGETA_VERSION ?? '12.12.0'}`, 'vegeta'),
  ];
  for (const c of candidates) if (c && existsSync(c)) return c;
  try {
    execFileSync('sh', ['-c', 'command -v vegeta'], { stdio: 'ignore' });
    return 'vegeta';
  } catch {
    return undefined;
  }
}

/** vegeta's JSON-lines targets (also what bench/loadgen reads): `count` requests from `t`. */
function writeTargets(t: LoadTarget, count: number, file: string): void {
  const header: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(t.headers ?? {})) header[k] = [v];
  const url = `${t.url}${t.path}`;
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const body = t.body?.(i);
    lines.push(
      JSON.stringify({
        method: t.method ?? 'GET',
        url,
        header,
        ...(body === undefined ? {} : { body: Buffer.from(body).toString('base64') }),
      }),
    );
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
}

/** Runs a generator to its end; rejects with its stderr when it fails. */
function runGenerator(name: string, bin: string, args: string[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const p = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.once('error', reject);
    p.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${name} failed (${code}): ${err}`)),
    );
  });
}

/** One vegeta attack: `rps` for `seconds`, each request from `t` (bodies vary by index). */
export async function vegetaOpenLoop(
  bin: string,
  t: LoadTarget,
  rps: number,
  seconds: number,
  connections = 64,
): Promise<LoadResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-vegeta-'));
  try {
    const total = Math.max(1, Math.round(rps * seconds));
    writeTargets(t, total, path.join(dir, 'targets.json'));
    const out = path.join(dir, 'results.bin');
    const t0 = performance.now();
    await runGenerator('vegeta', bin, [
      'attack',
      '-format=json',
      `-targets=${path.join(dir, 'targets.json')}`,
      `-rate=${rps}/s`,
      `-duration=${seconds}s`,
      `-connections=${connections}`,
      // Bounded: an unbounded vegeta answers a stall by opening connections and goroutines
      // without limit, and then measures itself.
      `-max-connections=${connections * 2}`,
      // Open before the clock starts (as wrk does): dials made on the schedule delay it and
      // release the requests due meanwhile in one burst at the start of every run.
      `-preconnect=${Math.min(connections, 32)}`,
      `-max-workers=${connections * 2}`,
      '-workers=8',
      '-timeout=10s',
      `-output=${out}`,
    ]);
    const elapsed = (performance.now() - t0) / 1000;
    // One CSV row a request: timestamp, status, latency (ns), bytes out, bytes in, error, …
    const csv = execFileSync(bin, ['encode', '--to=csv', out], {
      maxBuffer: 1024 * 1024 * 1024,
    }).toString('utf8');
    const lat: number[] = [];
    const seqs: number[] = [];
    const statuses: Record<number, number> = {};
    let errors = 0;
    for (const row of csv.split('\n')) {
      const f = row.split(',');
      if (f.length < 3) continue;
      const code = Number(f[1]);
      if (code === 0 || code >= 500) errors++;
      if (code !== 0) statuses[code] = (statuses[code] ?? 0) + 1;
      lat.push(Number(f[2]) / 1e6);
      // The request's index in the targets (`seq`), when the error field held no comma.
      seqs.push(f.length === 12 ? Number(f[8]) % total : -1);
    }
    const res = summarize(lat, errors, statuses, Math.min(elapsed, seconds));
    // vegeta times from the send, and sends on schedule while it has a free worker.
    res.sent = { p50_ms: res.p50_ms, p90_ms: res.p90_ms, p99_ms: res.p99_ms, max_ms: res.max_ms };
    res.sent_samples_ms = lat;
    res.sent_samples_index = seqs;
    return res;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let loadgenPath: string | null | undefined;

/**
 * bench/loadgen (scripts/loadgen.sh builds it from its Go source into the cache, in a second or
 * two the first time): the benchmarks' own open-loop generator, about half of vegeta's CPU per
 * request (34–36 µs against 72 µs here), which matters where the generator shares 2 cores with
 * the servers it measures. Undefined where Go is missing.
 */
export function loadgenBin(): string | undefined {
  if (loadgenPath === undefined) {
    try {
      const script = path.resolve(import.meta.dirname, '../scripts/loadgen.sh');
      loadgenPath = execFileSync('bash', [script, 'path'], { stdio: ['ignore', 'pipe', 'ignore'] })
        .toString('utf8')
        .trim();
    } catch {
      loadgenPath = null;
    }
  }
  return loadgenPath ?? undefined;
}

/** One loadgen run: `rps` for `seconds`, each request from `t` (bodies vary by index). */
export async function loadgenOpenLoop(
  bin: string,
  t: LoadTarget,
  rps: number,
  seconds: number,
  connections = 64,
): Promise<LoadResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-loadgen-'));
  try {
    const total = Math.max(1, Math.round(rps * seconds));
    // A body that never varies needs one target; else one per request, as vegeta takes them.
    writeTargets(t, t.body ? total : 1, path.join(dir, 'targets.json'));
    const out = path.join(dir, 'results.csv');
    const t0 = performance.now();
    await runGenerator('loadgen', bin, [
      `-targets=${path.join(dir, 'targets.json')}`,
      `-rate=${rps}`,
      `-duration=${seconds}s`,
      `-max-connections=${connections * 2}`,
      // Open before the clock starts (as wrk does): dials made on the schedule delay it and
      // release the requests due meanwhile in one burst at the start of every run.
      `-preconnect=${Math.min(connections, 32)}`,
      '-timeout=10s',
      `-output=${out}`,
    ]);
    const elapsed = (performance.now() - t0) / 1000;
    // One row a request: index, status (0: transport error), ns from the send, ns from when due.
    const lat: number[] = [];
    const seqs: number[] = [];
    const late: number[] = [];
    const statuses: Record<number, number> = {};
    let errors = 0;
    for (const row of readFileSync(out, 'utf8').split('\n')) {
      const f = row.split(',');
      if (f.length < 4) continue;
      const code = Number(f[1]);
      if (code === 0 || code >= 500) errors++;
      if (code !== 0) statuses[code] = (statuses[code] ?? 0) + 1;
      const fromSend = Number(f[2]) / 1e6;
      lat.push(fromSend);
      seqs.push(Number(f[0]));
      late.push(Number(f[3]) / 1e6 - fromSend);
    }
    const res = summarize(lat, errors, statuses, Math.min(elapsed, seconds));
    res.sent = { p50_ms: res.p50_ms, p90_ms: res.p90_ms, p99_ms: res.p99_ms, max_ms: res.max_ms };
    res.send_late_p99_ms = Math.round(percentile(Float64Array.from(late).sort(), 99) * 1000) / 1000;
    res.sent_samples_ms = lat;
    res.sent_samples_index = seqs;
    return res;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

type Generator = 'loadgen' | 'vegeta' | 'undici';

/** BENCH_GENERATOR (loadgen, vegeta or undici) if set and present; else the first present. */
export function fixedRateGenerator(): Generator {
  const asked = process.env.BENCH_GENERATOR;
  if (asked === 'undici') return 'undici';
  if (asked === 'vegeta') return vegetaBin() ? 'vegeta' : 'undici';
  if (loadgenBin()) return 'loadgen';
  return vegetaBin() ? 'vegeta' : 'undici';
}

/** The open loop from the generator fixedRateGenerator() names. */
export function fixedRate(
  t: LoadTarget,
  rps: number,
  seconds: number,
  connections = 64,
): Promise<LoadResult> {
  const gen = fixedRateGenerator();
  if (gen === 'loadgen') return loadgenOpenLoop(loadgenBin()!, t, rps, seconds, connections);
  if (gen === 'vegeta') return vegetaOpenLoop(vegetaBin()!, t, rps, seconds, connections);
  return openLoop(t, rps, seconds, connections);
}
