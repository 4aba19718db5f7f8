// Two `vigil api` processes on one PostgreSQL and one Redis: an activation reaches both, and
// 1,000 concurrent decisions on one card count exactly 1..1,000 across them. The counts are
// read through shadow rules at thresholds: with exact counts, exactly 1001-k decisions see a
// count ≥ k.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Pool, request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ADMIN } from './helpers.ts';

const services = inject('services');
const root = path.resolve(import.meta.dirname, '../../..');
const THRESHOLDS = [1, 250, 500, 999, 1000];
const procs: ChildProcess[] = [];
const dirs: string[] = [];
let urls: string[] = [];
let dbUrl = '';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function startApi(): Promise<string> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'vigil-mi-'));
  dirs.push(dir);
  const child = spawn(process.execPath, ['--no-warnings', path.join(root, 'cli/main.ts'), 'api'], {
    env: {
      ...process.env,
      API_PORT: String(port),
      VIGIL_DATA_DIR: dir,
      DATABASE_URL: dbUrl,
      REDIS_URL: services.redisUrl,
      VIGIL_ADMIN_TOKEN: ADMIN,
      VIGIL_SECRET_KEY: 'shared-secret-for-both-instances',
      // 1,000 scripts sent at once queue inside Redis for ~80 ms; the default 50 ms would
      // (correctly) fail some of them open, which is not what this test measures.
      VIGIL_COUNTER_TIMEOUT_MS: '1000',
      VIGIL_DECISION_DEADLINE_MS: '2000',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  procs.push(child);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      const r = await request(`${url}/healthz`);
      await r.body.dump();
      if (r.statusCode === 200) return url;
    } catch {
      await sleep(100);
    }
  }
  throw new Error('vigil api did not start');
}

async function call(url: string, method: 'GET' | 'POST', p: string, body?: unknown) {
  const r = await request(`${url}${p}`, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.statusCode, body: (await r.body.json()) as any };
}

beforeAll(async () => {
  const db = `vigil_mi_${randomUUID().replaceAll('-', '')}`;
  const admin = new pg.Client({ connectionString: services.databaseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
  dbUrl = services.databaseUrl.replace(/\/[^/]+$/, `/${db}`);
  urls = [await startApi(), await startApi()];
});

afterAll(async () => {
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(
    procs.map((p) => new Promise((r) => (p.exitCode === null ? p.once('exit', r) : r(null)))),
  );
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('two API instances on PostgreSQL and Redis', () => {
  it('an activation on one instance reaches the other within a second', async () => {
    const doc = {
      name: 'exact',
      context: 'checkout',
      rules: THRESHOLDS.map((k) => ({
        id: `gte-${k}`,
        type: 'condition',
        action: 'BLOCK',
        live: false,
        condition: { velocity: { field: '$.credential_fingerprint', window: '1h', gte: k } },
      })),
    };
    const created = await call(urls[0]!, 'POST', '/api/admin/rulesets', doc);
    expect(created.status).toBe(201);
    expect(
      (await call(urls[0]!, 'POST', `/api/admin/rulesets/${created.body.id}/activate`)).status,
    ).toBe(200);
    const t0 = Date.now();
    let seen = false;
    while (Date.now() - t0 < 1000 && !seen) {
      const d = await call(urls[1]!, 'POST', '/api/decisions?dry_run=true', {
        context: 'checkout',
      });
      seen = d.body.ruleset_id === created.body.id;
      if (!seen) await sleep(20);
    }
    expect(seen).toBe(true);
  });

  it('1,000 concurrent decisions on one card count exactly 1..1,000 across both', async () => {
    const pools = urls.map((u) => new Pool(u, { connections: 32 }));
    const body = JSON.stringify({
      context: 'checkout',
      credential_fingerprint: `tok_${randomUUID()}`,
    });
    const answers = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        const res = await pools[i % 2]!.request({
          method: 'POST',
          path: '/api/decisions',
          headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
          body,
        });
        return { status: res.statusCode, body: (await res.body.json()) as any };
      }),
    );
    await Promise.all(pools.map((p) => p.close()));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(answers.every((a) => a.body.degraded.length === 0)).toBe(true);
    for (const k of THRESHOLDS) {
      const matched = answers.filter(
        (a) => a.body.rules.find((r: any) => r.rule_id === `gte-${k}`)?.result === 'matched',
      );
      expect(matched.length, `decisions that saw a count ≥ ${k}`).toBe(1001 - k);
    }
    // Shadow rules never decide.
    expect(answers.every((a) => a.body.decision === 'ALLOW')).toBe(true);
  });

  it('concurrent requests with one Idempotency-Key on one instance: one decision, 409 for another body', async () => {
    const body = { context: 'checkout', credential_fingerprint: `tok_${randomUUID()}` };
    const send = async (payload: object, key: string) => {
      const r = await request(`${urls[0]!}/api/decisions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${ADMIN}`,
          'content-type': 'application/json',
          'idempotency-key': key,
        },
        body: JSON.stringify(payload),
      });
      return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> };
    };
    for (let i = 0; i < 5; i++) {
      const same = await Promise.all([send(body, `same-${i}`), send(body, `same-${i}`)]);
      expect(same.map((r) => r.status)).toEqual([200, 200]);
      expect(same[0].body.id).toBe(same[1].body.id);
      const other = await Promise.all([
        send(body, `other-${i}`),
        send({ ...body, metadata: { channel: 'web' } }, `other-${i}`),
      ]);
      expect(other.map((r) => r.status).sort()).toEqual([200, 409]);
    }
  });

  it('a decision answered on one instance is found on the other right after', async () => {
    for (let i = 0; i < 5; i++) {
      const d = await call(urls[0]!, 'POST', '/api/decisions', { context: 'checkout' });
      expect(d.status).toBe(200);
      // Not yet in PostgreSQL (the log writes in batches): the other instance waits for it.
      const read = await call(urls[1]!, 'GET', `/api/decisions/${d.body.id}`);
      expect(read.status).toBe(200);
      const ev = await call(urls[1]!, 'POST', '/api/events', {
        type: 'capture',
        decision_id: d.body.id,
        occurred_at: new Date().toISOString(),
      });
      expect(ev.status).toBe(201);
    }
  });
});
