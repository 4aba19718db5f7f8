// Link integrations through the whole API (CONTRACT §3): registration with secrets encrypted
// and redacted, the egress guard at registration, a backend rule deciding through a real local
// backend server, insufficient_context without a request, lifecycle events forwarded to the
// backends that took part, the edition gate, and scopes.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, auth, injectJson, startRuntime, type Method } from './helpers.ts';

type Rt = Awaited<ReturnType<typeof startRuntime>>;
let rt: Rt;
let server: http.Server;
let port: number;
const SECRET = 'sk_live_integration_token_9f8e7d6c5b4a';
const seen: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[] = [];

const json = (method: Method, url: string, body?: unknown, token: string | null = ADMIN) =>
  injectJson(rt, method, url, body, token);

function integration(base = `http://127.0.0.1:${port}`) {
  return {
    kind: 'http',
    base_url: base,
    auth: { type: 'bearer', token: SECRET },
    backends: [
      {
        backend_id: 'score',
        method: 'POST',
        path: '/v2/score',
        required_fields: ['$.customer.email', '$.transaction.amount'],
        request: { email: '$.customer.email', amount: '$.transaction.amount' },
        response: {
          outcome_path: '$.verdict',
          map: { approve: 'ALLOW', review: 'REVIEW', decline: 'BLOCK' },
        },
        timeout_ms: 500,
        events: ['chargeback'],
      },
    ],
  };
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      res.setHeader('content-type', 'application/json');
      if (req.url === '/v2/score') {
        const amount = (JSON.parse(body) as { amount: number }).amount;
        const verdict = amount >= 100_000 ? 'decline' : amount >= 1_000 ? 'review' : 'approve';
        res.end(JSON.stringify({ verdict }));
      } else res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  rt = await startRuntime({ VIGIL_EGRESS_ALLOW: `127.0.0.1:${port}` });
});

afterAll(async () => {
  await rt?.close();
  await new Promise((r) => server?.close(r));
});

describe('integrations API', () => {
  it('needs a token and the integrations scopes', async () => {
    expect((await json('GET', '/api/admin/integrations', undefined, null)).status).toBe(401);
    const reader = await json('POST', '/api/admin/tokens', {
      name: 'reader',
      scopes: ['admin:integrations:read'],
    });
    const token = reader.body.token as string;
    expect((await json('GET', '/api/admin/integrations', undefined, token)).status).toBe(200);
    // Even a body that would fail validation gets 403, not a validation error.
    const put = await json('PUT', '/api/admin/integrations/acme-risk', { kind: 1 }, token);
    expect(put.status).toBe(403);
    expect((await json('GET', '/api/admin/integrations/acme-risk')).status).toBe(404);
  });

  it('refuses an invalid document with the offending path and stores nothing', async () => {
    const bad = integration();
    (bad.backends[0]!.response as any).map = { approve: 'MAYBE' };
    const r = await json('PUT', '/api/admin/integrations/broken', bad);
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_integration');
    expect(JSON.stringify(r.body.issues)).toContain('backends[0].response.map');
    expect(r.text).not.toContain(SECRET);
    expect((await json('GET', '/api/admin/integrations/broken')).status).toBe(404);
    const other = await json('PUT', '/api/admin/integrations/a', { ...integration(), slug: 'b' });
    expect(other.status).toBe(400);
  });

  it('refuses a private or metadata address at registration, however it is spelled', async () => {
    for (const base of [
      'http://10.0.0.1',
      'http://169.254.169.254',
      'http://2130706433:81',
      'http://[::ffff:7f00:1]:81',
    ]) {
      const r = await json('PUT', '/api/admin/integrations/ssrf', integration(base));
      expect(r.status, base).toBe(400);
      expect(r.body.error, base).toBe('egress_refused');
    }
    expect((await json('GET', '/api/admin/integrations/ssrf')).status).toBe(404);
  });

  it('stores secrets encrypted and shows them as ***', async () => {
    const created = await json('PUT', '/api/admin/integrations/acme-risk', integration());
    expect(created.status).toBe(201);
    expect(created.body.auth.token).toBe('***');
    const again = await json('PUT', '/api/admin/integrations/acme-risk', integration());
    expect(again.status).toBe(200);
    const got = await json('GET', '/api/admin/integrations/acme-risk');
    expect(got.body.auth).toEqual({ type: 'bearer', token: '***' });
    const list = await json('GET', '/api/admin/integrations');
    expect(list.body.integrations.map((i: any) => i.slug)).toContain('acme-risk');
    for (const r of [created, again, got, list]) expect(r.text).not.toContain(SECRET);
    // At rest: the store holds ciphertext, not the token.
    const row = await rt.store.getIntegration('acme-risk');
    expect(JSON.stringify(row)).not.toContain(SECRET);
    // A GET-edit-PUT round trip keeps the stored secret.
    const edited = { ...integration(), auth: { type: 'bearer', token: '***' } };
    expect((await json('PUT', '/api/admin/integrations/acme-risk', edited)).status).toBe(200);
  });

  it('decides through the backend; insufficient context makes no request', async () => {
    const rs = await json('POST', '/api/admin/rulesets', {
      name: 'with backend',
      context: 'checkout',
      rules: [
        {
          id: 'risk-api',
          type: 'backend',
          integration: 'acme-risk',
          backend_id: 'score',
          on_error: 'review',
          timeout_ms: 300,
        },
        {
          id: 'after',
          type: 'condition',
          action: 'REVIEW',
          condition: { eq: { path: '$.backends.acme-risk.score.outcome', value: 'REVIEW' } },
          live: false,
        },
      ],
    });
    expect(rs.status).toBe(201);
    expect((await json('POST', `/api/admin/rulesets/${rs.body.id}/activate`)).status).toBe(200);

    seen.length = 0;
    const big = await json('POST', '/api/decisions', {
      context: 'checkout',
      transaction: { amount: 150_000, currency: 'EUR' },
      customer: { id: 'c1', email: 'a@example.com' },
      metadata: { channel: 'web' },
    });
    expect(big.status).toBe(200);
    expect(big.body.decision).toBe('BLOCK');
    expect(big.body.evaluation_type).toBe('BACKEND');
    expect(big.body.backend_results[0]).toMatchObject({
      rule_id: 'risk-api',
      integration: 'acme-risk',
      backend_id: 'score',
      status: 'ok',
      outcome: 'BLOCK',
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(JSON.parse(seen[0]!.body)).toEqual({ email: 'a@example.com', amount: 150_000 });
    expect(seen[0]!.body).not.toContain('channel');

    const small = await json('POST', '/api/decisions', {
      context: 'checkout',
      transaction: { amount: 100, currency: 'EUR' },
      customer: { id: 'c1', email: 'a@example.com' },
    });
    expect(small.body.decision).toBe('ALLOW');
    // An ALLOW answer is terminal (semantic 3): later rules are not evaluated.
    expect(small.body.rules.find((r: any) => r.rule_id === 'after').result).toBe('not_evaluated');
    const mid = await json('POST', '/api/decisions', {
      context: 'checkout',
      transaction: { amount: 5_000, currency: 'EUR' },
      customer: { id: 'c1', email: 'a@example.com' },
    });
    expect(mid.body.decision).toBe('REVIEW');
    // The mapped answer is visible to later rules at $.backends.{integration}.{backend_id}.
    expect(mid.body.rules.find((r: any) => r.rule_id === 'after')).toMatchObject({
      result: 'matched',
      shadow: true,
    });

    seen.length = 0;
    const missing = await json('POST', '/api/decisions', {
      context: 'checkout',
      transaction: { amount: 150_000, currency: 'EUR' },
    });
    expect(missing.body.decision).toBe('ALLOW');
    expect(missing.body.backend_results[0]).toMatchObject({
      status: 'insufficient_context',
      missing: ['$.customer.email'],
    });
    expect(seen).toHaveLength(0);

    // A lifecycle event goes to the backends that took part and accept its type.
    seen.length = 0;
    const ev = await json('POST', '/api/events', {
      type: 'chargeback',
      decision_id: big.body.id,
      occurred_at: new Date().toISOString(),
      data: { amount: 150_000 },
    });
    expect(ev.status).toBe(201);
    expect(ev.body.backend_notifications).toEqual([
      { integration: 'acme-risk', backend_id: 'score', status: 'sent' },
    ]);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(['POST /v2/score/events']);
    expect(JSON.parse(seen[0]!.body)).toMatchObject({
      type: 'chargeback',
      decision_id: big.body.id,
    });

    // Nothing the API logged or published holds the secret.
    await (rt.decideDeps.events as unknown as { flush(): Promise<void> }).flush();
    const eventsDir = path.join(rt.dir, 'events');
    for (const f of readdirSync(eventsDir)) {
      expect(readFileSync(path.join(eventsDir, f), 'utf8')).not.toContain(SECRET);
    }
    const metrics = await rt.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toContain('acme-risk');
    expect(metrics.body).not.toContain(SECRET);
  });

  it('tests an integration against the third party', async () => {
    const r = await json('POST', '/api/admin/integrations/acme-risk/test');
    expect(r.status).toBe(200);
    expect(r.body.ok).toBe(true);
    expect((await json('POST', '/api/admin/integrations/nope/test')).status).toBe(404);
  });

  it('deletes an integration', async () => {
    expect((await json('DELETE', '/api/admin/integrations/acme-risk')).status).toBe(204);
    expect((await json('DELETE', '/api/admin/integrations/acme-risk')).status).toBe(404);
  });
});

describe('Core edition', () => {
  it('refuses backend rules at upload with edition_required', async () => {
    const core = await startRuntime({ VIGIL_EDITION: 'core' });
    try {
      const r = await core.app.inject({
        method: 'POST',
        url: '/api/admin/rulesets',
        headers: auth(),
        payload: {
          name: 'core',
          context: 'default',
          rules: [
            {
              id: 'b',
              type: 'backend',
              integration: 'acme-risk',
              backend_id: 'score',
            },
          ],
        },
      });
      expect(r.statusCode).toBe(400);
      expect(JSON.parse(r.body)).toMatchObject({ error: 'edition_required', edition: 'connect' });
      expect((await core.store.listRulesets()).length).toBe(0);
    } finally {
      await core.close();
    }
  });

  it('calls no backend for a ruleset activated before the switch: the rule fails with edition_required', async () => {
    const core = await startRuntime({ VIGIL_EDITION: 'core', VIGIL_EGRESS_ALLOW: '127.0.0.1:9' });
    try {
      // A connection to port 9 would fail as `connection`: edition_required says none was tried.
      await core.integrations.put('old-risk', {
        slug: 'old-risk',
        kind: 'http',
        base_url: 'http://127.0.0.1:9',
        auth: { type: 'none' },
        backends: [
          {
            backend_id: 'score',
            method: 'POST',
            path: '/s',
            response: { outcome_path: '$.v', map: { x: 'BLOCK' } },
          },
        ],
      });
      // Stored as it was under Connect (the API would refuse it now).
      const row = await core.store.createRuleset({
        name: 'legacy',
        context: 'legacy',
        document: {
          name: 'legacy',
          context: 'legacy',
          rules: [
            {
              id: 'b',
              type: 'backend',
              integration: 'old-risk',
              backend_id: 'score',
              on_error: 'review',
            },
          ],
        },
      });
      await core.store.activate(row.id);
      await core.active.refresh();
      const d = await injectJson(core, 'POST', '/api/decisions', { context: 'legacy' });
      expect(d.body.decision).toBe('REVIEW');
      expect(d.body.rules[0]).toMatchObject({
        rule_id: 'b',
        result: 'error',
        reason: 'edition_required',
      });
      expect(d.body.backend_results[0]).toMatchObject({
        status: 'error',
        error: 'edition_required',
      });
    } finally {
      await core.close();
    }
  });
});
