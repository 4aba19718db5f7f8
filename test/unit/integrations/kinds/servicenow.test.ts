import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  servicenowCorrelationId,
  servicenowKind,
} from '../../../../integrations/kinds/servicenow.ts';
import type { ActionCall } from '../../../../integrations/kinds/kind.ts';
import { send } from './send.ts';

const BASE = 'https://servicenow.example';
const settings = servicenowKind.settings.parse({ assignment_group: 'Fraud Ops' });
const IDEM = 'session-s1:dec_1:review-default.steps[1].ticket';
const SYS_ID = '9d385017c611228701d22104cc95c371';

function call(over: Partial<ActionCall> = {}): ActionCall {
  const declared = servicenowKind.action.parse({
    short_description: 'Vigil {{decision.outcome}} {{decision.id}}',
    description: 'Rule {{decision.rule_id}}',
    urgency: 1,
    category: 'security',
  }) as Record<string, unknown>;
  return {
    settings,
    action: { action_id: 'open-incident', ...declared },
    payload: { ...declared, short_description: 'Vigil BLOCK dec_1', description: 'Rule velocity' },
    idempotencyKey: IDEM,
    nowMs: 1_700_000_000_000,
    ...over,
  };
}

const incident = {
  result: {
    sys_id: SYS_ID,
    number: 'INC0010001',
    short_description: 'Vigil BLOCK dec_1',
    correlation_id: IDEM,
    urgency: '1',
    impact: '2',
    state: '1',
  },
};

beforeAll(() => nock.disableNetConnect());
afterEach(() => nock.cleanAll());
afterAll(() => nock.enableNetConnect());

describe('servicenow kind (Table API)', () => {
  it('looks up correlation_id, then creates the incident; ref = sys_id', async () => {
    const c = call();
    const lookup = servicenowKind.lookup!(c);
    const search = nock(BASE, { reqheaders: { accept: 'application/json' } })
      .get('/api/now/table/incident')
      .query({
        sysparm_query: `correlation_id=${IDEM}^ORDERBYsys_created_on`,
        sysparm_limit: '1',
        sysparm_fields: 'sys_id,number',
      })
      .reply(200, { result: [] });
    const found = await send(BASE, lookup.request);
    search.done();
    expect(lookup.request.method).toBe('GET');
    expect(lookup.found(found.status, found.body)).toBeUndefined();

    const create = nock(BASE, {
      reqheaders: { 'content-type': 'application/json', accept: 'application/json' },
    })
      .post('/api/now/table/incident', {
        short_description: 'Vigil BLOCK dec_1',
        description: 'Rule velocity',
        urgency: '1',
        impact: '2',
        correlation_id: IDEM,
        correlation_display: 'Vigil',
        category: 'security',
        assignment_group: 'Fraud Ops',
      })
      .reply(201, incident);
    const answer = await send(BASE, servicenowKind.build(c));
    create.done();
    expect(answer.status).toBe(201);
    expect(servicenowKind.ref?.(answer.status, answer.body)).toBe(SYS_ID);
  });

  it('found(): sys_id of a non-empty answer, nothing for an empty one, a failure for non-2xx', async () => {
    const lookup = servicenowKind.lookup!(call());
    const search = nock(BASE)
      .get('/api/now/table/incident')
      .query(true)
      .reply(200, { result: [{ sys_id: SYS_ID, number: 'INC0010001' }] });
    const a = await send(BASE, lookup.request);
    search.done();
    expect(lookup.found(a.status, a.body)).toBe(SYS_ID);
    expect(lookup.found(200, { result: [] })).toBeUndefined();
    expect(lookup.found(200, JSON.stringify({ result: [{ sys_id: 'abc', number: 'INC1' }] }))).toBe(
      'abc',
    );
    expect(() =>
      lookup.found(401, {
        error: {
          message: 'User Not Authenticated',
          detail: 'Required to provide Auth information',
        },
        status: 'failure',
      }),
    ).toThrow(expect.objectContaining({ code: 'lookup_failed', retryable: false }));
    expect(() => lookup.found(429, '')).toThrow(expect.objectContaining({ retryable: true }));
  });

  it('the same key gives the same correlation_id; an unsafe or long key a stable hash', () => {
    const corr = (c: ActionCall) =>
      JSON.parse(servicenowKind.build(c).body as string).correlation_id;
    expect(corr(call())).toBe(corr(call({ nowMs: 5 })));
    expect(corr(call())).toBe(IDEM);
    expect(corr(call({ idempotencyKey: 'session-s1:dec_1:alert' }))).not.toBe(IDEM);
    // `^` separates encoded-query terms: such a key must not reach sysparm_query as is.
    const evil = 'session-x^ORcorrelation_idISNOTEMPTY:dec_1:ticket';
    const token = servicenowCorrelationId(evil);
    expect(token).toMatch(/^sha256-[0-9a-f]{64}$/);
    expect(corr(call({ idempotencyKey: evil }))).toBe(token);
    const q = new URL(BASE + servicenowKind.lookup!(call({ idempotencyKey: evil })).request.path);
    expect(q.searchParams.get('sysparm_query')).toBe(
      `correlation_id=${token}^ORDERBYsys_created_on`,
    );
    const long = 'session-' + 'y'.repeat(120) + ':dec_1:ticket';
    expect(servicenowCorrelationId(long).length).toBeLessThanOrEqual(100);
    expect(servicenowCorrelationId(long)).toBe(servicenowCorrelationId(long));
  });

  it('defaults: urgency and impact 2, no category, the settings’ group; short_description cut to 160', () => {
    const declared = servicenowKind.action.parse({ short_description: 's' }) as Record<
      string,
      unknown
    >;
    expect(declared).toEqual({ short_description: 's', description: '', urgency: 2, impact: 2 });
    const body = JSON.parse(
      servicenowKind.build(
        call({
          settings: servicenowKind.settings.parse({}),
          action: { action_id: 'x', ...declared },
          payload: { ...declared, short_description: 'z'.repeat(300) },
        }),
      ).body as string,
    );
    expect(body).toMatchObject({ urgency: '2', impact: '2', correlation_display: 'Vigil' });
    expect(body.short_description).toHaveLength(160);
    expect(body).not.toHaveProperty('category');
    expect(body).not.toHaveProperty('assignment_group');
  });

  it('testCall reads one incident sys_id; schemas are strict', async () => {
    const scope = nock(BASE)
      .get('/api/now/table/incident')
      .query({ sysparm_limit: '1', sysparm_fields: 'sys_id' })
      .reply(200, { result: [{ sys_id: SYS_ID }] });
    const a = await send(BASE, servicenowKind.testCall(settings, 0));
    scope.done();
    expect(a.status).toBe(200);
    expect(servicenowKind.secretSettings).toEqual([]);
    expect(servicenowKind.action.safeParse({ short_description: 's', urgency: 4 }).success).toBe(
      false,
    );
    expect(
      servicenowKind.action.safeParse({ short_description: 's', correlation_id: 'x' }).success,
    ).toBe(false);
    expect(servicenowKind.settings.safeParse({ password: 'x' }).success).toBe(false);
  });

  it('a short_description that rendered blank names the case and step (the API refuses a blank one)', () => {
    const c = call();
    const req = servicenowKind.build({
      ...c,
      payload: { ...(c.payload as object), short_description: '' },
    });
    const b = JSON.parse(req.body as string);
    expect(b.short_description).toBe(`Vigil: ${c.idempotencyKey}`);
  });
});
