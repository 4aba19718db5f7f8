import { createHmac, randomBytes } from 'node:crypto';
import nock from 'nock';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { webhookKind } from '../../../../integrations/kinds/webhook.ts';
import type { ActionCall } from '../../../../integrations/kinds/kind.ts';
import { send, seen, type Seen } from './send.ts';

const BASE = 'https://webhook.example';
const KEY_BYTES = randomBytes(32);
const SECRET = `whsec_${KEY_BYTES.toString('base64')}`;
const settings = webhookKind.settings.parse({ secret: SECRET, path: '/hooks/vigil' });
const action = {
  action_id: 'notify',
  ...(webhookKind.action.parse({
    event_type: 'vigil.case.opened',
    body: { decision: 'Review {{decision.id}}', amount: '$.transaction.amount' },
  }) as Record<string, unknown>),
};
const IDEM = 'session-s1:dec_1:review-default.steps[2].alert';

function call(over: Partial<ActionCall> = {}): ActionCall {
  return {
    settings,
    action,
    payload: {
      event_type: 'vigil.case.opened',
      body: { decision: 'Review dec_1', amount: 125000 },
    },
    idempotencyKey: IDEM,
    nowMs: Date.now(),
    ...over,
  };
}

beforeAll(() => nock.disableNetConnect());
afterEach(() => nock.cleanAll());
afterAll(() => nock.enableNetConnect());

async function deliver(c: ActionCall): Promise<Seen> {
  const req = webhookKind.build(c);
  let got: Seen | undefined;
  const scope = nock(BASE)
    .post('/hooks/vigil')
    .reply(async (r: Request) => {
      got = await seen(r);
      return [204, ''];
    });
  const answer = await send(BASE, req);
  expect(answer.status).toBe(204);
  scope.done();
  return got as Seen;
}

describe('webhook kind (Standard Webhooks)', () => {
  it('POSTs {type, timestamp, data} with webhook-id = the idempotency key, verified by the standardwebhooks library', async () => {
    const nowMs = Date.now();
    const sec = Math.floor(nowMs / 1000);
    const expected = {
      type: 'vigil.case.opened',
      timestamp: new Date(nowMs).toISOString(),
      data: { decision: 'Review dec_1', amount: 125000 },
    };
    let got: Seen | undefined;
    const scope = nock(BASE, {
      reqheaders: {
        'content-type': 'application/json',
        'webhook-id': IDEM,
        'webhook-timestamp': String(sec),
        'webhook-signature': /^v1,[A-Za-z0-9+/]{43}=$/,
      },
    })
      .post('/hooks/vigil', expected)
      .reply(async (r: Request) => {
        got = await seen(r);
        return [200, { received: true }];
      });
    const req = webhookKind.build(call({ nowMs }));
    expect(req.method).toBe('POST');
    expect(Object.keys(req.headers).sort()).toEqual([
      'content-type',
      'webhook-id',
      'webhook-signature',
      'webhook-timestamp',
    ]);
    const answer = await send(BASE, req);
    expect(answer.status).toBe(200);
    scope.done();

    const s = got as Seen;
    expect(s.body).toBe(JSON.stringify(expected));
    const verified = new Webhook(SECRET).verify(s.body, {
      'webhook-id': s.headers['webhook-id'] as string,
      'webhook-timestamp': s.headers['webhook-timestamp'] as string,
      'webhook-signature': s.headers['webhook-signature'] as string,
    });
    expect(verified).toEqual(expected);

    // The spec's construction by hand, independent of both the kind and the library.
    const mac = createHmac('sha256', KEY_BYTES).update(`${IDEM}.${sec}.${s.body}`).digest('base64');
    expect(s.headers['webhook-signature']).toBe(`v1,${mac}`);
    expect(new Webhook(SECRET).sign(IDEM, new Date(sec * 1000), s.body)).toBe(`v1,${mac}`);
    expect(webhookKind.ref).toBeUndefined();
  });

  it('a tampered body, another secret or an old timestamp fail verification', async () => {
    const s = await deliver(call());
    const headers = {
      'webhook-id': s.headers['webhook-id'] as string,
      'webhook-timestamp': s.headers['webhook-timestamp'] as string,
      'webhook-signature': s.headers['webhook-signature'] as string,
    };
    const tampered = s.body.replace('125000', '1');
    expect(tampered).not.toBe(s.body);
    expect(() => new Webhook(SECRET).verify(tampered, headers)).toThrow(WebhookVerificationError);
    const other = `whsec_${randomBytes(32).toString('base64')}`;
    expect(() => new Webhook(other).verify(s.body, headers)).toThrow(WebhookVerificationError);

    // Signed correctly but ten minutes ago: past the receivers' 5-minute replay window.
    const old = await deliver(call({ nowMs: Date.now() - 10 * 60_000 }));
    expect(() =>
      new Webhook(SECRET).verify(old.body, {
        'webhook-id': old.headers['webhook-id'] as string,
        'webhook-timestamp': old.headers['webhook-timestamp'] as string,
        'webhook-signature': old.headers['webhook-signature'] as string,
      }),
    ).toThrow(/too old/i);
  });

  it('a retry carries the same webhook-id (new timestamp, new signature)', () => {
    const first = webhookKind.build(call({ nowMs: 1_700_000_000_000 }));
    const retry = webhookKind.build(call({ nowMs: 1_700_000_030_000 }));
    expect(retry.headers['webhook-id']).toBe(first.headers['webhook-id']);
    expect(retry.headers['webhook-id']).toBe(IDEM);
    expect(retry.headers['webhook-timestamp']).toBe('1700000030');
    expect(retry.headers['webhook-signature']).not.toBe(first.headers['webhook-signature']);
    const other = webhookKind.build(call({ idempotencyKey: 'session-s1:dec_1:notify' }));
    expect(other.headers['webhook-id']).not.toBe(first.headers['webhook-id']);
  });

  it('a key with characters a header cannot carry becomes a stable SHA-256 token that still verifies', async () => {
    const key = 'session-caf\u00e9 \u2603:dec_1:alert';
    const a = webhookKind.build(call({ idempotencyKey: key }));
    const b = webhookKind.build(call({ idempotencyKey: key, nowMs: Date.now() + 1000 }));
    expect(a.headers['webhook-id']).toMatch(/^sha256-[0-9a-f]{64}$/);
    expect(b.headers['webhook-id']).toBe(a.headers['webhook-id']);
    const s = await deliver(call({ idempotencyKey: key }));
    expect(() =>
      new Webhook(SECRET).verify(s.body, {
        'webhook-id': s.headers['webhook-id'] as string,
        'webhook-timestamp': s.headers['webhook-timestamp'] as string,
        'webhook-signature': s.headers['webhook-signature'] as string,
      }),
    ).not.toThrow();
  });

  it('a JSONPath that found nothing gives empty data, never the template text', () => {
    const req = webhookKind.build(call({ payload: { event_type: 'vigil.case.opened' } }));
    expect(JSON.parse(req.body as string).data).toEqual({});
  });

  it('path defaults to /; testCall sends a signed vigil.test event', async () => {
    const minimal = webhookKind.settings.parse({ secret: SECRET });
    expect(minimal).toEqual({ secret: SECRET, path: '/' });
    const nowMs = Date.now();
    const req = webhookKind.testCall(minimal, nowMs);
    expect(req.path).toBe('/');
    let got: Seen | undefined;
    const scope = nock(BASE)
      .post('/', {
        type: 'vigil.test',
        timestamp: new Date(nowMs).toISOString(),
        data: { test: true },
      })
      .reply(async (r: Request) => {
        got = await seen(r);
        return [200, ''];
      });
    await send(BASE, req);
    scope.done();
    const s = got as Seen;
    expect(s.headers['webhook-id']).toBe(`vigil-test-${nowMs}`);
    expect(() =>
      new Webhook(SECRET).verify(s.body, {
        'webhook-id': s.headers['webhook-id'] as string,
        'webhook-timestamp': s.headers['webhook-timestamp'] as string,
        'webhook-signature': s.headers['webhook-signature'] as string,
      }),
    ).not.toThrow();
  });

  it('schemas are strict and refuse weak or malformed secrets without echoing them', () => {
    const short = `whsec_${randomBytes(16).toString('base64')}`;
    const unprefixed = randomBytes(32).toString('base64');
    for (const secret of [short, unprefixed, 'whsec_!!not base64!!']) {
      const r = webhookKind.settings.safeParse({ secret });
      expect(r.success).toBe(false);
      expect(JSON.stringify(r.error)).not.toContain(secret);
      expect(String(r.error?.message)).not.toContain(secret);
      let thrown: unknown;
      try {
        webhookKind.build(call({ settings: { secret, path: '/' } }));
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toMatchObject({ code: 'invalid_settings', retryable: false });
      expect(String((thrown as Error).message)).not.toContain(secret);
      expect(JSON.stringify(thrown)).not.toContain(secret);
    }
    expect(webhookKind.settings.safeParse({ secret: SECRET, extra: 1 }).success).toBe(false);
    expect(webhookKind.action.safeParse({ event_type: 'x', body: {}, path: '/' }).success).toBe(
      false,
    );
    expect(webhookKind.action.safeParse({ event_type: 'has space' }).success).toBe(false);
    expect(webhookKind.secretSettings).toEqual(['secret']);
  });

  it('an invalid action fails with invalid_action and no secret in the message', () => {
    let thrown: unknown;
    try {
      webhookKind.build(call({ action: { action_id: 'notify', body: {} } }));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toMatchObject({ code: 'invalid_action' });
    expect(String((thrown as Error).message)).toContain('event_type');
    expect(String((thrown as Error).message)).not.toContain(SECRET);
    expect(String((thrown as Error).message)).not.toContain(KEY_BYTES.toString('base64'));
  });
});
