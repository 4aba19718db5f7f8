// Backend rules through the real engine (rulesets/evaluate.ts) against a real local HTTP server:
// each failure mode gives its error code, the rule's on_error outcome, and a decision answered
// within its budget.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIntegrations, type Integrations } from '../../../integrations/index.ts';
import { compileRuleset } from '../../../rulesets/compile.ts';
import { evaluate } from '../../../rulesets/evaluate.ts';
import { openStore, type Store } from '../../../storage/store.ts';
import { startLocalBackend, type LocalBackend } from './local-server.ts';

const VERDICTS = { approve: 'ALLOW', review: 'REVIEW', decline: 'BLOCK' };
const ROUTES = [
  'fast',
  'slow50',
  'decline',
  'never',
  'slow-headers',
  'slow-body',
  '500',
  'invalid',
  'maybe',
  'huge',
  'bomb',
  'gzip-ok',
  'redirect',
];

let server: LocalBackend;
let store: Store;
let dir: string;
let integ: Integrations;
const metrics = new Registry();

const ctx = {
  transaction: { amount: 14999, currency: 'EUR' },
  customer: { id: 'cus_1', email: 'a@example.com' },
  metadata: { channel: 'web' },
};

beforeAll(async () => {
  server = await startLocalBackend();
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-integ-'));
  store = await openStore({ dataDir: dir });
  integ = createIntegrations({
    store,
    secretKey: randomBytes(32),
    egressAllow: [`127.0.0.1:${server.port}`],
    registry: metrics,
  });
  const backends = ROUTES.map((r) => ({
    backend_id: r,
    method: 'POST',
    path: `/${r}`,
    required_fields: ['$.customer.email', '$.transaction.amount'],
    request: { email: '$.customer.email', amount: '$.transaction.amount', ch: 'web' },
    response: { outcome_path: '$.verdict', map: VERDICTS },
    timeout_ms: 1_000,
  }));
  const put = await integ.put('local', {
    slug: 'local',
    kind: 'http',
    base_url: server.origin,
    auth: { type: 'bearer', token: 'tok_backend_1' },
    backends,
  });
  expect(put.ok).toBe(true);
  const flaky = await integ.put('flaky', {
    kind: 'http',
    base_url: server.origin,
    backends: [
      {
        backend_id: 'down',
        path: '/500',
        response: { outcome_path: '$.verdict', map: VERDICTS },
      },
    ],
    circuit: { failure_threshold: 3, open_ms: 60_000 },
  });
  expect(flaky.ok).toBe(true);
});

afterAll(async () => {
  await integ.close();
  await store.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function decide(
  backendId: string,
  opts: {
    onError?: string;
    timeoutMs?: number;
    deadlineMs?: number;
    context?: unknown;
    integration?: string;
  } = {},
) {
  const compiled = compileRuleset({
    name: 't',
    context: 'checkout',
    rules: [
      {
        id: 'risk',
        type: 'backend',
        integration: opts.integration ?? 'local',
        backend_id: backendId,
        on_error: opts.onError ?? 'review',
        timeout_ms: opts.timeoutMs ?? 1_000,
      },
    ],
  });
  const t0 = performance.now();
  const now = Date.now();
  const result = await evaluate(compiled, opts.context ?? ctx, {
    counts: { get: () => 0 },
    blacklist: { has: () => false },
    backends: integ.backends,
    now: Date.now,
    deadlineMs: now + (opts.deadlineMs ?? 1_000),
  });
  return { result, elapsed: performance.now() - t0, trace: result.backend_results[0]! };
}

describe('backend rules against a real local backend', () => {
  it('2 ms backend: mapped answer, body built from the template, metadata never sent', async () => {
    await decide('fast'); // warm the connection
    const { result, elapsed, trace } = await decide('fast');
    expect(trace).toMatchObject({
      status: 'ok',
      outcome: 'ALLOW',
      integration: 'local',
      backend_id: 'fast',
    });
    expect(result.decision).toBe('ALLOW');
    expect(result.evaluation_type).toBe('BACKEND');
    // Loose bounds: the machine is shared; bench/backend.ts measures the tight figures.
    expect(elapsed).toBeLessThan(250);
    expect(trace.latency_ms).toBeGreaterThanOrEqual(1.5);
    const seen = server.requests.filter((r) => r.path === '/fast').at(-1)!;
    expect(JSON.parse(seen.body)).toEqual({ email: 'a@example.com', amount: 14999, ch: 'web' });
    expect(seen.body).not.toContain('channel');
    expect(seen.headers.authorization).toBe('Bearer tok_backend_1');
    expect(seen.headers['content-type']).toBe('application/json');
  });

  it('50 ms backend within the budget: answered', async () => {
    const { result, elapsed, trace } = await decide('slow50');
    expect(trace).toMatchObject({ status: 'ok', outcome: 'REVIEW' });
    expect(trace.latency_ms).toBeGreaterThanOrEqual(49);
    expect(result.decision).toBe('REVIEW');
    expect(elapsed).toBeLessThan(300);
  });

  it('a BLOCK answer and a gzip-encoded one are mapped', async () => {
    expect((await decide('decline')).result.decision).toBe('BLOCK');
    expect((await decide('gzip-ok')).trace).toMatchObject({ status: 'ok', outcome: 'BLOCK' });
  });

  it.each([
    ['never', 'timeout', 'review', 'REVIEW'],
    ['slow-headers', 'timeout', 'block', 'BLOCK'],
    ['slow-body', 'timeout', 'allow', 'ALLOW'],
  ])(
    '%s: %s, on_error %s → %s, answered at the rule timeout',
    async (id, code, onError, decision) => {
      const { result, elapsed, trace } = await decide(id, { onError, timeoutMs: 100 });
      expect(trace).toMatchObject({ status: 'error', error: code, on_error: onError });
      expect(result.decision).toBe(decision);
      expect(result.degraded).toContain('backend_timeout');
      expect(elapsed).toBeGreaterThanOrEqual(98);
      expect(elapsed).toBeLessThan(100 + 150);
    },
  );

  it('the decision deadline bounds a call when it is shorter than the timeouts', async () => {
    const { trace, elapsed } = await decide('never', { timeoutMs: 1_000, deadlineMs: 80 });
    expect(trace).toMatchObject({ status: 'error', error: 'timeout' });
    expect(elapsed).toBeLessThan(80 + 150);
  });

  it.each([
    ['500', 'http_status'],
    ['invalid', 'invalid_json'],
    ['maybe', 'unmappable'],
    ['huge', 'response_too_large'],
    ['bomb', 'response_too_large'],
    ['redirect', 'redirect'],
  ])('%s → error %s; on_error applies; answered quickly', async (id, code) => {
    const { result, elapsed, trace } = await decide(id, {
      onError: 'block',
      timeoutMs: 2_000,
      deadlineMs: 2_000,
    });
    expect(trace).toMatchObject({ status: 'error', error: code, on_error: 'block' });
    expect(result.decision).toBe('BLOCK');
    expect(result.has_errors).toBe(true);
    // Answered by the failure itself, long before the 2 s budget.
    expect(elapsed).toBeLessThan(1_000);
  });

  it('a redirect is not followed', async () => {
    const before = server.count('/fast');
    await decide('redirect');
    expect(server.count('/fast')).toBe(before);
  });

  it('insufficient_context: no request is made', async () => {
    const before = server.count('/fast');
    const { result, trace } = await decide('fast', {
      context: { transaction: { amount: 1 }, customer: { email: null } },
    });
    expect(trace).toMatchObject({ status: 'insufficient_context', missing: ['$.customer.email'] });
    expect(result.decision).toBe('ALLOW');
    expect(server.count('/fast')).toBe(before);
  });

  it('unknown integration or backend → unknown_backend, nothing sent', async () => {
    const n = server.requests.length;
    expect((await decide('nope')).trace).toMatchObject({
      status: 'error',
      error: 'unknown_backend',
    });
    expect((await decide('fast', { integration: 'ghost' })).trace).toMatchObject({
      status: 'error',
      error: 'unknown_backend',
    });
    expect(server.requests.length).toBe(n);
  });

  it('the circuit opens after consecutive failures and then answers within 1 ms without a request', async () => {
    for (let i = 0; i < 3; i++) {
      const { trace } = await decide('down', { integration: 'flaky' });
      expect(trace).toMatchObject({ status: 'error', error: 'http_status' });
    }
    const sent = server.count('/500');
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      const r = await integ.backends.call({
        integration: 'flaky',
        backend_id: 'down',
        context: ctx,
        deadlineMs: Date.now() + 300,
        timeoutMs: 150,
      });
      times.push(performance.now() - t0);
      expect(r).toEqual({ status: 'circuit_open' });
    }
    times.sort((a, b) => a - b);
    expect(times[Math.floor(times.length * 0.9)]!).toBeLessThan(1);
    const { result, trace } = await decide('down', { integration: 'flaky', onError: 'review' });
    expect(trace).toMatchObject({
      status: 'circuit_open',
      error: 'circuit_open',
      on_error: 'review',
    });
    expect(result.degraded).toContain('backend_circuit_open');
    expect(result.decision).toBe('REVIEW');
    expect(server.count('/500')).toBe(sent);
  });

  it('calls a first_answer group abandons neither count as failures nor open the circuit', async () => {
    const compiled = compileRuleset({
      name: 't',
      context: 'checkout',
      rules: [
        {
          id: 'group',
          type: 'backend_group',
          strategy: 'parallel',
          merge: 'first_answer',
          on_error: 'review',
          timeout_ms: 1_000,
          members: [
            { integration: 'local', backend_id: 'never' },
            { integration: 'local', backend_id: 'decline' },
          ],
        },
      ],
    });
    for (let i = 0; i < 8; i++) {
      const r = await evaluate(compiled, ctx, {
        counts: { get: () => 0 },
        blacklist: { has: () => false },
        backends: integ.backends,
        now: Date.now,
        deadlineMs: Date.now() + 1_000,
      });
      expect(r.decision).toBe('BLOCK');
      expect(r.backend_results.find((b) => b.backend_id === 'never')?.error).toBe('abandoned');
    }
    // Every abandoned call has settled (it was aborted, not left to time out).
    await new Promise((r) => setTimeout(r, 50));
    const after = await integ.backends.call({
      integration: 'local',
      backend_id: 'never',
      context: ctx,
      deadlineMs: Date.now() + 1_000,
      timeoutMs: 20,
    });
    expect(after).toMatchObject({ status: 'error', error: 'timeout' });
    expect(await metrics.metrics()).not.toMatch(/code="aborted"/);
  });

  it('metrics count errors by integration, backend and code', async () => {
    const text = await metrics.metrics();
    expect(text).toMatch(
      /vigil_backend_errors_total\{integration="local",backend="never",code="timeout"\} \d/,
    );
    expect(text).toMatch(
      /vigil_backend_errors_total\{integration="flaky",backend="down",code="circuit_open"\} \d/,
    );
    expect(text).toMatch(
      /vigil_backend_call_duration_seconds_bucket\{le="\+Inf",integration="local",backend="fast",status="ok"\}/,
    );
  });

  it('callBackend (workflow enrich) answers in its own shape', async () => {
    expect(
      await integ.callBackend({ integration: 'local', backend_id: 'decline', context: ctx }),
    ).toEqual({ status: 'ok', outcome: 'BLOCK', response: { verdict: 'decline', score: 97 } });
    expect(
      await integ.callBackend({
        integration: 'local',
        backend_id: 'fast',
        context: { customer: {} },
      }),
    ).toEqual({
      status: 'insufficient_context',
      missing: ['$.customer.email', '$.transaction.amount'],
    });
    expect(
      await integ.callBackend({ integration: 'local', backend_id: '500', context: ctx }),
    ).toEqual({
      status: 'error',
      error: 'http_status',
    });
  });
});
