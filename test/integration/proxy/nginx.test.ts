// nginx auth_request in front of an origin, asking Vigil's /api/authz/{context} (a fastify app
// carrying authzRoutes) about each request: allowed requests reach the origin with the decision
// headers, blocked ones get nginx's 403 and the origin never sees them.
import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { authzRoutes } from '../../../proxy/authz.ts';
import { compileRoutesDocument } from '../../../proxy/inline/config.ts';
import { riskEngine, startNginx, startOrigin, type Nginx, type Origin } from './helpers.ts';

const TOKEN = 'authz-test-token';
let origin: Origin;
let app: FastifyInstance;
let nginx: Nginx;
const engine = riskEngine();

beforeAll(async () => {
  origin = await startOrigin();
  app = Fastify();
  await authzRoutes(app, {
    decide: engine.decide,
    registry: new Registry(),
    config: compileRoutesDocument({
      mode: 'active',
      origins: { shop: origin.url },
      session: { cookie: 'sid' },
      routes: [
        {
          match: { path: '/login' },
          origin: 'shop',
          context: 'login',
          extract: { '$.customer.email': { from: 'query', field: 'email' } },
        },
        {
          match: { path: '/checkout/*' },
          origin: 'shop',
          context: 'checkout',
          extract: {
            '$.transaction.amount': { from: 'header', name: 'x-amount', type: 'integer' },
            '$.credential_fingerprint': { from: 'cookie', name: 'card' },
          },
        },
      ],
    }),
    onRequest: (req, reply, done) => {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        void reply.code(401).send({ error: 'unauthorized', message: 'a bearer token is required' });
        return;
      }
      done();
    },
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const authzPort = (app.server.address() as AddressInfo).port;

  const authz = (context: string, token: string) => `
    set $vigil_context ${context};
    auth_request /_vigil_authz_${token === TOKEN ? 'ok' : 'bad'};
    auth_request_set $vigil_decision $upstream_http_x_vigil_decision;
    auth_request_set $vigil_decision_id $upstream_http_x_vigil_decision_id;
    proxy_set_header X-Vigil-Decision $vigil_decision;
    proxy_set_header X-Vigil-Decision-Id $vigil_decision_id;
    proxy_pass http://origin;`;
  const check = (name: string, token: string) => `
    location = /_vigil_authz_${name} {
      internal;
      proxy_pass http://vigil/api/authz/$vigil_context;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header Authorization "Bearer ${token}";
    }`;
  nginx = await startNginx(
    `
    ${check('ok', TOKEN)}
    ${check('bad', 'wrong-token')}
    location /login { ${authz('login', TOKEN)} }
    location /checkout/ { ${authz('checkout', TOKEN)} }
    location /misconfigured { ${authz('login', 'wrong')} }
    location / { proxy_pass http://origin; }`,
    `upstream origin { server 127.0.0.1:${origin.port}; keepalive 8; }
  upstream vigil { server 127.0.0.1:${authzPort}; keepalive 8; }`,
  );
});

afterAll(async () => {
  await nginx?.close();
  await app?.close();
  await origin?.close();
});

const via = (path: string) => `http://127.0.0.1:${nginx.port}${path}`;

describe('nginx auth_request → Vigil authz', () => {
  it('lets an allowed request reach the origin with the decision headers', async () => {
    const before = origin.started.length;
    const res = await request(via('/login?email=ann%40example.com'), {
      method: 'POST',
      headers: { cookie: 'sid=sess_7', 'content-type': 'application/json' },
      body: '{"password":"not-read-by-authz"}',
    });
    expect(res.statusCode).toBe(200);
    const seen = (await res.body.json()) as {
      method: string;
      url: string;
      headers: Record<string, string>;
    };
    expect(seen.method).toBe('POST');
    expect(seen.url).toBe('/login?email=ann%40example.com');
    expect(seen.headers['x-vigil-decision']).toBe('ALLOW');
    expect(seen.headers['x-vigil-decision-id']).toMatch(/^dec_t/);
    expect(origin.started.length).toBe(before + 1);
    expect(engine.calls[engine.calls.length - 1]).toMatchObject({
      context: 'login',
      source: 'authz',
      body: {
        customer: { email: 'ann@example.com' },
        device: { ip: '127.0.0.1', session: 'sess_7' },
        metadata: { method: 'POST', path: '/login', route: '/login' },
      },
    });
  });

  it('blocks with 403 and the origin never sees the request', async () => {
    const before = origin.started.length;
    const res = await request(via('/login?email=mallory%40fraud.test'), {
      method: 'POST',
      body: 'x',
    });
    expect(res.statusCode).toBe(403);
    await res.body.dump();
    expect(origin.started.length).toBe(before);
  });

  it('passes REVIEW through and extracts from headers and cookies', async () => {
    const res = await request(via('/checkout/pay'), {
      method: 'POST',
      headers: { 'x-amount': '250000', cookie: 'card=tok_fine' },
      body: '{}',
    });
    const seen = (await res.body.json()) as { headers: Record<string, string> };
    expect(seen.headers['x-vigil-decision']).toBe('REVIEW');
    const stolen = await request(via('/checkout/pay'), {
      method: 'POST',
      headers: { 'x-amount': '100', cookie: 'card=tok_stolen' },
      body: '{}',
    });
    expect(stolen.statusCode).toBe(403);
    await stolen.body.dump();
  });

  it('leaves unmonitored locations alone', async () => {
    const before = engine.calls.length;
    const res = await request(via('/catalog'));
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(engine.calls.length).toBe(before);
  });

  it('refuses (401) when nginx does not present the right bearer token', async () => {
    const before = origin.started.length;
    const res = await request(via('/misconfigured'));
    expect(res.statusCode).toBe(401);
    await res.body.dump();
    expect(origin.started.length).toBe(before);
  });
});
