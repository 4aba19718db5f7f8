import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pagerdutyKind } from '../../../../integrations/kinds/pagerduty.ts';
import type { ActionCall } from '../../../../integrations/kinds/kind.ts';
import { send } from './send.ts';

const BASE = 'https://pagerduty.example';
const ROUTING_KEY = 'R0abcdef0123456789abcdef01234567';
const settings = pagerdutyKind.settings.parse({ routing_key: ROUTING_KEY });
const IDEM = 'session-s1:dec_1:review-default.steps[2].alert';

function call(over: Partial<ActionCall> = {}): ActionCall {
  const declared = pagerdutyKind.action.parse({
    summary: 'Vigil {{decision.outcome}} for {{decision.id}}',
    severity: 'error',
    component: 'checkout',
    custom_details: { amount: '$.transaction.amount', rule: '{{decision.rule_id}}' },
  }) as Record<string, unknown>;
  return {
    settings,
    action: { action_id: 'page', ...declared },
    payload: {
      ...declared,
      summary: 'Vigil BLOCK for dec_1',
      custom_details: { amount: 125000, rule: 'velocity' },
    },
    idempotencyKey: IDEM,
    nowMs: Date.UTC(2025, 0, 2, 3, 4, 5, 678),
    ...over,
  };
}

beforeAll(() => nock.disableNetConnect());
afterEach(() => nock.cleanAll());
afterAll(() => nock.enableNetConnect());

describe('pagerduty kind (Events API v2)', () => {
  it('POSTs a trigger to /v2/enqueue with dedup_key = the idempotency key; ref = the answer’s dedup_key', async () => {
    const scope = nock(BASE, {
      reqheaders: { 'content-type': 'application/json', accept: 'application/json' },
    })
      .post('/v2/enqueue', {
        routing_key: ROUTING_KEY,
        event_action: 'trigger',
        dedup_key: IDEM,
        payload: {
          source: 'vigil',
          summary: 'Vigil BLOCK for dec_1',
          severity: 'error',
          timestamp: '2025-01-02T03:04:05.678Z',
          component: 'checkout',
          custom_details: { amount: 125000, rule: 'velocity' },
        },
      })
      .reply(202, { status: 'success', message: 'Event processed', dedup_key: IDEM });
    const req = pagerdutyKind.build(call());
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/v2/enqueue');
    expect(req.headers).toEqual({ 'content-type': 'application/json', accept: 'application/json' });
    const answer = await send(BASE, req);
    scope.done();
    expect(answer.status).toBe(202);
    expect(pagerdutyKind.ref?.(answer.status, answer.body)).toBe(IDEM);
  });

  it('ref reads realistic answers: JSON text too, nothing from errors', () => {
    const ok = { status: 'success', message: 'Event processed', dedup_key: 'abc' };
    expect(pagerdutyKind.ref?.(202, JSON.stringify(ok))).toBe('abc');
    expect(pagerdutyKind.ref?.(400, { status: 'invalid event', errors: ['x'] })).toBeUndefined();
    expect(pagerdutyKind.ref?.(202, 'not json')).toBeUndefined();
  });

  it('a retry sends the same dedup_key; another step another one', () => {
    const a = JSON.parse(pagerdutyKind.build(call()).body as string);
    const b = JSON.parse(pagerdutyKind.build(call({ nowMs: Date.now() })).body as string);
    expect(b.dedup_key).toBe(a.dedup_key);
    const c = JSON.parse(
      pagerdutyKind.build(call({ idempotencyKey: 'session-s1:dec_1:page' })).body as string,
    );
    expect(c.dedup_key).not.toBe(a.dedup_key);
    const long = 'session-' + 'x'.repeat(300) + ':dec_1:alert';
    const d1 = JSON.parse(pagerdutyKind.build(call({ idempotencyKey: long })).body as string);
    const d2 = JSON.parse(pagerdutyKind.build(call({ idempotencyKey: long })).body as string);
    expect(d1.dedup_key).toMatch(/^sha256-[0-9a-f]{64}$/);
    expect(d2.dedup_key).toBe(d1.dedup_key);
  });

  it('defaults: severity warning, source from settings, summary cut to 1024', () => {
    const declared = pagerdutyKind.action.parse({ summary: 's' }) as Record<string, unknown>;
    expect(declared).toEqual({ summary: 's', severity: 'warning' });
    const s2 = pagerdutyKind.settings.parse({ routing_key: ROUTING_KEY, source: 'vigil-eu' });
    const body = JSON.parse(
      pagerdutyKind.build(
        call({
          settings: s2,
          action: { action_id: 'p', ...declared },
          payload: { ...declared, summary: 'y'.repeat(2000) },
        }),
      ).body as string,
    );
    expect(body.payload.source).toBe('vigil-eu');
    expect(body.payload.severity).toBe('warning');
    expect(body.payload.summary).toHaveLength(1024);
    expect(body.payload.custom_details).toBeUndefined();
  });

  it('testCall: an info trigger with the fixed dedup key vigil-test', async () => {
    const scope = nock(BASE)
      .post('/v2/enqueue', {
        routing_key: ROUTING_KEY,
        event_action: 'trigger',
        dedup_key: 'vigil-test',
        payload: {
          source: 'vigil',
          summary: 'Vigil integration test: safe to resolve',
          severity: 'info',
          timestamp: '2025-01-02T03:04:05.678Z',
        },
      })
      .reply(202, { status: 'success', message: 'Event processed', dedup_key: 'vigil-test' });
    await send(BASE, pagerdutyKind.testCall(settings, Date.UTC(2025, 0, 2, 3, 4, 5, 678)));
    scope.done();
  });

  it('the routing key is secret and never in errors', () => {
    expect(pagerdutyKind.secretSettings).toEqual(['routing_key']);
    const bad = 'R0abc-def0123456789abcdef0123456';
    const r = pagerdutyKind.settings.safeParse({ routing_key: bad });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error)).not.toContain(bad);
    for (const c of [
      call({ settings: { routing_key: bad } }),
      call({ action: { action_id: 'p', severity: 'loud' } }),
    ]) {
      let thrown: unknown;
      try {
        pagerdutyKind.build(c);
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(Error);
      expect(String((thrown as Error).message)).not.toContain(bad);
      expect(String((thrown as Error).message)).not.toContain(ROUTING_KEY);
      expect(JSON.stringify(thrown)).not.toContain(ROUTING_KEY);
    }
  });

  it('a summary that rendered blank names the case and step (the API refuses a blank one)', () => {
    const c = call();
    const req = pagerdutyKind.build({ ...c, payload: { ...(c.payload as object), summary: '' } });
    const b = JSON.parse(req.body as string);
    expect(b.payload.summary).toBe(`Vigil: ${c.idempotencyKey}`);
  });
});
