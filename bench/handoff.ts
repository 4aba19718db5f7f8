// The handoff's cost on the answer path and the case pipeline's rate (the workflows issue).
// `vigil start` (API and proxy in one process, the worker role with the outbox relay in a child
// process it supervises, embedded store) against a real Temporal dev server (TEMPORAL_ADDRESS,
// or a dev server of its own from the built CLI); then the same with `vigil api` and
// `vigil worker` started as two processes on the same data dir. The same open-loop load of
// POST /api/decisions alternates, in rounds, between 0% REVIEW (the anchor: nothing is handed
// off) and 10% REVIEW (every tenth decision writes the outbox and opens a case). Target: p99
// with 10% REVIEW ≤ 1.2× p99 with 0%, each over all its rounds' requests.
// Then every case is resolved through the API and the rate at which cases complete on the dev
// server is reported (no target: it is the dev server's, not production's).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { request } from 'undici';
import { startEmbeddedTemporal } from '../cli/embedded-temporal.ts';
import { loadConfig } from '../config/config.ts';
import { CASE_WORKFLOW } from '../workflows/contracts.ts';
import {
  fixedRate,
  fixedRateGenerator,
  pooledSent,
  type LoadResult,
  type LoadTarget,
} from './load.ts';

const root = path.resolve(import.meta.dirname, '..');
const TOKEN = 'vgl_bench_handoff_token_0123456789abcdef';
const P99_TARGET = 1.2;

export interface HandoffBenchOptions {
  /** Decisions per second in both phases. */
  rps?: number;
  /** One phase's length; each round runs a 0% and a 10% phase. */
  seconds?: number;
  /**
   * Rounds of (0%, 10%) phases, alternated; each side's p99 is taken over all its rounds'
   * requests together (3 × 1,000 at the defaults: the p99 is then the 30th slowest, not the 10th,
   * and a burst from elsewhere on the machine lands on both sides alike). Default 3.
   */
  rounds?: number;
  /** An existing Temporal; default: a dev server of the bench's own. */
  temporalAddress?: string | undefined;
  /** Cases resolved at once in the completion phase. */
  resolveConcurrency?: number;
  /**
   * `start`: one `vigil start` process (API, worker, relay together: what `start` runs).
   * `split`: `vigil api` and `vigil worker` processes on the same data dir.
   */
  layout?: 'start' | 'split';
}

export interface HandoffBenchResult {
  layout: 'start' | 'split';
  temporal: string;
  rps: number;
  seconds: number;
  rounds: number;
  review0: LoadResult;
  review10: LoadResult;
  /** The 10% phases by request: the REVIEWs, and the ALLOWs beside them (latency from send). */
  split10: {
    review: { p50_ms: number; p99_ms: number; n: number };
    allow: { p50_ms: number; p99_ms: number; n: number };
  };
  /** p99 with 10% REVIEW over p99 with 0%, latencies from each request's send. */
  p99_ratio: number;
  /** The same from each request's scheduled time (includes the generator's lateness). */
  scheduled_p99_ratio: number;
  pass: boolean;
  cases: {
    expected: number;
    opened: number;
    /** From the start of the first 10% phase until visibility lists every case. */
    open_seconds: number;
    /** After the last REVIEW was answered, until its case existed. */
    open_lag_seconds: number;
    /** Cases of the 10% phase the open list returned. */
    listed: number;
    resolved: number;
    /** Case queries that missed their deadline (503) and were tried again. */
    query_failures: number;
    resolve_failures: number;
    /** What failed, by status and error code. */
    failures: Record<string, number>;
    /** Medians of GET /api/cases/{id} (the case query) and POST …/resolve (the update). */
    query_ms: number;
    resolve_ms: number;
    completed: number;
    complete_seconds: number;
    completed_per_s: number;
  };
}

const RULESET = {
  name: 'handoff bench',
  context: 'checkout',
  rules: [
    {
      id: 'vip',
      type: 'condition',
      action: 'ALLOW',
      condition: { in: { path: '$.customer.id', values: ['cus_vip1'] } },
    },
    {
      id: 'card-velocity',
      type: 'condition',
      action: 'BLOCK',
      condition: { velocity: { field: '$.credential_fingerprint', window: '1h', gt: 100_000 } },
    },
    {
      id: 'big',
      type: 'condition',
      action: 'REVIEW',
      condition: { gte: { path: '$.transaction.amount', value: 100_000 } },
    },
  ],
};

const PLAYBOOK = {
  on: { decision: ['REVIEW'] },
  steps: [{ wait_for_resolution: { timeout: '72h' } }],
};

/** Decision `i` of a phase; with `reviewEvery`, every n-th one is a REVIEW with its own session. */
function body(phase: string, reviewEvery: number | undefined) {
  return (i: number) => {
    const review = reviewEvery !== undefined && i % reviewEvery === 0;
    return JSON.stringify({
      context: 'checkout',
      transaction: {
        reference: `ord_${phase}_${i}`,
        amount: review ? 150_000 : 1_000 + (i % 5000),
      },
      credential: {
        type: 'masked_pan',
        bin: '411111',
        last4: String(1000 + (i % 9000)).slice(-4),
        expiry: '12/29',
      },
      customer: { id: `cus_${i % 1000}` },
      device: { ip: `203.0.113.${i % 250}`, session: `hb_${phase}_${i}` },
    });
  };
}

async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function api(base: string, method: string, url: string, payload?: unknown) {
  const res = await request(`${base}${url}`, {
    method: method as 'GET',
    headers: {
      authorization: `Bearer ${TOKEN}`,
      ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(payload === undefined ? {} : { body: JSON.stringify(payload) }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? (JSON.parse(text) as Record<string, any>) : {} };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? Math.round((s[Math.floor(s.length / 2)] ?? 0) * 10) / 10 : Number.NaN;
}

/** Set when the vigil process ends before the bench stops it: every wait gives up at once. */
let died: string | undefined;

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number) {
  const end = Date.now() + timeoutMs;
  while (!(await probe().catch(() => false))) {
    if (died) throw new Error(`waiting for ${what}: ${died}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** A vigil process of the given role; resolves to its stop function. */
async function spawnRole(
  role: 'start' | 'api' | 'worker',
  env: Record<string, string>,
): Promise<() => Promise<void>> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--no-warnings', path.join(root, 'cli/main.ts'), role],
    {
      env: {
        ...process.env,
        ...env,
        VIGIL_ADMIN_TOKEN: TOKEN,
        VIGIL_DEMO: '0',
        VIGIL_CONFIG: '',
        VIGIL_LOG_LEVEL: 'warn',
        KAFKA_BROKERS: '',
        REDIS_URL: '',
        DATABASE_URL: '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let tail = '';
  const keep = (b: Buffer) => (tail = (tail + b.toString()).slice(-4000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) died = `vigil ${role} exited (${signal ?? code}); its last output:\n${tail}`;
  });
  const base = `http://127.0.0.1:${env.API_PORT}`;
  await waitFor(
    `vigil ${role} to answer /healthz`,
    async () => {
      const r = await request(`${base}/healthz`);
      await r.body.dump();
      return r.statusCode === 200;
    },
    60_000,
  );
  return async () => {
    stopping = true;
    child.kill('SIGTERM');
    if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
  };
}

export async function runHandoffBench(opts: HandoffBenchOptions = {}): Promise<HandoffBenchResult> {
  const rps = opts.rps ?? 100;
  const layout = opts.layout ?? 'start';
  const seconds = opts.seconds ?? 10;
  const dir = mkdtempSync(path.join(tmpdir(), 'vigil-bench-handoff-'));
  const closers: (() => Promise<void>)[] = [];
  try {
    let address = opts.temporalAddress ?? process.env.TEMPORAL_ADDRESS;
    if (!address) {
      const embedded = await startEmbeddedTemporal({
        bin: loadConfig(process.env).temporalBin,
        dataDir: path.join(dir, 'temporal'),
        log: () => {},
      });
      closers.unshift(() => embedded.stop());
      address = embedded.address;
    }
    const connection = await Connection.connect({ address });
    closers.unshift(() => connection.close());
    const client = new Client({ connection, namespace: 'default' });

    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    died = undefined;
    const env = {
      TEMPORAL_ADDRESS: address,
      VIGIL_DATA_DIR: path.join(dir, 'data'),
      PORT: String(await freePort()),
    };
    if (layout === 'start') {
      closers.unshift(await spawnRole('start', { ...env, API_PORT: String(port) }));
    } else {
      // `api` and `worker` share the data dir's store: the outbox the API writes is the one
      // the worker's relay drains. The worker serves /healthz on a port of its own.
      closers.unshift(await spawnRole('api', { ...env, API_PORT: String(port) }));
      // Beside the API on one host, as the README advises: at SCHED_IDLE like start's worker.
      closers.unshift(
        await spawnRole('worker', {
          ...env,
          API_PORT: String(await freePort()),
          VIGIL_WORKER_PRIORITY: 'idle',
        }),
      );
    }
    await waitFor(
      'vigil to serve /api',
      async () => (await api(base, 'GET', '/readyz')).status === 200,
      60_000,
    );
    const rs = await api(base, 'POST', '/api/admin/rulesets', RULESET);
    if (rs.status !== 201) throw new Error(`ruleset upload failed: ${JSON.stringify(rs.body)}`);
    await api(base, 'POST', `/api/admin/rulesets/${rs.body.id as string}/activate`);
    const pb = await api(base, 'PUT', '/api/admin/playbooks/hold', PLAYBOOK);
    if (pb.status !== 201) throw new Error(`playbook upload failed: ${JSON.stringify(pb.body)}`);

    const run = Date.now().toString(36);
    const target = (phase: string, reviewEvery?: number): LoadTarget => ({
      url: base,
      method: 'POST',
      path: '/api/decisions',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: body(`${run}${phase}`, reviewEvery),
    });
    // Warm-up (JIT, connections, SQLite pages), one case too so the worker's bundle is loaded.
    await fixedRate(target('w', 1000), rps, 2);
    await waitFor(
      'the warm-up case to open',
      async () => {
        await client.workflow.getHandle(`session-hb_${run}w_0`).describe();
        return true;
      },
      60_000,
    );
    const countCases = async (extra = '') =>
      (await client.workflow.count(`WorkflowType = '${CASE_WORKFLOW}'${extra}`)).count;
    const before = await countCases();

    const rounds = Math.max(1, opts.rounds ?? 3);
    const runs0: LoadResult[] = [];
    const runs10: LoadResult[] = [];
    let phaseStart = 0;
    let phaseEnd = 0;
    for (let n = 1; n <= rounds; n++) {
      runs0.push(await fixedRate(target(`a${n}`), rps, seconds));
      if (n === 1) phaseStart = performance.now();
      runs10.push(await fixedRate(target(`b${n}`, 10), rps, seconds));
      phaseEnd = performance.now();
    }
    const review0 = pooledSent(runs0);
    const review10 = pooledSent(runs10);
    // The 10% phases split by what was asked: the REVIEWs themselves (outbox and durable record
    // written before the answer) and the ALLOWs beside them.
    const reviewsOnly = pooledSent(runs10, (i) => i >= 0 && i % 10 === 0);
    const allowsBeside = pooledSent(runs10, (i) => i >= 0 && i % 10 !== 0);

    const expected = rounds * Math.ceil((rps * seconds) / 10);
    let opened = 0;
    await waitFor(
      `${expected} cases to open`,
      async () => {
        opened = (await countCases()) - before;
        return opened >= expected;
      },
      300_000,
    );
    const openedAt = performance.now();

    // Resolve every case of the 10% phase through the API, as analysts would.
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await api(
        base,
        'GET',
        `/api/cases?status=open&limit=100${cursor ? `&cursor=${cursor}` : ''}`,
      );
      if (page.status !== 200) throw new Error(`case list failed: ${JSON.stringify(page.body)}`);
      for (const c of page.body.cases as { workflow_id: string }[]) {
        if (c.workflow_id.startsWith(`session-hb_${run}b`)) ids.push(c.workflow_id);
      }
      cursor = page.body.next_cursor as string | null;
    } while (cursor);
    const completedBefore = await countCases(` AND ExecutionStatus = 'Completed'`);
    const t0 = performance.now();
    let resolved = 0;
    let queryFailures = 0;
    const failures: Record<string, number> = {};
    const queryMs: number[] = [];
    const resolveMs: number[] = [];
    let resolveFailures = 0;
    const queue = [...ids];
    await Promise.all(
      Array.from({ length: opts.resolveConcurrency ?? 16 }, async () => {
        for (let id = queue.pop(); id; id = queue.pop()) {
          // The case query runs on the worker: on a busy machine it can miss its deadline (503).
          let decisionId: string | undefined;
          // A case the worker has not reached yet answers with opened_by null: ask again.
          for (let attempt = 0; attempt < 60 && !decisionId; attempt++) {
            if (attempt > 0) await sleep(500);
            const q0 = performance.now();
            const c = await api(base, 'GET', `/api/cases/${id}`);
            queryMs.push(performance.now() - q0);
            if (c.status === 200) decisionId = (c.body.opened_by as string | null) ?? undefined;
            else {
              queryFailures++;
              failures[`case query ${c.status} ${String(c.body.error)}`] =
                (failures[`case query ${c.status} ${String(c.body.error)}`] ?? 0) + 1;
            }
          }
          const r0 = performance.now();
          const r = decisionId
            ? await api(base, 'POST', `/api/decisions/${decisionId}/resolve`, {
                resolution: 'accept',
              })
            : undefined;
          if (r) resolveMs.push(performance.now() - r0);
          if (r?.status === 200) resolved++;
          else {
            resolveFailures++;
            const why = r ? `resolve ${r.status} ${String(r.body.error)}` : 'no case answer';
            failures[why] = (failures[why] ?? 0) + 1;
          }
        }
      }),
    );
    let completed = 0;
    await waitFor(
      `${resolved} cases to complete`,
      async () => {
        completed = (await countCases(` AND ExecutionStatus = 'Completed'`)) - completedBefore;
        return completed >= resolved;
      },
      300_000,
    );
    const completeSeconds = (performance.now() - t0) / 1000;

    // From the moment each request was sent: the generator's own timer lateness (this process
    // shares the 2 cores with the dev server and the worker) is not the answer path's cost.
    // The ratio from the scheduled times is printed beside it.
    const p99Ratio = review10.sent!.p99_ms / review0.sent!.p99_ms;
    return {
      layout,
      temporal: opts.temporalAddress || process.env.TEMPORAL_ADDRESS ? address : 'own dev server',
      rps,
      seconds,
      rounds,
      review0,
      review10,
      split10: {
        review: { p50_ms: reviewsOnly.p50_ms, p99_ms: reviewsOnly.p99_ms, n: reviewsOnly.requests },
        allow: {
          p50_ms: allowsBeside.p50_ms,
          p99_ms: allowsBeside.p99_ms,
          n: allowsBeside.requests,
        },
      },
      p99_ratio: Math.round(p99Ratio * 100) / 100,
      scheduled_p99_ratio: Math.round((review10.p99_ms / review0.p99_ms) * 100) / 100,
      pass: p99Ratio <= P99_TARGET,
      cases: {
        expected,
        opened,
        open_seconds: Math.round((openedAt - phaseStart) / 10) / 100,
        open_lag_seconds: Math.round(Math.max(0, openedAt - phaseEnd) / 10) / 100,
        listed: ids.length,
        resolved,
        query_failures: queryFailures,
        resolve_failures: resolveFailures,
        failures,
        query_ms: median(queryMs),
        resolve_ms: median(resolveMs),
        completed,
        complete_seconds: Math.round(completeSeconds * 100) / 100,
        completed_per_s: Math.round((completed / completeSeconds) * 10) / 10,
      },
    };
  } catch (err) {
    // A request that failed because vigil died says only "other side closed": say why it died.
    await sleep(500);
    if (died) throw new Error(`${(err as Error).message}; ${died}`, { cause: err });
    throw err;
  } finally {
    for (const close of closers) await close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

export function printHandoffBench(r: HandoffBenchResult, log: (s: string) => void): void {
  const line = (name: string, x: LoadResult) =>
    `  ${name.padEnd(30)} ${String(x.rps).padStart(5)} req/s  p50 ${x.p50_ms} ms  p90 ${x.p90_ms} ms  p99 ${x.p99_ms} ms  max ${x.max_ms} ms  errors ${x.errors}`;
  const processes =
    r.layout === 'start'
      ? 'vigil start (API; worker + relay in its child process)'
      : 'vigil api + vigil worker (VIGIL_WORKER_PRIORITY=idle)';
  log(
    `POST /api/decisions at ${r.rps}/s, ${r.rounds} rounds of ${r.seconds} s at 0% and at 10% REVIEW (${fixedRateGenerator()}), ${processes}, Temporal: ${r.temporal}`,
  );
  log(line('0% REVIEW (anchor)', r.review0));
  log(line('10% REVIEW (handed off)', r.review10));
  log(
    `    of which the REVIEWs (${r.split10.review.n}): p50 ${r.split10.review.p50_ms} ms p99 ${r.split10.review.p99_ms} ms; the ALLOWs beside them (${r.split10.allow.n}): p50 ${r.split10.allow.p50_ms} ms p99 ${r.split10.allow.p99_ms} ms`,
  );
  log(
    `  from send: 0% p50 ${r.review0.sent?.p50_ms} ms p99 ${r.review0.sent?.p99_ms} ms; 10% p50 ${r.review10.sent?.p50_ms} ms p99 ${r.review10.sent?.p99_ms} ms${r.review0.send_late_p99_ms === undefined ? '' : `; generator sent late by up to ${r.review0.send_late_p99_ms} / ${r.review10.send_late_p99_ms} ms (p99)`}`,
  );
  log(
    `  p99 ratio 10%/0% from send ${r.p99_ratio} (target ≤ ${P99_TARGET}: ${r.pass ? 'PASS' : 'FAIL'}); from the schedule ${r.scheduled_p99_ratio}`,
  );
  const c = r.cases;
  log(
    `  cases opened ${c.opened}/${c.expected} within ${c.open_seconds} s of the first 10% phase's start (${c.open_lag_seconds} s after the last answer)`,
  );
  if (Object.keys(c.failures).length > 0) log(`  failures: ${JSON.stringify(c.failures)}`);
  log(
    `  cases listed open ${c.listed}, resolved through the API ${c.resolved} (${c.resolve_failures} failed, ${c.query_failures} case queries retried), completed ${c.completed} in ${c.complete_seconds} s: ${c.completed_per_s} cases/s on the dev server (median case query ${c.query_ms} ms, resolve ${c.resolve_ms} ms)`,
  );
}
