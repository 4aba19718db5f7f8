import net from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SQLITE_FILE } from '../../../storage/store.ts';
import { ADMIN, auth, httpJson, startRuntime, type Method } from './helpers.ts';

type Rt = Awaited<ReturnType<typeof startRuntime>>;
let rt: Rt;
let base: string;

const RULESET = {
  name: 'api test',
  context: 'checkout',
  rules: [
    {
      id: 'known-bad',
      type: 'blacklist',
      action: 'BLOCK',
      fields: ['$.credential_fingerprint'],
      populate_on: ['chargeback'],
      ttl_seconds: 3600,
    },
    {
      id: 'card-testing',
      type: 'condition',
      action: 'BLOCK',
      condition: { velocity: { field: '$.credential_fingerprint', window: '1h', gt: 3 } },
    },
    {
      id: 'big',
      type: 'condition',
      action: 'REVIEW',
      condition: { gte: { path: '$.transaction.amount', value: 100000 } },
    },
  ],
};

// Over a real socket, as clients call it (not inject()).
const json = (method: Method, url: string, body?: unknown, token: string | null = ADMIN) =>
  httpJson(base, method, url, body, token);

const card = (last4: string) => ({ type: 'masked_pan', bin: '411111', last4, expiry: '12/29' });

beforeAll(async () => {
  rt = await startRuntime();
  await rt.app.listen({ port: 0, host: '127.0.0.1' });
  const addr = rt.app.server.address();
  if (!addr || typeof addr === 'string') throw new Error('no address');
  base = `http://127.0.0.1:${addr.port}`;
  const created = await json('POST', '/api/admin/rulesets', RULESET);
  expect(created.status).toBe(201);
  expect(created.body.status).toBe('DRAFT');
  expect((await json('POST', `/api/admin/rulesets/${created.body.id}/activate`)).status).toBe(200);
});
afterAll(async () => rt?.close());

describe('decisions API (embedded store)', () => {
  it('answers with the contract shape and finds the decision right after', async () => {
    const r = await json('POST', '/api/decisions', {
      context: 'checkout',
      transaction: { amount: 150000, currency: 'EUR' },
      credential: card('0001'),
      device: { session: 'sess_a' },
      metadata: { channel: 'web' },
    });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      decision: 'REVIEW',
      context: 'checkout',
      workflow_id: 'session-sess_a',
      has_errors: false,
      degraded: [],
    });
    expect(r.body.credential_fingerprint).toMatch(/^crd_/);
    expect(r.body.rules.map((x: any) => [x.rule_id, x.result])).toEqual([
      ['known-bad', 'not_matched'],
      ['card-testing', 'not_matched'],
      ['big', 'matched'],
    ]);
    const got = await json('GET', `/api/decisions/${r.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body.id).toBe(r.body.id);
    // The raw card never reaches storage: only its fingerprint.
    await rt.log.flush();
    const row = await rt.store.getDecision(r.body.id);
    expect(JSON.stringify(row)).not.toContain('411111');
    // A risky decision is handed off durably before the answer.
    const outbox = await rt.store.outboxStats();
    expect(outbox.size).toBeGreaterThanOrEqual(1);
  });

  it('stores a risky decision with its handoff before answering, or answers with an error', async () => {
    const body = {
      context: 'checkout',
      transaction: { amount: 150000, currency: 'EUR' },
      credential: card('0005'),
      device: { session: 'sess_durable' },
    };
    const before = (await rt.store.outboxStats()).size;
    const r = await json('POST', '/api/decisions', body);
    expect(r.body.decision).toBe('REVIEW');
    // On the store already (no flush of the batched log): written in the handoff's transaction.
    expect((await rt.store.getDecision(r.body.id))?.decision).toBe('REVIEW');
    expect((await rt.store.outboxStats()).size).toBe(before + 1);

    // The embedded store refuses outbox rows (a real fault, from another connection): the
    // decision is not acknowledged and nothing of it is stored.
    const db = new Database(path.join(rt.dir, SQLITE_FILE));
    db.exec(
      `CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'refused'); END`,
    );
    try {
      const failed = await json('POST', '/api/decisions', { ...body, device: { session: 's2' } });
      expect(failed.status).toBeGreaterThanOrEqual(500);
      expect(failed.body.decision).toBeUndefined();
      await rt.log.flush();
      const stored = await rt.store.listDecisions({ limit: 10_000 });
      expect(stored.filter((d) => d.session === 's2')).toHaveLength(0);
      expect((await rt.store.outboxStats()).size).toBe(before + 1);
    } finally {
      db.exec('DROP TRIGGER refuse_outbox');
      db.close();
    }
  });

  it('counts velocity exactly and blocks card testing; dry_run does not count', async () => {
    const body = { context: 'checkout', transaction: { amount: 100 }, credential: card('0002') };
    const dry = await json('POST', '/api/decisions?dry_run=true', body);
    expect(dry.body.dry_run).toBe(true);
    const out = [];
    for (let i = 0; i < 5; i++)
      out.push((await json('POST', '/api/decisions', body)).body.decision);
    expect(out).toEqual(['ALLOW', 'ALLOW', 'ALLOW', 'BLOCK', 'BLOCK']);
  });

  it('an Idempotency-Key makes a retried request one decision, counted once', async () => {
    const body = { context: 'checkout', transaction: { amount: 100 }, credential: card('0003') };
    const send = (key: string) =>
      rt.app.inject({
        method: 'POST',
        url: '/api/decisions',
        headers: { ...auth(), 'idempotency-key': key },
        payload: body,
      });
    const a = JSON.parse((await send('k-1')).body);
    const b = JSON.parse((await send('k-1')).body);
    expect(b.id).toBe(a.id);
    for (const k of ['k-2', 'k-3']) await send(k);
    // 3 distinct decisions so far: the 4th is the first over the threshold (gt 3).
    expect(JSON.parse((await send('k-4')).body).decision).toBe('BLOCK');
  });

  it('an Idempotency-Key is the token’s own, and refused on a different request', async () => {
    const body = { context: 'checkout', transaction: { amount: 7 }, credential: card('0008') };
    const send = (payload: object, token = ADMIN) =>
      rt.app.inject({
        method: 'POST',
        url: '/api/decisions',
        headers: { ...auth(token), 'idempotency-key': 'shared-key' },
        payload,
      });
    const first = await send(body);
    expect(first.statusCode).toBe(200);
    const other = await send({ ...body, transaction: { amount: 8 } });
    expect(other.statusCode).toBe(409);
    expect(JSON.parse(other.body).error).toBe('idempotency_key_reused');
    const long = await rt.app.inject({
      method: 'POST',
      url: '/api/decisions',
      headers: { ...auth(), 'idempotency-key': 'k'.repeat(201) },
      payload: body,
    });
    expect(long.statusCode).toBe(400);
    expect(JSON.parse(long.body).issues[0].path).toBe('Idempotency-Key');
    const t = await json('POST', '/api/admin/tokens', { name: 'k', scopes: ['decisions:write'] });
    const mine = await send(body, t.body.token as string);
    expect(mine.statusCode).toBe(200);
    expect(JSON.parse(mine.body).id).not.toBe(JSON.parse(first.body).id);
  });

  it('a chargeback fills the blacklist and the next decision with that card is BLOCK', async () => {
    const body = { context: 'checkout', transaction: { amount: 100 }, credential: card('0004') };
    const first = await json('POST', '/api/decisions', body);
    expect(first.body.decision).toBe('ALLOW');
    const ev = await json('POST', '/api/events', {
      type: 'chargeback',
      decision_id: first.body.id,
      occurred_at: new Date().toISOString(),
      data: { amount: 100 },
    });
    expect(ev.status).toBe(201);
    expect(ev.body.blacklisted).toHaveLength(1);
    const next = await json('POST', '/api/decisions', body);
    expect(next.body.decision).toBe('BLOCK');
    expect(next.body.rules[0]).toMatchObject({ rule_id: 'known-bad', result: 'matched' });
    const list = await json('GET', '/api/admin/blacklist?field_path=$.credential_fingerprint');
    expect(list.body.entries[0]).toMatchObject({ source_decision_id: first.body.id });
    expect(list.body.entries[0].display_hint).not.toBe(list.body.entries[0].value);
  });

  it('resolves a decision once: 200 then 409', async () => {
    const d = await json('POST', '/api/decisions', {
      context: 'checkout',
      transaction: { amount: 200000 },
    });
    expect(
      (await json('POST', `/api/decisions/${d.body.id}/resolve`, { resolution: 'reject' })).status,
    ).toBe(200);
    const again = await json('POST', `/api/decisions/${d.body.id}/resolve`, {
      resolution: 'accept',
    });
    expect(again.status).toBe(409);
    expect(again.body.error).toBe('already_resolved');
  });

  it.each([
    ['amount as a string', { transaction: { amount: '10' } }, 'transaction.amount'],
    ['fractional amount', { transaction: { amount: 10.5 } }, 'transaction.amount'],
    ['lowercase currency', { transaction: { currency: 'eur' } }, 'transaction.currency'],
    [
      'short bin',
      { credential: { type: 'masked_pan', bin: '41', last4: '1234' } },
      'credential.bin',
    ],
    ['unknown credential type', { credential: { type: 'cvv', value: '123' } }, 'credential.type'],
    ['bad ip', { device: { ip: '300.1.1.1' } }, 'device.ip'],
    ['metadata not flat', { metadata: { nested: { a: 1 } } }, 'metadata.nested'],
    ['context with spaces', { context: 'Check Out' }, 'context'],
    ['items not an array', { items: { a: 1 } }, 'items'],
    [
      'both credential and fingerprint',
      { credential: card('0005'), credential_fingerprint: 'tok' },
      'credential_fingerprint',
    ],
    ['reserved backends key', { backends: { x: 1 } }, 'backends'],
  ])('refuses a malformed request (%s) naming %s, storing nothing', async (_what, body, field) => {
    // Earlier tests' decisions may still be on their way to the store: count after they land.
    await rt.log.flush();
    const before = (await rt.store.listDecisions({})).length;
    const r = await json('POST', '/api/decisions', body);
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_request');
    expect(r.body.issues.map((i: any) => i.path)).toContain(field);
    await rt.log.flush();
    expect((await rt.store.listDecisions({})).length).toBe(before);
  });

  it('refuses a raw PAN at the default PCI level', async () => {
    const r = await json('POST', '/api/decisions', {
      credential: { type: 'pan', number: '4111111111111111' },
    });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('pan_not_allowed');
    expect(JSON.stringify(r.body)).not.toContain('4111111111111111');
  });

  it('counts a decision of every context toward a velocity on its value', async () => {
    // `login-x` has no ruleset (nothing counts there itself): its decisions still carried the
    // card, so checkout's card-testing rule (gt 3) sees them (CONTRACT §2).
    const c = card('0005');
    for (let i = 0; i < 3; i++) {
      const r = await json('POST', '/api/decisions', { context: 'login-x', credential: c });
      expect(r.body).toMatchObject({ decision: 'ALLOW', rules: [] });
    }
    const r = await json('POST', '/api/decisions', {
      context: 'checkout',
      transaction: { amount: 100 },
      credential: c,
    });
    expect(r.body.decision).toBe('BLOCK');
    expect(r.body.rules).toContainEqual({
      rule_id: 'card-testing',
      result: 'matched',
      action: 'BLOCK',
    });
  });

  it('refuses a card number sent as credential_fingerprint, and a JSON null body', async () => {
    const pan = await json('POST', '/api/decisions', {
      credential_fingerprint: '4111111111111111',
    });
    expect(pan.status).toBe(400);
    expect(pan.body.issues.map((i: any) => i.path)).toEqual(['credential_fingerprint']);
    // A format-preserving token (Luhn-invalid on purpose) is a token.
    const tok = await json('POST', '/api/decisions', {
      credential_fingerprint: '4111111111111112',
    });
    expect(tok.status).toBe(200);
    const res = await rt.app.inject({
      method: 'POST',
      url: '/api/decisions',
      headers: { ...auth(), 'content-type': 'application/json' },
      payload: 'null',
    });
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error).toBe('invalid_request');
  });

  it('refuses a card number as a blacklisted fingerprint', async () => {
    for (const field_path of ['$.credential_fingerprint', "$['credential_fingerprint']"]) {
      const r = await json('POST', '/api/admin/blacklist', {
        field_path,
        value: '4111111111111111',
      });
      expect(r.status).toBe(400);
      expect(r.body.issues[0].path).toBe('value');
    }
    const ip = await json('POST', '/api/admin/blacklist', {
      field_path: '$.device.ip',
      value: '203.0.113.66',
    });
    expect(ip.status).toBe(201);
  });

  it('takes null for an empty scalar field, and rules read it as missing', async () => {
    const r = await json('POST', '/api/decisions', {
      context: 'checkout',
      transaction: { reference: null, amount: null, currency: null },
      customer: { id: null, email: null },
      device: { ip: null, fingerprint: null, user_agent: null, session: null },
    });
    expect(r.status).toBe(200);
    // `big` (gte on the amount) cannot match a null amount; nothing was counted on a null.
    expect(r.body.decision).toBe('ALLOW');
    expect(r.body.workflow_id).toBeNull();
  });

  it('answers the router’s own refusals in the API’s error shape', async () => {
    const res = await rt.app.inject({
      method: 'GET',
      url: `/api/decisions/dec_${'a'.repeat(3000)}`,
      headers: auth(),
    });
    expect(res.statusCode).toBe(414);
    expect(JSON.parse(res.body)).toEqual({ error: 'uri_too_long', message: expect.any(String) });
  });

  it('answers a request Node’s parser refuses with JSON too', async () => {
    const { port } = new URL(base);
    const raw = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(Number(port), '127.0.0.1');
      let out = '';
      sock.on('data', (b) => (out += b.toString()));
      sock.on('end', () => resolve(out));
      sock.on('error', reject);
      sock.write(
        'POST /api/decisions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
      );
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(raw).toMatch(/content-type: application\/json/i);
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toMatchObject({
      error: 'bad_request',
    });
  });

  it('cuts a client that drips header lines, within the headers timeout', async () => {
    const { port } = new URL(base);
    const t0 = Date.now();
    const first = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(Number(port), '127.0.0.1');
      let out = '';
      const drip = setInterval(() => sock.writable && sock.write('X-Slow: 1\r\n'), 500);
      sock.on('data', (b) => (out += b.toString()));
      sock.on('close', () => {
        clearInterval(drip);
        resolve(out.split('\r\n')[0] ?? '');
      });
      sock.on('error', reject);
      sock.write('POST /api/decisions HTTP/1.1\r\nHost: x\r\n');
    });
    expect(first).toMatch(/^HTTP\/1\.1 408/);
    // 10 s of headers, checked every second (Node's defaults: 60 s, every 30 s).
    expect(Date.now() - t0).toBeLessThan(13_000);
  }, 20_000);

  it('refuses JSON nested deeper than 64 levels with 400, stores nothing; 60 levels decide', async () => {
    const nest = (n: number) => `${'['.repeat(n)}1${']'.repeat(n)}`;
    const send = (n: number) =>
      rt.app.inject({
        method: 'POST',
        url: '/api/decisions',
        headers: { ...auth(), 'content-type': 'application/json' },
        payload: `{"context":"checkout","transaction":{"amount":150000},"items":[{"x":${nest(n)}}],"pad":"${' '.repeat(200)}"}`,
      });
    // Deep enough to overflow the stack where the record is stored: a REVIEW answered 500.
    const deep = await send(10_000);
    expect(deep.statusCode).toBe(400);
    expect(JSON.parse(deep.body)).toMatchObject({ error: 'bad_request' });
    const ok = await send(60);
    expect(ok.statusCode).toBe(200);
    expect(JSON.parse(ok.body).decision).toBe('REVIEW');
    // Brackets inside strings are text, not nesting.
    const text = await rt.app.inject({
      method: 'POST',
      url: '/api/decisions',
      headers: { ...auth(), 'content-type': 'application/json' },
      payload: JSON.stringify({ note: '['.repeat(5000) }),
    });
    expect(text.statusCode).toBe(200);
  });

  it('refuses a 10 MB body with 413', async () => {
    const res = await rt.app.inject({
      method: 'POST',
      url: '/api/decisions',
      headers: { ...auth(), 'content-type': 'application/json' },
      payload: `{"metadata":{"x":"${'a'.repeat(10 * 1024 * 1024)}"}}`,
    });
    expect(res.statusCode).toBe(413);
    expect(JSON.parse(res.body).error).toBe('payload_too_large');
  });
});

describe('rulesets API', () => {
  it('refuses a bad document with invalid_ruleset naming the field, storing nothing', async () => {
    const before = (await json('GET', '/api/admin/rulesets')).body.rulesets.length;
    const r = await json('POST', '/api/admin/rulesets', {
      name: 'x',
      context: 'checkout',
      rules: [
        {
          id: 'a',
          type: 'condition',
          action: 'BLOCK',
          condition: { gt: { path: '$..x', value: 1 } },
        },
      ],
    });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({
      error: 'invalid_ruleset',
      issues: [{ path: 'rules[0].condition.gt.path' }],
    });
    expect((await json('GET', '/api/admin/rulesets')).body.rulesets.length).toBe(before);
  });

  it('edits only drafts, swaps ACTIVE atomically and rolls back', async () => {
    const list = (await json('GET', '/api/admin/rulesets?context=checkout')).body.rulesets;
    const first = list.find((r: any) => r.status === 'ACTIVE');
    expect((await json('PUT', `/api/admin/rulesets/${first.id}`, RULESET)).status).toBe(409);
    const v2 = await json('POST', '/api/admin/rulesets', { ...RULESET, name: 'v2', rules: [] });
    expect(
      (
        await json('PUT', `/api/admin/rulesets/${v2.body.id}`, {
          ...RULESET,
          name: 'v2 edited',
          rules: [],
        })
      ).body.name,
    ).toBe('v2 edited');
    await json('POST', `/api/admin/rulesets/${v2.body.id}/activate`);
    expect((await json('GET', `/api/admin/rulesets/${first.id}`)).body.status).toBe('INACTIVE');
    const d = await json('POST', '/api/decisions', {
      context: 'checkout',
      transaction: { amount: 200000 },
    });
    expect(d.body).toMatchObject({ decision: 'ALLOW', ruleset_id: v2.body.id, rules: [] });
    expect((await json('POST', `/api/admin/rulesets/${first.id}/rollback`)).status).toBe(200);
    expect((await json('GET', `/api/admin/rulesets/${v2.body.id}`)).body.status).toBe('INACTIVE');
    const again = await json('POST', '/api/decisions', {
      context: 'checkout',
      transaction: { amount: 200000 },
    });
    expect(again.body).toMatchObject({ decision: 'REVIEW', ruleset_id: first.id });
  });

  it('falls back to default, and with neither answers ALLOW with no rules', async () => {
    const none = await json('POST', '/api/decisions', { context: 'nowhere' });
    expect(none.body).toMatchObject({ decision: 'ALLOW', rules: [], ruleset_id: null });
    const def = await json('POST', '/api/admin/rulesets', {
      name: 'default',
      context: 'default',
      rules: [
        {
          id: 'all',
          type: 'condition',
          action: 'REVIEW',
          condition: { not: { eq: { path: '$.x', value: 1 } } },
        },
      ],
    });
    await json('POST', `/api/admin/rulesets/${def.body.id}/activate`);
    const fb = await json('POST', '/api/decisions', { context: 'nowhere' });
    expect(fb.body).toMatchObject({
      decision: 'REVIEW',
      ruleset_id: def.body.id,
      context: 'nowhere',
    });
  });

  it('validate reports backend rules naming no registered integration', async () => {
    const draft = await json('POST', '/api/admin/rulesets', {
      name: 'refs',
      context: 'refs',
      rules: [{ id: 'risk', type: 'backend', integration: 'nope-int', backend_id: 'score' }],
    });
    expect(draft.status).toBe(201);
    const v = await json('POST', `/api/admin/rulesets/${draft.body.id}/validate`);
    expect(v.status).toBe(200);
    expect(v.body.valid).toBe(false);
    expect(v.body.issues).toEqual([
      { path: 'rules[0].integration', message: expect.stringContaining('nope-int') },
    ]);
  });

  it('simulates a draft beside the active ruleset', async () => {
    const draft = await json('POST', '/api/admin/rulesets', {
      name: 'strict',
      context: 'checkout',
      rules: [
        {
          id: 'any',
          type: 'condition',
          action: 'BLOCK',
          condition: { gte: { path: '$.transaction.amount', value: 1000 } },
        },
      ],
    });
    const r = await json('POST', `/api/admin/rulesets/${draft.body.id}/simulate`, {
      decisions: [{ transaction: { amount: 5 } }, { transaction: { amount: 150000 } }],
    });
    expect(r.status).toBe(200);
    expect(r.body.results.map((x: any) => [x.decision, x.active_decision])).toEqual([
      ['ALLOW', 'ALLOW'],
      ['BLOCK', 'REVIEW'],
    ]);
    expect(r.body.summary).toMatchObject({ total: 2, changed: 1 });
  });

  it('simulates given contexts as decisions: credentials fingerprinted, inputs validated', async () => {
    // The active checkout ruleset blocks blacklisted fingerprints: list this card's.
    const c = card('0009');
    const dry = await json('POST', '/api/decisions?dry_run=true', {
      context: 'checkout',
      credential: c,
    });
    const added = await json('POST', '/api/admin/blacklist', {
      field_path: '$.credential_fingerprint',
      value: dry.body.credential_fingerprint,
    });
    expect(added.status).toBe(201);
    const draft = await json('POST', '/api/admin/rulesets', { ...RULESET, name: 'same' });
    const sim = (decisions: unknown[]) =>
      json('POST', `/api/admin/rulesets/${draft.body.id}/simulate`, { decisions });
    const r = await sim([{ credential: c, transaction: { amount: 10 } }]);
    expect(r.status).toBe(200);
    expect(r.body.results[0]).toMatchObject({
      decision: 'BLOCK',
      active_decision: 'BLOCK',
      matched: ['known-bad'],
    });
    const bad = await sim([{}, { transaction: { amount: -1 } }]);
    expect(bad.status).toBe(400);
    expect(bad.body.issues.map((i: any) => i.path)).toEqual(['decisions[1].transaction.amount']);
    const pan = await sim([{ credential: { type: 'pan', number: '4111111111111111' } }]);
    expect(pan.status).toBe(400);
    expect(pan.body.error).toBe('pan_not_allowed');
  });
});

describe('auth and scopes', () => {
  it('401 without a token, 401 with a wrong one, 403 without the scope, then revocation at once', async () => {
    expect((await json('POST', '/api/decisions', {}, null)).status).toBe(401);
    expect((await json('POST', '/api/decisions', {}, 'vgl_nope')).status).toBe(401);
    const t = await json('POST', '/api/admin/tokens', {
      name: 'reader',
      scopes: ['decisions:read'],
    });
    expect(t.status).toBe(201);
    expect(t.body.token).toMatch(/^vgl_/);
    const reader = t.body.token as string;
    const denied = await json('POST', '/api/decisions', {}, reader);
    expect(denied).toMatchObject({ status: 403, body: { error: 'forbidden' } });
    expect((await json('GET', '/api/admin/rulesets', undefined, reader)).status).toBe(403);
    expect((await json('GET', '/api/decisions/dec_0000000000', undefined, reader)).status).toBe(
      404,
    );
    expect((await json('DELETE', `/api/admin/tokens/${t.body.id}`)).status).toBe(204);
    expect((await json('GET', '/api/decisions/dec_0000000000', undefined, reader)).status).toBe(
      401,
    );
  });

  it.each([
    ['POST', '/api/decisions', 'decisions:write'],
    ['GET', '/api/decisions/dec_0', 'decisions:read'],
    ['POST', '/api/decisions/dec_0/resolve', 'cases:write'],
    ['POST', '/api/events', 'events:write'],
    ['GET', '/api/admin/rulesets', 'admin:rulesets:read'],
    ['POST', '/api/admin/rulesets', 'admin:rulesets:write'],
    ['GET', '/api/admin/blacklist', 'admin:blacklist:read'],
    ['POST', '/api/admin/blacklist', 'admin:blacklist:write'],
    ['POST', '/api/admin/tokens', 'admin:tokens:write'],
  ] as const)('%s %s needs %s', async (method, url, scope) => {
    const other = scope === 'decisions:read' ? 'decisions:write' : 'decisions:read';
    const wrong = (await json('POST', '/api/admin/tokens', { name: 'w', scopes: [other] })).body
      .token as string;
    const right = (await json('POST', '/api/admin/tokens', { name: 'r', scopes: [scope] })).body
      .token as string;
    expect((await json(method, url, method === 'GET' ? undefined : {}, wrong)).status).toBe(403);
    expect([200, 201, 400, 404]).toContain(
      (await json(method, url, method === 'GET' ? undefined : {}, right)).status,
    );
  });

  it('a token grants at most the scopes it holds', async () => {
    const minter = (
      await json('POST', '/api/admin/tokens', { name: 'm', scopes: ['admin:tokens:write'] })
    ).body.token as string;
    const more = await json(
      'POST',
      '/api/admin/tokens',
      { name: 'x', scopes: ['admin:tokens:write', 'decisions:write'] },
      minter,
    );
    expect(more.status).toBe(403);
    expect(more.body.scopes).toEqual(['decisions:write']);
    const same = await json(
      'POST',
      '/api/admin/tokens',
      { name: 'y', scopes: ['admin:tokens:write'] },
      minter,
    );
    expect(same.status).toBe(201);
    // Revoking is held to the same rule: not a token with scopes the minter lacks.
    const bigger = await json('POST', '/api/admin/tokens', {
      name: 'z',
      scopes: ['decisions:write', 'admin:tokens:write'],
    });
    const denied = await json('DELETE', `/api/admin/tokens/${bigger.body.id}`, undefined, minter);
    expect(denied.status).toBe(403);
    expect(denied.body.scopes).toEqual(['decisions:write']);
    expect(
      (await json('DELETE', `/api/admin/tokens/${same.body.id}`, undefined, minter)).status,
    ).toBe(204);
    expect((await json('DELETE', `/api/admin/tokens/${bigger.body.id}`)).status).toBe(204);
  });

  it('keeps the metrics bounded whatever contexts callers send', async () => {
    for (let i = 0; i < 260; i++) {
      const r = await rt.app.inject({
        method: 'POST',
        url: '/api/decisions',
        headers: auth(),
        payload: { context: `flood-${i}` },
      });
      expect(r.statusCode).toBe(200);
    }
    const text = (await rt.app.inject({ url: '/metrics' })).body;
    const contexts = new Set(
      [...text.matchAll(/^vigil_decisions_total\{context="([^"]+)"/gm)].map((m) => m[1]),
    );
    expect(contexts.has('_other')).toBe(true);
    // A context with a ruleset keeps its own series even after the flood.
    const before = contexts.size;
    const rs = await json('POST', '/api/admin/rulesets', { ...RULESET, context: 'late-ctx' });
    await json('POST', `/api/admin/rulesets/${rs.body.id}/activate`);
    await json('POST', '/api/decisions', { context: 'late-ctx' });
    const after = (await rt.app.inject({ url: '/metrics' })).body;
    expect(after).toMatch(/^vigil_decisions_total\{context="late-ctx"/m);
    expect(before).toBeLessThanOrEqual(201);
  });

  it('serves health, readiness, metrics and the OpenAPI document without a token', async () => {
    expect((await rt.app.inject({ url: '/healthz' })).statusCode).toBe(200);
    const ready = JSON.parse((await rt.app.inject({ url: '/readyz' })).body);
    expect(ready.dependencies.store).toMatchObject({ state: 'up', detail: 'sqlite' });
    const metrics = (await rt.app.inject({ url: '/metrics' })).body;
    expect(metrics).toMatch(/vigil_decisions_total\{context="checkout",outcome="BLOCK"\} \d+/);
    const spec = JSON.parse((await rt.app.inject({ url: '/openapi.json' })).body);
    expect(Object.keys(spec.paths)).toContain('/api/decisions');
  });
});

describe('/api/authz/{context} (nginx auth_request, Envoy ext_authz)', () => {
  it('needs a token, answers 200 with the decision in headers, 403 when blocked', async () => {
    const noToken = await rt.app.inject({ method: 'GET', url: '/api/authz/checkout' });
    expect(noToken.statusCode).toBe(401);
    const ok = await rt.app.inject({
      method: 'GET',
      url: '/api/authz/checkout',
      headers: { ...auth(), 'x-original-uri': '/cart' },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['x-vigil-decision']).toBeDefined();
    expect(String(ok.headers['x-vigil-decision-id'])).toMatch(/^dec_/);
    // A default ruleset that blocks everything makes the check answer 403.
    const blockAll = await json('POST', '/api/admin/rulesets', {
      name: 'deny',
      context: 'gate',
      rules: [
        {
          id: 'deny',
          type: 'condition',
          action: 'BLOCK',
          condition: { not: { eq: { path: '$.never', value: 1 } } },
        },
      ],
    });
    await json('POST', `/api/admin/rulesets/${blockAll.body.id}/activate`);
    const blocked = await rt.app.inject({ method: 'GET', url: '/api/authz/gate', headers: auth() });
    expect(blocked.statusCode).toBe(403);
    expect(blocked.headers['x-vigil-decision']).toBe('BLOCK');
  });
});
