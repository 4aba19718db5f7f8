// The authz endpoint through fastify's inject: nginx auth_request and Envoy ext_authz shapes.
import Fastify, { type FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authzRoutes } from '../../../proxy/authz.ts';
import { compileRoutesDocument } from '../../../proxy/inline/config.ts';
import type { DecideFn, DecideInput, RequestEvent } from '../../../proxy/inline/types.ts';

const calls: DecideInput[] = [];
const events: RequestEvent[] = [];
let mode: 'normal' | 'throw' = 'normal';
const decide: DecideFn = (input) => {
  calls.push(input);
  if (mode === 'throw') return Promise.reject(new Error('engine down'));
  const b = input.body as { customer?: { email?: string }; device?: { ip?: string } };
  const email = b.customer?.email ?? '';
  const decision = email.endsWith('@fraud.test')
    ? 'BLOCK'
    : email.startsWith('review')
      ? 'REVIEW'
      : b.device?.ip === '198.51.100.66'
        ? 'BLOCK'
        : 'ALLOW';
  return Promise.resolve({ id: `dec_a${calls.length}`, decision });
};

const config = compileRoutesDocument({
  mode: 'active',
  origins: { shop: 'http://127.0.0.1:1' },
  session: { cookie: 'sid' },
  routes: [
    {
      match: { method: 'POST', path: '/login' },
      origin: 'shop',
      context: 'login',
      extract: {
        '$.customer.email': { from: 'query', field: 'email' },
        '$.customer.id': { from: 'cookie', name: 'uid' },
        '$.device.fingerprint': { from: 'header', name: 'x-device-id' },
        '$.transaction.amount': { from: 'body', field: 'amount', type: 'integer' },
      },
    },
    {
      match: { path: '/watch/*' },
      origin: 'shop',
      context: 'watch',
      mode: 'passive',
      extract: { '$.customer.email': { from: 'header', name: 'x-user' } },
    },
  ],
});

let app: FastifyInstance;
const registry = new Registry();

beforeAll(async () => {
  app = Fastify();
  await authzRoutes(app, {
    decide,
    config: () => config,
    registry,
    trustedProxies: ['10.0.0.0/8'],
    onRequestEvent: (e) => events.push(e),
    // The API's bearer check goes here; this stand-in accepts one token.
    onRequest: (req, reply, done) => {
      if (req.headers.authorization !== 'Bearer test-token') {
        void reply.code(401).send({ error: 'unauthorized', message: 'a bearer token is required' });
        return;
      }
      done();
    },
  });
  await app.ready();
});
afterAll(async () => {
  await app?.close();
});

const auth = { authorization: 'Bearer test-token' };

describe('nginx auth_request', () => {
  it('allows with the decision in headers, extracting from the original query, cookies and headers', async () => {
    const res = await app.inject({
      method: 'GET',
      url: '/api/authz/login',
      headers: {
        ...auth,
        'x-original-uri': '/login?email=ann%40example.com&x=1',
        'x-original-method': 'POST',
        'x-forwarded-for': '203.0.113.7',
        cookie: 'sid=sess_1; uid=cus_1',
        'x-device-id': 'dev_1',
        'user-agent': 'Browser/1.0',
      },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-vigil-decision']).toBe('ALLOW');
    expect(res.headers['x-vigil-decision-id']).toBe(`dec_a${calls.length}`);
    expect(calls[calls.length - 1]).toEqual({
      context: 'login',
      source: 'authz',
      body: {
        customer: { email: 'ann@example.com', id: 'cus_1' },
        device: {
          ip: '203.0.113.7',
          user_agent: 'Browser/1.0',
          session: 'sess_1',
          fingerprint: 'dev_1',
        },
        metadata: { route: '/login', method: 'POST', path: '/login' },
      },
    });
    expect(events[events.length - 1]).toMatchObject({
      status: 200,
      decision: 'ALLOW',
      path: '/login',
    });
  });

  it('answers 403 with the block body on BLOCK, 200 on REVIEW', async () => {
    const blocked = await app.inject({
      method: 'GET',
      url: '/api/authz/login',
      headers: {
        ...auth,
        'x-original-uri': '/login?email=m%40fraud.test',
        'x-original-method': 'POST',
      },
    });
    expect(blocked.statusCode).toBe(403);
    expect(blocked.headers['x-vigil-decision']).toBe('BLOCK');
    expect(blocked.json()).toEqual({
      error: 'blocked',
      decision_id: blocked.headers['x-vigil-decision-id'],
    });
    const review = await app.inject({
      method: 'GET',
      url: '/api/authz/login',
      headers: { ...auth, 'x-original-uri': '/login?email=review%40example.com' },
    });
    expect(review.statusCode).toBe(200);
    expect(review.headers['x-vigil-decision']).toBe('REVIEW');
  });

  it('counts each decision by context, outcome and mode, and times it per context', async () => {
    const count = async (decision: string) => {
      const m = await registry.getSingleMetric('vigil_proxy_decisions_total')!.get();
      return (
        m.values.find(
          (v) =>
            v.labels.source === 'authz' &&
            v.labels.context === 'login' &&
            v.labels.mode === 'active' &&
            v.labels.decision === decision,
        )?.value ?? 0
      );
    };
    const timed = async () => {
      const m = await registry.getSingleMetric('vigil_proxy_decision_seconds')!.get();
      return (
        m.values.find(
          (v) =>
            (v as { metricName?: string }).metricName === 'vigil_proxy_decision_seconds_count' &&
            v.labels.source === 'authz' &&
            v.labels.context === 'login',
        )?.value ?? 0
      );
    };
    const [blocks, reviews, times] = [await count('BLOCK'), await count('REVIEW'), await timed()];
    for (const email of ['a%40fraud.test', 'review1%40example.com', 'b%40fraud.test']) {
      await app.inject({
        method: 'GET',
        url: '/api/authz/login',
        headers: { ...auth, 'x-original-uri': `/login?email=${email}` },
      });
    }
    expect(await count('BLOCK')).toBe(blocks + 2);
    expect(await count('REVIEW')).toBe(reviews + 1);
    expect(await timed()).toBe(times + 3);
  });

  it('takes the right-most untrusted X-Forwarded-For hop as the client', async () => {
    await app.inject({
      method: 'GET',
      url: '/api/authz/login',
      headers: {
        ...auth,
        'x-original-uri': '/login',
        'x-forwarded-for': '1.1.1.1, 198.51.100.66, 10.0.0.5',
      },
    });
    expect(calls[calls.length - 1]?.body).toMatchObject({ device: { ip: '198.51.100.66' } });
    const res = await app.inject({
      method: 'GET',
      url: '/api/authz/login',
      headers: { ...auth, 'x-original-uri': '/login', 'x-real-ip': '198.51.100.66' },
    });
    expect(res.statusCode).toBe(403);
  });

  it('needs the bearer token (the onRequest hook runs first)', async () => {
    const before = calls.length;
    const res = await app.inject({
      method: 'GET',
      url: '/api/authz/login',
      headers: { 'x-original-uri': '/login' },
    });
    expect(res.statusCode).toBe(401);
    expect(calls.length).toBe(before);
  });

  it('fails open (200, counted) when the engine fails', async () => {
    mode = 'throw';
    try {
      const res = await app.inject({
        method: 'GET',
        url: '/api/authz/login',
        headers: { ...auth, 'x-original-uri': '/login?email=m%40fraud.test' },
      });
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-vigil-decision']).toBeUndefined();
      expect(res.headers['x-vigil-fail-open']).toBe('error');
      const m = await registry.getSingleMetric('vigil_proxy_fail_open_total')!.get();
      expect(m.values.find((v) => v.labels.source === 'authz')?.value).toBe(1);
    } finally {
      mode = 'normal';
    }
  });

  it('refuses a bad context name', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/authz/Not%20Valid', headers: auth });
    expect(res.statusCode).toBe(400);
  });
});

describe('Envoy ext_authz (HTTP service)', () => {
  it('reads the original method and path after the prefix, and ignores a replayed body', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/authz/login/login?email=eve%40fraud.test',
      headers: { ...auth, 'content-type': 'multipart/form-data; boundary=x', cookie: 'uid=cus_9' },
      payload: '--x\r\nContent-Disposition: form-data; name="amount"\r\n\r\n5\r\n--x--\r\n',
    });
    expect(res.statusCode).toBe(403);
    expect(calls[calls.length - 1]?.body).toMatchObject({
      customer: { email: 'eve@fraud.test', id: 'cus_9' },
      metadata: { method: 'POST', path: '/login' },
    });
    // Body extractors do not apply to authz: there is no body to read.
    expect((calls[calls.length - 1]?.body as Record<string, unknown>).transaction).toBeUndefined();
  });

  it('answers 200 with the decision for a passive route, even on BLOCK', async () => {
    const res = await app.inject({
      method: 'DELETE',
      url: '/api/authz/watch/watch/item/7',
      headers: { ...auth, 'x-user': 'x@fraud.test' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-vigil-decision']).toBe('BLOCK');
    expect(res.headers['x-vigil-mode']).toBe('passive');
    expect(calls[calls.length - 1]?.body).toMatchObject({
      metadata: { route: '/watch/*', path: '/watch/item/7' },
    });
  });

  it('normalizes the original path', async () => {
    await app.inject({ method: 'GET', url: '/api/authz/watch/watch/a/../b//c', headers: auth });
    expect(calls[calls.length - 1]?.body).toMatchObject({ metadata: { path: '/watch/b/c' } });
  });
});
