import { describe, expect, it } from 'vitest';
import { compileTemplate, renderAction, renderString } from '../../../integrations/template.ts';

const ctx = {
  decision: { id: 'dec_1', decision: 'REVIEW' },
  transaction: { amount: 14999, currency: 'EUR' },
  customer: { email: 'a@example.com', tags: ['vip', 'new'] },
  items: [{ sku: 'a' }, { sku: 'b' }],
};

describe('templates', () => {
  it('replaces {{dotted.names}} inside strings; missing names render empty', () => {
    expect(renderString('Review {{decision.id}} ({{ decision.decision }})', ctx)).toBe(
      'Review dec_1 (REVIEW)',
    );
    expect(renderString('x{{nope.nothing}}y', ctx)).toBe('xy');
    expect(renderString('{{customer.tags}}', ctx)).toBe('["vip","new"]');
    expect(renderString('{{customer.tags.1}}', ctx)).toBe('new');
    expect(renderString('{{__proto__.x}}{{constructor}}', ctx)).toBe('');
    // Not a placeholder: no code, no helpers.
    expect(renderString('{{ decision.id | upper }}', ctx)).toBe('{{ decision.id | upper }}');
  });

  it('replaces string leaves that are exactly a JSONPath by the value', () => {
    expect(
      renderAction(
        {
          title: 'Review {{decision.id}}',
          amount: '$.transaction.amount',
          skus: '$.items[*].sku',
          missing: '$.nothing.here',
          list: ['$.customer.email', '$.nope'],
          literal: 'costs $5',
          n: 3,
        },
        ctx,
      ),
    ).toEqual({
      title: 'Review dec_1',
      amount: 14999,
      skus: ['a', 'b'],
      list: ['a@example.com', null],
      literal: 'costs $5',
      n: 3,
    });
  });

  it('leaves a string that does not parse as a path as text', () => {
    expect(renderAction('$.a[?(@.x)]', ctx)).toBe('$.a[?(@.x)]');
  });

  it('compiles backend request templates once; missing values are left out', () => {
    const render = compileTemplate({
      email: '$.customer.email',
      amount: '$.transaction.amount',
      gone: '$.customer.phone',
      nested: { cur: '$.transaction.currency', fixed: 'v2' },
    });
    expect(render(ctx)).toEqual({
      email: 'a@example.com',
      amount: 14999,
      nested: { cur: 'EUR', fixed: 'v2' },
    });
    expect(JSON.stringify(render({}))).toBe('{"nested":{"fixed":"v2"}}');
  });
});
