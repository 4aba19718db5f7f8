// Integration documents end to end over the real SQLite store and a real local server: secrets
// encrypted and never shown, the egress guard at registration and at connect, actions with
// idempotency keys and retry hints, lifecycle notifications, the admin test call, and a second
// process seeing an edit.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIntegrations, type Integrations } from '../../../integrations/index.ts';
import { openStore, type Store } from '../../../storage/store.ts';
import { startLocalBackend, type LocalBackend } from './local-server.ts';

const TOKEN = 'tok_SECRET_9f8e7d6c5b4a';
const VERDICTS = { approve: 'ALLOW', review: 'REVIEW', decline: 'BLOCK' };

let server: LocalBackend;
let store: Store;
let dir: string;
let integ: Integrations;
const metrics = new Registry();
const key = randomBytes(32);
const ctx = { customer: { email: 'a@example.com' }, transaction: { amount: 14999 } };

const doc = (extra: Record<string, unknown> = {}) => ({
  kind: 'http',
  base_url: server.origin,
  auth: { type: 'bearer', token: TOKEN },
  backends: [
    {
      backend_id: 'score',
      path: '/fast',
      required_fields: ['$.customer.email'],
      request: { email: '$.customer.email' },
      response: { outcome_path: '$.verdict', map: VERDICTS },
      events: ['chargeback', 'fraud_report'],
    },
    {
      backend_id: 'broken',
      path: '/500',
      response: { outcome_path: '$.verdict', map: VERDICTS },
      events: ['chargeback'],
    },
  ],
  actions: [
    {
      action_id: 'open-ticket',
      method: 'POST',
      path: '/tickets',
      headers: { 'x-case': '{{decision.id}}' },
      body: { title: 'Review {{decision.id}}', amount: '$.transaction.amount' },
    },
    { action_id: 'limited', method: 'POST', path: '/limited', body: {} },
    { action_id: 'refused', method: 'POST', path: '/refused', body: {} },
  ],
  ...extra,
});

beforeAll(async () => {
  server = await startLocalBackend();
  server.route('/tickets', (_q, r) => {
    r.writeHead(201, { 'content-type': 'application/json' });
    r.end(JSON.stringify({ id: 'T-42' }));
  });
  server.route('/limited', (_q, r) => {
    r.writeHead(429, { 'retry-after': '3', 'content-type': 'application/json' });
    r.end(JSON.stringify({ error: `slow down ${TOKEN}` }));
  });
  server.route('/refused', (_q, r) => {
    r.writeHead(400, { 'content-type': 'application/json' });
    r.end('{}');
  });
  server.route('/fast/events', (_q, r) => {
    r.writeHead(202);
    r.end();
  });
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-integ-admin-'));
  store = await openStore({ dataDir: dir });
  integ = createIntegrations({
    store,
    secretKey: key,
    egressAllow: [`127.0.0.1:${server.port}`],
    registry: metrics,
  });
});

afterAll(async () => {
  await integ.close();
  await store.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('integration documents', () => {
  it('stores secrets encrypted, shows them as "***", and sends the token as a Bearer header', async () => {
    const put = await integ.put('acme', doc());
    expect(put).toMatchObject({ ok: true, created: true });
    if (!put.ok) return;
    expect((put.integration as any).auth).toEqual({ type: 'bearer', token: '***' });
    const row = await store.getIntegration('acme');
    expect(JSON.stringify(row)).not.toContain(TOKEN);
    expect((row!.document as any).auth.token.$enc).toMatch(/^v1:/);
    expect(JSON.stringify(await integ.get('acme'))).not.toContain(TOKEN);
    expect(JSON.stringify(await integ.list())).not.toContain(TOKEN);
    const r = await integ.callBackend({ integration: 'acme', backend_id: 'score', context: ctx });
    expect(r).toMatchObject({ status: 'ok', outcome: 'ALLOW' });
    expect(server.requests.at(-1)!.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('a GET-edit-PUT round trip with "***" keeps the stored secret', async () => {
    const shown = (await integ.get('acme')) as any;
    const again = await integ.put('acme', { ...shown, base_url: `${server.origin}/` });
    expect(again).toMatchObject({ ok: true, created: false });
    await integ.callBackend({ integration: 'acme', backend_id: 'score', context: ctx });
    expect(server.requests.at(-1)!.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('"***" does not keep a secret for another host: a write scope cannot send it elsewhere', async () => {
    const shown = (await integ.get('acme')) as any;
    const moved = await integ.put('acme', { ...shown, base_url: 'http://127.0.0.1:9' });
    expect(moved).toMatchObject({ ok: false, error: 'invalid_integration' });
    expect(!moved.ok && moved.issues.map((i) => i.path)).toEqual(['auth.token']);
    // Still the old document, the old host and the old secret.
    await integ.callBackend({ integration: 'acme', backend_id: 'score', context: ctx });
    expect(server.requests.at(-1)!.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('"***" where nothing is stored is refused, and nothing is stored', async () => {
    const r = await integ.put('fresh', doc({ auth: { type: 'bearer', token: '***' } }));
    expect(r).toMatchObject({ ok: false, error: 'invalid_integration' });
    expect(!r.ok && r.issues[0]!.path).toBe('auth.token');
    // A switch of auth type has nothing stored at the new field either.
    const s = await integ.put(
      'acme',
      doc({ auth: { type: 'header', name: 'x-api-key', value: '***' } }),
    );
    expect(!s.ok && s.issues[0]!.path).toBe('auth.value');
    expect(await integ.get('fresh')).toBeUndefined();
  });

  it('bad documents come back as issues with paths; nothing changes', async () => {
    const r = await integ.put(
      'acme',
      doc({ backends: [{ backend_id: 'x', path: 'nope', response: {} }] }),
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues.map((i) => i.path)).toEqual(
      expect.arrayContaining(['backends[0].path', 'backends[0].response.outcome_path']),
    );
    expect(((await integ.get('acme')) as any).backends).toHaveLength(2);
    expect(await integ.put('acme', { ...doc(), slug: 'other' })).toMatchObject({
      ok: false,
      issues: [{ path: 'slug' }],
    });
  });

  it('another key cannot read the stored secrets: a clear code, no secret', async () => {
    const other = createIntegrations({
      store,
      secretKey: randomBytes(32),
      egressAllow: [`127.0.0.1:${server.port}`],
    });
    try {
      const r = await other.callBackend({ integration: 'acme', backend_id: 'score', context: ctx });
      expect(r).toEqual({ status: 'error', error: 'secret_key_mismatch' });
      const err = await other
        .invokeAction({
          integration: 'acme',
          action_id: 'open-ticket',
          context: {},
          idempotencyKey: 'k',
        })
        .catch((e: unknown) => e as any);
      expect(err.code).toBe('secret_key_mismatch');
      expect(err.retryable).toBe(false);
      expect(String(err.message)).not.toContain(TOKEN);
      const shown = (await other.get('acme')) as any;
      const kept = await other.put('acme', shown);
      expect(kept).toMatchObject({ ok: false, issues: [{ path: 'auth.token' }] });
    } finally {
      await other.close();
    }
  });

  it('the admin test call reaches the base URL', async () => {
    const t = await integ.test('acme');
    expect(t).toMatchObject({ ok: true, status: 404 });
    expect(t.latency_ms).toBeGreaterThan(0);
    expect(server.requests.at(-1)!).toMatchObject({ method: 'GET', path: '/' });
    expect(await integ.test('ghost')).toMatchObject({ ok: false, error: 'unknown_integration' });
  });
});

describe('actions', () => {
  it('renders templates, sends the idempotency key and returns the created ref', async () => {
    const r = await integ.invokeAction({
      integration: 'acme',
      action_id: 'open-ticket',
      context: { decision: { id: 'dec_7' }, transaction: { amount: 14999 } },
      idempotencyKey: 'session-s1:dec_7:ticket',
    });
    expect(r).toEqual({ status: 201, ref: 'T-42', body: { id: 'T-42' } });
    const seen = server.requests.at(-1)!;
    expect(seen.path).toBe('/tickets');
    expect(JSON.parse(seen.body)).toEqual({ title: 'Review dec_7', amount: 14999 });
    expect(seen.headers['idempotency-key']).toBe('session-s1:dec_7:ticket');
    expect(seen.headers['x-case']).toBe('dec_7');
    expect(seen.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('429 with Retry-After is retryable with the delay; 400 is not; unknown action is not', async () => {
    const call = (action_id: string, integration = 'acme') =>
      integ.invokeAction({ integration, action_id, context: {}, idempotencyKey: 'k1' }).then(
        () => undefined,
        (e: unknown) => e as any,
      );
    const limited = await call('limited');
    expect(limited).toMatchObject({
      code: 'http_status',
      status: 429,
      retryable: true,
      retryAfterMs: 3_000,
    });
    expect(String(limited.message)).not.toContain(TOKEN);
    expect(await call('refused')).toMatchObject({
      code: 'http_status',
      status: 400,
      retryable: false,
    });
    expect(await call('nope')).toMatchObject({ code: 'unknown_action', retryable: false });
    expect(await call('x', 'ghost')).toMatchObject({
      code: 'unknown_integration',
      retryable: false,
    });
  });
});

describe('action paths', () => {
  it('a placeholder in a path is percent-encoded: a value cannot climb the URL', async () => {
    const put = await integ.put('pathy', {
      kind: 'http',
      base_url: server.origin,
      auth: { type: 'bearer', token: TOKEN },
      actions: [
        {
          action_id: 'by-customer',
          method: 'POST',
          path: '/customers/{{customer.id}}/flag',
          body: {},
        },
      ],
    });
    expect(put.ok).toBe(true);
    await integ
      .invokeAction({
        integration: 'pathy',
        action_id: 'by-customer',
        context: { customer: { id: '../../../admin/users/1/delete?x=' } },
        idempotencyKey: 'k-path',
      })
      .catch(() => undefined);
    const seen = server.requests.at(-1)!;
    expect(seen.path).toBe('/customers/..%2F..%2F..%2Fadmin%2Fusers%2F1%2Fdelete%3Fx%3D/flag');
    // A bare dot segment is not encoded by encodeURIComponent: refused, nothing sent.
    const before = server.requests.length;
    const err = await integ
      .invokeAction({
        integration: 'pathy',
        action_id: 'by-customer',
        context: { customer: { id: '..' } },
        idempotencyKey: 'k-dots',
      })
      .then(
        () => undefined,
        (e: unknown) => e as any,
      );
    expect(err).toMatchObject({ code: 'invalid_action', retryable: false });
    expect(server.requests.length).toBe(before);
  });
});

describe('look-before-create', () => {
  it('a lookup answered 429 fails the step with its Retry-After, and creates nothing', async () => {
    server.route('/rest/api/3/search/jql', (_q, r) => {
      r.writeHead(429, { 'retry-after': '4', 'content-type': 'application/json' });
      r.end('{}');
    });
    const put = await integ.put('jira-rl', {
      kind: 'jira',
      base_url: server.origin,
      auth: { type: 'basic', username: 'bot@acme.example', password: 'jira-token' },
      settings: { project_key: 'FRAUD' },
      actions: [{ action_id: 'create-issue', summary: 'Review {{decision.id}}' }],
    });
    expect(put.ok).toBe(true);
    const before = server.requests.filter((x) => x.path === '/rest/api/3/issue').length;
    const err = await integ
      .invokeAction({
        integration: 'jira-rl',
        action_id: 'create-issue',
        context: { decision: { id: 'dec_9' } },
        idempotencyKey: 'session-s9:dec_9:ticket',
      })
      .then(
        () => undefined,
        (e: unknown) => e as any,
      );
    expect(err).toMatchObject({
      code: 'lookup_failed',
      status: 429,
      retryable: true,
      retryAfterMs: 4_000,
    });
    expect(server.requests.filter((x) => x.path === '/rest/api/3/issue').length).toBe(before);
  });
});

describe('lifecycle notifications', () => {
  it('POSTs the event to the backends that took part and list the type', async () => {
    const before = server.count('/fast/events');
    const record = {
      response: {
        id: 'dec_1',
        backend_results: [
          { integration: 'acme', backend_id: 'score', status: 'ok' },
          { integration: 'acme', backend_id: 'score', status: 'ok' },
          { integration: 'acme', backend_id: 'broken', status: 'error' },
          { integration: 'acme', backend_id: 'broken', status: 'insufficient_context' },
          { integration: 'ghost', backend_id: 'x', status: 'ok' },
        ],
      },
    };
    const event = {
      id: 'evt_1',
      type: 'chargeback',
      decision_id: 'dec_1',
      occurred_at: '2026-01-01T00:00:00.000Z',
      data: { amount: 100 },
    };
    expect(await integ.notify(record, event)).toEqual([
      { integration: 'acme', backend_id: 'score', status: 'sent' },
      { integration: 'acme', backend_id: 'broken', status: 'failed', error: 'http_status' },
    ]);
    expect(server.count('/fast/events')).toBe(before + 1);
    const seen = server.requests.find((r) => r.path === '/fast/events')!;
    expect(JSON.parse(seen.body)).toEqual({
      type: 'chargeback',
      decision_id: 'dec_1',
      occurred_at: '2026-01-01T00:00:00.000Z',
      data: { amount: 100 },
    });
    expect(seen.headers['idempotency-key']).toBe('evt_1');
    // A type no backend takes: nothing sent, nothing listed.
    expect(await integ.notify(record, { ...event, type: 'refund' })).toEqual([]);
  });
});

describe('the egress guard', () => {
  it('refuses at registration a name resolving to a private address, before any connect', async () => {
    const guarded = createIntegrations({
      store,
      secretKey: key,
      resolver: (h) => Promise.resolve(h === 'evil.example' ? ['10.0.0.1'] : []),
    });
    try {
      const r = await guarded.put('evil', doc({ base_url: 'http://evil.example:8080' }));
      expect(r).toEqual({
        ok: false,
        error: 'egress_refused',
        issues: [{ path: 'base_url', message: 'egress_refused: 10.0.0.1 is private' }],
      });
      expect(await guarded.get('evil')).toBeUndefined();
    } finally {
      await guarded.close();
    }
  });

  it('refuses a decimal literal of loopback at registration and at connect, though the server listens', async () => {
    const guarded = createIntegrations({ store, secretKey: key });
    try {
      const conns = server.connections;
      const literal = `http://2130706433:${server.port}`;
      const r = await guarded.put('literal', doc({ base_url: literal }));
      expect(r).toMatchObject({
        ok: false,
        error: 'egress_refused',
        issues: [{ path: 'base_url', message: 'egress_refused: 127.0.0.1 is loopback' }],
      });
      // Stored behind the guard's back (an allow list that later shrank): still refused.
      const allowed = createIntegrations({
        store,
        secretKey: key,
        egressAllow: [`127.0.0.1:${server.port}`],
      });
      expect((await allowed.put('literal', doc({ base_url: literal }))).ok).toBe(true);
      await allowed.close();
      const call = await guarded.callBackend({
        integration: 'literal',
        backend_id: 'score',
        context: ctx,
      });
      expect(call).toEqual({ status: 'error', error: 'egress_refused' });
      const action = await guarded
        .invokeAction({
          integration: 'literal',
          action_id: 'open-ticket',
          context: {},
          idempotencyKey: 'k',
        })
        .catch((e: unknown) => e as any);
      expect(action).toMatchObject({ code: 'egress_refused', retryable: false });
      expect(action.message).toBe('egress_refused: 127.0.0.1 is loopback');
      expect(server.connections).toBe(conns);
    } finally {
      await guarded.close();
    }
  });

  it('checks the resolved address at every connect: a name rebound to loopback opens no socket', async () => {
    const answers: Record<string, string[]> = { 'rebind.example': ['93.184.216.34'] };
    const guarded = createIntegrations({
      store,
      secretKey: key,
      resolver: (h) => Promise.resolve(answers[h] ?? []),
    });
    try {
      const put = await guarded.put(
        'rebind',
        doc({ base_url: `http://rebind.example:${server.port}` }),
      );
      expect(put.ok).toBe(true);
      answers['rebind.example'] = ['127.0.0.1'];
      const conns = server.connections;
      const n = server.requests.length;
      const r = await guarded.callBackend({
        integration: 'rebind',
        backend_id: 'score',
        context: ctx,
      });
      expect(r).toEqual({ status: 'error', error: 'egress_refused' });
      expect(server.connections).toBe(conns);
      expect(server.requests.length).toBe(n);
    } finally {
      await guarded.close();
    }
  });

  it('an allow-listed name connects to the address it resolved to', async () => {
    const allowed = createIntegrations({
      store,
      secretKey: key,
      egressAllow: [`backend.internal:${server.port}`],
      resolver: (h) => Promise.resolve(h === 'backend.internal' ? ['127.0.0.1'] : []),
    });
    try {
      expect(
        (await allowed.put('named', doc({ base_url: `http://backend.internal:${server.port}` })))
          .ok,
      ).toBe(true);
      const r = await allowed.callBackend({
        integration: 'named',
        backend_id: 'score',
        context: ctx,
      });
      expect(r).toMatchObject({ status: 'ok', outcome: 'ALLOW' });
      expect(server.requests.at(-1)!.headers.host).toBe(`backend.internal:${server.port}`);
    } finally {
      await allowed.close();
    }
  });
});

describe('secrets never leak', () => {
  it('the token is in no answer, error, metric or thrown message', async () => {
    const texts: string[] = [];
    texts.push(JSON.stringify(await integ.get('acme')), JSON.stringify(await integ.list()));
    texts.push(
      JSON.stringify(
        await integ.callBackend({ integration: 'acme', backend_id: 'broken', context: ctx }),
      ),
    );
    texts.push(JSON.stringify(await integ.test('acme')));
    for (const action_id of ['limited', 'refused']) {
      const e = await integ
        .invokeAction({ integration: 'acme', action_id, context: {}, idempotencyKey: 'k' })
        .catch((err: unknown) => err as Error);
      texts.push(String((e as Error).message), String((e as Error).stack), JSON.stringify(e));
    }
    const bad = await integ.put('acme', { ...doc(), base_url: 'https://user:pw@x.example' });
    texts.push(JSON.stringify(bad));
    texts.push(await metrics.metrics());
    for (const t of texts) expect(t).not.toContain(TOKEN);
  });
});

describe('the per-process cache', () => {
  it("another process's edit applies to its first call after the TTL", async () => {
    const second = createIntegrations({
      store,
      secretKey: key,
      egressAllow: [`127.0.0.1:${server.port}`],
      cacheTtlMs: 50,
    });
    try {
      const call = () =>
        second.callBackend({ integration: 'acme', backend_id: 'score', context: ctx });
      expect(await call()).toMatchObject({ outcome: 'ALLOW' });
      const shown = (await integ.get('acme')) as any;
      shown.backends[0].path = '/decline';
      expect((await integ.put('acme', shown)).ok).toBe(true);
      await new Promise((r) => setTimeout(r, 80));
      // Past the TTL the next call already has the edit: the row is read again before use
      // (the old entry answered once more, sending the first call after an edit to the old
      // host with the old secret).
      expect(await call()).toMatchObject({ outcome: 'BLOCK' });
      expect(await integ.delete('acme')).toBe(true);
      expect(
        await integ.callBackend({ integration: 'acme', backend_id: 'score', context: ctx }),
      ).toEqual({
        status: 'error',
        error: 'unknown_backend',
      });
    } finally {
      await second.close();
    }
  });
});

describe('auth headers', () => {
  it.each([
    [
      { type: 'basic', username: 'svc', password: 'pw:1' },
      (h: any) => h.authorization === `Basic ${Buffer.from('svc:pw:1').toString('base64')}`,
    ],
    [{ type: 'header', name: 'X-Api-Key', value: 'k-123' }, (h: any) => h['x-api-key'] === 'k-123'],
    [{ type: 'none' }, (h: any) => h.authorization === undefined],
  ])('%o reaches the server', async (auth, check) => {
    expect((await integ.put('authed', doc({ auth }))).ok).toBe(true);
    const r = await integ.callBackend({ integration: 'authed', backend_id: 'score', context: ctx });
    expect(r).toMatchObject({ status: 'ok' });
    expect(check(server.requests.at(-1)!.headers)).toBe(true);
  });

  it('hmac signs "{timestamp}.{raw body}" with SHA-256', async () => {
    const { createHmac } = await import('node:crypto');
    expect(
      (
        await integ.put(
          'signed',
          doc({ auth: { type: 'hmac', secret: 'whsec_1', header: 'X-Sig' } }),
        )
      ).ok,
    ).toBe(true);
    const r = await integ.callBackend({ integration: 'signed', backend_id: 'score', context: ctx });
    expect(r).toMatchObject({ status: 'ok' });
    const seen = server.requests.at(-1)!;
    const ts = seen.headers['x-vigil-timestamp'] as string;
    expect(Math.abs(Number(ts) - Date.now() / 1000)).toBeLessThan(5);
    const want = createHmac('sha256', 'whsec_1').update(`${ts}.${seen.body}`).digest('hex');
    expect(seen.headers['x-sig']).toBe(`sha256=${want}`);
    expect(JSON.stringify(await integ.get('signed'))).not.toContain('whsec_1');
  });
});
