// Backend rules on the answer path, against a real local backend on 127.0.0.1:
//  1. a backend answering in 2 ms: Vigil's added latency over the backend's own p99 (the anchor:
//     the same request sent with a bare undici Pool), target ≤ 1 ms;
//  2. a backend that never answers: the decision is answered within its deadline + 5 ms (p99);
//  3. an open circuit: the decision is answered within 1 ms (p99).
//
//   node --experimental-strip-types bench/backend.ts
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { createIntegrations, type IntegrationStorePort } from '../integrations/index.ts';
import { compileRuleset } from '../rulesets/compile.ts';
import { evaluate } from '../rulesets/evaluate.ts';

export interface BackendBenchOptions {
  /** Timed calls in the 2 ms scenario (default 1,000). */
  calls?: number;
  /** Decisions against the hanging backend (default 200). */
  hangingCalls?: number;
  /** Hanging decisions in flight at once (default 10). */
  hangingConcurrency?: number;
  /** Decision deadline in the hanging scenario, ms (default 50). */
  deadlineMs?: number;
  /** Decisions with the circuit open (default 5,000). */
  openCalls?: number;
  log?: (line: string) => void;
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};
const r3 = (x: number) => Math.round(x * 1000) / 1000;

const BACKEND_SOURCE = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (req.url === '/hang') return;
    const body = JSON.stringify({ verdict: req.url === '/down' ? 'x' : 'approve' });
    const send = () => {
      res.writeHead(req.url === '/down' ? 500 : 200, { 'content-type': 'application/json' });
      res.end(body);
    };
    if (req.url === '/score') setTimeout(send, 2);
    else send();
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

function memoryStore(): IntegrationStorePort {
  const rows = new Map<
    string,
    { slug: string; kind: string; document: unknown; updated_at: string }
  >();
  return {
    putIntegration: (i) => {
      const row = { ...i, updated_at: new Date().toISOString() };
      rows.set(i.slug, row);
      return Promise.resolve(row);
    },
    getIntegration: (s) => Promise.resolve(rows.get(s)),
    listIntegrations: () => Promise.resolve([...rows.values()]),
    deleteIntegration: (s) => Promise.resolve(rows.delete(s)),
  };
}

export async function runBackendBench(opts: BackendBenchOptions = {}) {
  const log = opts.log ?? ((s: string) => console.log(s));
  const calls = opts.calls ?? 1_000;
  const hangingCalls = opts.hangingCalls ?? 200;
  const deadlineMs = opts.deadlineMs ?? 50;
  const hangingConcurrency = opts.hangingConcurrency ?? 10;
  const openCalls = opts.openCalls ?? 5_000;

  // The backend runs in its own process: in this one its accepts, parsing and resets would share
  // the event loop with the calls being timed and be billed to Vigil.
  const child = spawn(process.execPath, ['-e', BACKEND_SOURCE], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
  });
  const origin = `http://127.0.0.1:${port}`;

  const integ = createIntegrations({
    store: memoryStore(),
    secretKey: randomBytes(32),
    egressAllow: [`127.0.0.1:${port}`],
  });
  const backend = (id: string, p: string) => ({
    backend_id: id,
    path: p,
    required_fields: ['$.customer.email'],
    request: { email: '$.customer.email', amount: '$.transaction.amount' },
    response: {
      outcome_path: '$.verdict',
      map: { approve: 'ALLOW', review: 'REVIEW', decline: 'BLOCK' },
    },
    timeout_ms: 1_000,
  });
  const put = await integ.put('bench', {
    kind: 'http',
    base_url: origin,
    auth: { type: 'bearer', token: 'bench-token' },
    backends: [backend('score', '/score'), backend('down', '/down')],
    circuit: { failure_threshold: 3, open_ms: 600_000 },
    pool: { connections: 32 },
  });
  if (!put.ok) throw new Error(`bench integration refused: ${JSON.stringify(put.issues)}`);
  // The hanging backend on its own integration, with a breaker that stays closed: this scenario
  // measures the deadline, not the circuit (which would open after three timeouts).
  const putHang = await integ.put('bench-hang', {
    kind: 'http',
    base_url: origin,
    backends: [backend('hang', '/hang')],
    circuit: { failure_threshold: 1_000, open_ms: 600_000 },
    pool: { connections: 32 },
  });
  if (!putHang.ok) throw new Error(`bench integration refused: ${JSON.stringify(putHang.issues)}`);

  const ruleset = (id: string, timeout = 1_000, integration = 'bench') =>
    compileRuleset({
      name: 'bench',
      context: 'checkout',
      rules: [
        {
          id: 'risk',
          type: 'backend',
          integration,
          backend_id: id,
          on_error: 'review',
          timeout_ms: timeout,
        },
      ],
    });
  const ctx = { customer: { email: 'a@example.com' }, transaction: { amount: 14999 } };
  const decide = async (compiled: ReturnType<typeof compileRuleset>, deadline: number) => {
    const t0 = performance.now();
    const r = await evaluate(compiled, ctx, {
      counts: { get: () => 0 },
      blacklist: { has: () => false },
      backends: integ.backends,
      now: Date.now,
      deadlineMs: Date.now() + deadline,
    });
    return { ms: performance.now() - t0, r };
  };

  // 1. 2 ms backend: anchor (bare undici) and Vigil, interleaved so both see the same machine.
  const anchorPool = new Pool(origin, { connections: 1 });
  const body = JSON.stringify({ email: 'a@example.com', amount: 14999 });
  const anchorOnce = async () => {
    const t0 = performance.now();
    const res = await anchorPool.request({
      method: 'POST',
      path: '/score',
      headers: { 'content-type': 'application/json', authorization: 'Bearer bench-token' },
      body,
    });
    await res.body.json();
    return performance.now() - t0;
  };
  const score = ruleset('score');
  for (let i = 0; i < 100; i++) {
    await anchorOnce();
    await decide(score, 300);
  }
  const anchor: number[] = [];
  const vigil: number[] = [];
  for (let i = 0; i < calls; i++) {
    anchor.push(await anchorOnce());
    const d = await decide(score, 300);
    if (d.r.decision !== 'ALLOW') throw new Error(`unexpected decision ${d.r.decision}`);
    vigil.push(d.ms);
  }
  await anchorPool.close();
  const added = quantile(vigil, 0.99) - quantile(anchor, 0.99);
  const fast = {
    calls,
    backend_p50_ms: r3(quantile(anchor, 0.5)),
    backend_p99_ms: r3(quantile(anchor, 0.99)),
    decision_p50_ms: r3(quantile(vigil, 0.5)),
    decision_p99_ms: r3(quantile(vigil, 0.99)),
    added_p99_ms: r3(added),
    added_p50_ms: r3(quantile(vigil, 0.5) - quantile(anchor, 0.5)),
    target_added_ms: 1,
    pass: added <= 1,
  };
  log(
    `  2 ms backend: decision p99 ${fast.decision_p99_ms} ms vs backend p99 ${fast.backend_p99_ms} ms → added ${fast.added_p99_ms} ms (target ≤ 1): ${fast.pass ? 'PASS' : 'FAIL'}`,
  );

  // 2. Hanging backend: answered at the deadline.
  const hang = ruleset('hang', 1_000, 'bench-hang');
  const hung: number[] = [];
  for (let i = 0; i < hangingCalls; i += hangingConcurrency) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(hangingConcurrency, hangingCalls - i) }, () =>
        decide(hang, deadlineMs),
      ),
    );
    for (const b of batch) {
      if (b.r.backend_results[0]?.error !== 'timeout') {
        throw new Error(`the hanging backend answered: ${JSON.stringify(b.r.backend_results[0])}`);
      }
      hung.push(b.ms);
    }
  }
  // Anchor: bare timers of the same length, in the same batches: how late this machine fires a
  // timer at all. The difference is what Vigil adds to a timed-out call.
  const timers: number[] = [];
  const keepAlive = setInterval(() => {}, 1_000);
  for (let i = 0; i < hangingCalls; i += hangingConcurrency) {
    const batch = await Promise.all(
      Array.from(
        { length: Math.min(hangingConcurrency, hangingCalls - i) },
        () =>
          new Promise<number>((resolve) => {
            const t0 = performance.now();
            AbortSignal.timeout(deadlineMs).addEventListener('abort', () =>
              resolve(performance.now() - t0),
            );
          }),
      ),
    );
    timers.push(...batch);
  }
  clearInterval(keepAlive);
  const hangP99 = quantile(hung, 0.99);
  const hanging = {
    calls: hangingCalls,
    deadline_ms: deadlineMs,
    p50_ms: r3(quantile(hung, 0.5)),
    p99_ms: r3(hangP99),
    over_deadline_p99_ms: r3(hangP99 - deadlineMs),
    concurrency: hangingConcurrency,
    timer_anchor_p50_ms: r3(quantile(timers, 0.5)),
    timer_anchor_p99_ms: r3(quantile(timers, 0.99)),
    added_over_timer_p50_ms: r3(quantile(hung, 0.5) - quantile(timers, 0.5)),
    target_ms: deadlineMs + 5,
    pass: hangP99 <= deadlineMs + 5,
  };
  log(
    `  hanging backend: decision p99 ${hanging.p99_ms} ms at a ${deadlineMs} ms deadline (target ≤ ${hanging.target_ms}): ${hanging.pass ? 'PASS' : 'FAIL'}; a bare ${deadlineMs} ms timer fires at p99 ${hanging.timer_anchor_p99_ms} ms here`,
  );

  // 3. Circuit open: three failures open it, then every decision skips the call.
  const down = ruleset('down');
  for (let i = 0; i < 3; i++) await decide(down, 300);
  const open: number[] = [];
  for (let i = 0; i < openCalls; i++) {
    const d = await decide(down, 300);
    if (d.r.backend_results[0]?.status !== 'circuit_open')
      throw new Error('the circuit is not open');
    open.push(d.ms);
  }
  const openP99 = quantile(open, 0.99);
  const circuit = {
    calls: openCalls,
    p50_ms: r3(quantile(open, 0.5)),
    p99_ms: r3(openP99),
    target_ms: 1,
    pass: openP99 <= 1,
  };
  log(
    `  circuit open: decision p99 ${circuit.p99_ms} ms (target ≤ 1): ${circuit.pass ? 'PASS' : 'FAIL'}`,
  );

  await integ.close();
  child.kill();
  return { fast, hanging, circuit, pass: fast.pass && hanging.pass && circuit.pass };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(JSON.stringify(await runBackendBench(), null, 2));
}
