import { describe, expect, it } from 'vitest';
import { httpKind } from '../../../integrations/kinds/http.ts';
import { renderAction } from '../../../integrations/template.ts';

const action = {
  action_id: 'open-ticket',
  method: 'POST',
  path: '/tickets/{{decision.id}}',
  headers: { 'X-Case': '{{decision.id}}' },
  body: { title: 'Review {{decision.id}}', amount: '$.transaction.amount' },
};
const ctx = { decision: { id: 'dec_1' }, transaction: { amount: 500 } };

function call(a: Record<string, unknown> = action) {
  const { action_id: _id, ...fields } = a;
  return {
    settings: {},
    action: a as typeof action,
    payload: renderAction(fields, ctx),
    idempotencyKey: 'wf:dec_1:step',
    nowMs: 0,
  };
}

describe('the generic http kind', () => {
  it('builds the rendered request with the idempotency key', () => {
    expect(httpKind.build(call())).toEqual({
      method: 'POST',
      path: '/tickets/dec_1',
      headers: {
        accept: 'application/json',
        'x-case': 'dec_1',
        'idempotency-key': 'wf:dec_1:step',
        'content-type': 'application/json',
      },
      body: JSON.stringify({ title: 'Review dec_1', amount: 500 }),
    });
  });

  it('sends no body on GET, and keeps a rendered path on the same origin', () => {
    const get = httpKind.build(call({ ...action, method: 'GET' }));
    expect(get.body).toBeUndefined();
    const escaped = httpKind.build(call({ ...action, path: '/{{decision.id}}' }));
    expect(escaped.path).toBe('/dec_1');
    const odd = { ...call(), payload: { path: '//evil.example/x' } };
    expect(httpKind.build(odd).path).toBe('/tickets/{{decision.id}}');
  });

  it('strict action and settings schemas; reserved headers refused', () => {
    expect(httpKind.action.safeParse({ method: 'POST', path: '/x', extra: 1 }).success).toBe(false);
    expect(
      httpKind.action.safeParse({ method: 'POST', path: '/x', headers: { Host: 'evil' } }).success,
    ).toBe(false);
    expect(httpKind.action.safeParse({ method: 'POST', path: 'x' }).success).toBe(false);
    expect(httpKind.settings.safeParse({}).success).toBe(true);
    expect(httpKind.settings.safeParse({ token: 'x' }).success).toBe(false);
    expect(httpKind.secretSettings).toEqual([]);
  });

  it('ref is the answer id; the test call is a GET of / or test_path', () => {
    expect(httpKind.ref!(201, { id: 'T-1' })).toBe('T-1');
    expect(httpKind.ref!(201, { id: 7 })).toBe('7');
    expect(httpKind.ref!(201, 'text')).toBeUndefined();
    expect(httpKind.testCall({}, 0)).toMatchObject({ method: 'GET', path: '/' });
    expect(httpKind.testCall({ test_path: '/health' }, 0)).toMatchObject({ path: '/health' });
  });
});
