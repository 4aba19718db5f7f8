// `vigil proxy` with two worker processes and no Redis: velocity counts stay exact across the
// workers because every worker counts in the primary over IPC. `vigil api` runs beside it on
// the same data dir (embedded SQLite): rulesets go in through it, decisions come out of it.
// The counts are read through shadow rules at every threshold: a decision that saw count c
// matches exactly the shadows `gte 1` … `gte c`.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startOrigin, type Origin } from './helpers.ts';

const root = path.resolve(import.meta.dirname, '../../..');
const ADMIN = 'vigil_test_admin_token_cluster_velocity_0123456789';
const TOTAL = 200;
const LIMIT = 37;

let origin: Origin;
let dir: string;
let api: ChildProcess;
let proxy: ChildProcess;
let apiUrl: string;
let proxyUrl: string;
let proxyHealthUrl: string;
// A third-party risk backend the workers call for the login route's backend rule.
let risk: http.Server;
let riskPort: number;
const riskCalls: string[] = [];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function baseEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  // The embedded default: no Redis, no PostgreSQL, no Kafka, no Temporal.
  for (const k of ['REDIS_URL', 'DATABASE_URL', 'KAFKA_BROKERS', 'TEMPORAL_ADDRESS']) delete env[k];
  return {
    ...env,
    VIGIL_DATA_DIR: dir,
    VIGIL_ADMIN_TOKEN: ADMIN,
    VIGIL_SECRET_KEY: 'cluster-velocity-secret',
    VIGIL_DEMO: '0',
    VIGIL_EGRESS_ALLOW: `127.0.0.1:${riskPort}`,
    // 200 decisions at once on two cores: the IPC round trip queues behind them, and the
    // default 50 ms would (correctly) fail some open, which is not what this test measures.
    VIGIL_COUNTER_TIMEOUT_MS: '2000',
    VIGIL_DECISION_DEADLINE_MS: '5000',
  };
}

async function up(url: string, ok: (status: number, body: any) => boolean): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      const r = await request(url);
      const body: unknown = await r.body.json().catch(() => null);
      if (ok(r.statusCode, body)) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${url} did not come up`);
}

async function call(method: 'GET' | 'POST' | 'PUT', p: string, body?: unknown) {
  const r = await request(`${apiUrl}${p}`, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.statusCode, body: (await r.body.json()) as any };
}

function vigil(role: string, env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, ['--no-warnings', path.join(root, 'cli/main.ts'), role], {
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

beforeAll(async () => {
  risk = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      riskCalls.push(body);
      const email = (JSON.parse(body) as { email: string }).email;
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({ verdict: email.endsWith('@fraud.example') ? 'decline' : 'approve' }),
      );
    });
  });
  await new Promise<void>((r) => risk.listen(0, '127.0.0.1', r));
  riskPort = (risk.address() as net.AddressInfo).port;
  origin = await startOrigin();
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-cv-'));
  const apiPort = await freePort();
  apiUrl = `http://127.0.0.1:${apiPort}`;
  api = vigil('api', { ...baseEnv(), API_PORT: String(apiPort) });
  await up(`${apiUrl}/healthz`, (s) => s === 200);

  const doc = {
    name: 'card velocity',
    context: 'checkout',
    rules: [
      ...Array.from({ length: TOTAL }, (_, k) => ({
        id: `seen-${k + 1}`,
        type: 'condition',
        action: 'REVIEW',
        live: false,
        condition: { velocity: { field: '$.credential_fingerprint', window: '1h', gte: k + 1 } },
      })),
      {
        id: 'too-many',
        type: 'condition',
        action: 'BLOCK',
        condition: { velocity: { field: '$.credential_fingerprint', window: '1h', gt: LIMIT } },
      },
    ],
  };
  const created = await call('POST', '/api/admin/rulesets', doc);
  expect(created.status).toBe(201);
  expect((await call('POST', `/api/admin/rulesets/${created.body.id}/activate`)).status).toBe(200);

  const integration = await call('PUT', '/api/admin/integrations/risk', {
    kind: 'http',
    base_url: `http://127.0.0.1:${riskPort}`,
    backends: [
      {
        backend_id: 'score',
        path: '/score',
        required_fields: ['$.customer.email'],
        request: { email: '$.customer.email' },
        response: { outcome_path: '$.verdict', map: { approve: 'ALLOW', decline: 'BLOCK' } },
        timeout_ms: 2_000,
      },
    ],
  });
  expect(integration.status).toBe(201);
  const login = await call('POST', '/api/admin/rulesets', {
    name: 'login risk',
    context: 'login',
    rules: [{ id: 'risk', type: 'backend', integration: 'risk', backend_id: 'score' }],
  });
  expect((await call('POST', `/api/admin/rulesets/${login.body.id}/activate`)).status).toBe(200);

  const routesFile = path.join(dir, 'routes.json');
  writeFileSync(
    routesFile,
    JSON.stringify({
      mode: 'active',
      origins: { shop: origin.url },
      limits: { decision_timeout_ms: 10_000 },
      routes: [
        {
          match: { method: 'POST', path: '/pay' },
          origin: 'shop',
          context: 'checkout',
          extract: { '$.credential_fingerprint': { from: 'body', field: 'card' } },
        },
        {
          match: { method: 'POST', path: '/login' },
          origin: 'shop',
          context: 'login',
          extract: { '$.customer.email': { from: 'body', field: 'email' } },
        },
        { match: { path: '/*' }, origin: 'shop' },
      ],
    }),
  );
  const [port, healthPort] = [await freePort(), await freePort()];
  proxyUrl = `http://127.0.0.1:${port}`;
  proxyHealthUrl = `http://127.0.0.1:${healthPort}`;
  proxy = vigil('proxy', {
    ...baseEnv(),
    PORT: String(port),
    API_PORT: String(healthPort),
    VIGIL_CONFIG: routesFile,
    VIGIL_PROXY_WORKERS: '2',
  });
  await up(`${proxyHealthUrl}/readyz`, (s, b) => {
    return s === 200 && b?.dependencies?.proxy_workers?.state === 'up';
  });
}, 60_000);

afterAll(async () => {
  for (const p of [proxy, api]) {
    if (!p || p.exitCode !== null) continue;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGCONT');
    p.kill('SIGTERM');
    await exited;
  }
  await origin?.close();
  await new Promise((r) => risk?.close(r));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const pay = (dispatcher: Agent, card: string) =>
  request(`${proxyUrl}/pay`, {
    method: 'POST',
    dispatcher,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ card, amount: 100 }),
    headersTimeout: 20_000,
  });

async function decision(id: string): Promise<any> {
  let found: any;
  await eventually(async () => {
    const r = await call('GET', `/api/decisions/${id}`);
    if (r.status === 200) found = r.body;
    return r.status === 200;
  }, 10_000);
  return found;
}

describe('vigil proxy with two workers and no Redis', () => {
  it('lists both workers in /readyz and serves no API on the workers', async () => {
    const r = await request(`${proxyHealthUrl}/readyz`);
    const body = (await r.body.json()) as any;
    expect(body.dependencies.proxy_workers.detail).toMatch(
      /^2\/2 listening; \d+ listening, \d+ listening; 0 restarts$/,
    );
  });

  it(`counts ${TOTAL} concurrent requests on one card exactly 1..${TOTAL} across the workers`, async () => {
    const dispatcher = new Agent({ connections: TOTAL });
    const before = origin.seen.length;
    const results = await Promise.all(
      Array.from({ length: TOTAL }, async () => {
        const r = await pay(dispatcher, 'tok_same_card');
        await r.body.dump();
        return { status: r.statusCode, id: r.headers['x-vigil-decision-id'] as string | undefined };
      }),
    );
    await dispatcher.close();
    const forwarded = origin.seen.slice(before).filter((s) => s.url === '/pay');
    expect(results.filter((r) => r.status === 200)).toHaveLength(LIMIT);
    expect(results.filter((r) => r.status === 403)).toHaveLength(TOTAL - LIMIT);
    expect(forwarded).toHaveLength(LIMIT);

    // Forwarded requests carry their decision id to the origin; blocked ones to the client.
    const ids = [
      ...forwarded.map((s) => s.headers['x-vigil-decision-id'] as string),
      ...results.filter((r) => r.status === 403).map((r) => r.id!),
    ];
    expect(new Set(ids).size).toBe(TOTAL);
    const seen: number[] = [];
    for (const id of ids) {
      const d = await decision(id);
      expect(d.degraded).toEqual([]);
      seen.push(
        d.rules.filter(
          (r: any) => r.shadow && r.result === 'matched' && r.rule_id.startsWith('seen-'),
        ).length,
      );
      expect(d.decision).toBe(seen.at(-1)! > LIMIT ? 'BLOCK' : 'ALLOW');
    }
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: TOTAL }, (_, k) => k + 1));
  }, 60_000);

  it('decides backend rules in the workers, through the egress guard, with the third party', async () => {
    const login = async (email: string) => {
      const r = await request(`${proxyUrl}/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email }),
      });
      await r.body.dump();
      return r.statusCode;
    };
    const calls = riskCalls.length;
    expect(await login('fraudster@fraud.example')).toBe(403);
    expect(await login('someone@shop.example')).toBe(200);
    expect(riskCalls.slice(calls).map((b) => JSON.parse(b) as unknown)).toEqual([
      { email: 'fraudster@fraud.example' },
      { email: 'someone@shop.example' },
    ]);
  }, 30_000);

  it("serves the workers' metrics, summed, on the primary's /metrics", async () => {
    // The 200 /pay decisions above went through the workers only: the primary decided none.
    const r = await request(`${proxyHealthUrl}/metrics`);
    const text = await r.body.text();
    const decided = [...text.matchAll(/^vigil_proxy_decisions_total\{[^}]*\} (\d+)$/gm)].reduce(
      (n, m) => n + Number(m[1]),
      0,
    );
    expect(decided).toBeGreaterThanOrEqual(TOTAL);
  });

  it('fails open with counter_unavailable while the primary does not answer', async () => {
    // Stopped, the primary answers no count; the workers keep accepting on the shared socket.
    proxy.kill('SIGSTOP');
    try {
      const dispatcher = new Agent();
      const r = await pay(dispatcher, 'tok_other_card');
      await r.body.dump();
      await dispatcher.close();
      expect(r.statusCode).toBe(200);
      const id = origin.seen.at(-1)!.headers['x-vigil-decision-id'] as string;
      const d = await decision(id);
      expect(d.degraded).toContain('counter_unavailable');
      expect(d.decision).toBe('ALLOW');
    } finally {
      proxy.kill('SIGCONT');
    }
  }, 30_000);
});
