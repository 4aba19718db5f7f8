// The playbook document (CONTRACT §4) and the pure helpers the case workflow runs it with.
import { describe, expect, it } from 'vitest';
import {
  evaluateCondition,
  parseDuration,
  parsePlaybook,
  playbookMatches,
  valueAt,
  type Condition,
  type Playbook,
} from '../../rulesets/playbook.ts';

const CONTRACT_EXAMPLE = {
  name: 'review-default',
  on: { decision: ['REVIEW'], contexts: ['checkout'] },
  steps: [
    { enrich: { integration: 'ipcheck', backend_id: 'ip' } },
    { ticket: { integration: 'jira', action_id: 'create-issue' } },
    {
      alert: {
        integration: 'slack',
        action_id: 'post',
        condition: { gte: { path: '$.transaction.amount', value: 500000 } },
      },
    },
    { wait_for_resolution: { timeout: '72h', on_timeout: 'escalate' } },
  ],
  on_resolution: {
    reject: [
      { blacklist_add: { field_path: '$.credential_fingerprint', ttl_seconds: 15552000 } },
      { action: { integration: 'merchant', action_id: 'cancel-order' } },
    ],
    accept: [{ action: { integration: 'merchant', action_id: 'release-order' } }],
  },
  after_decision: [{ action: { integration: 'merchant-hook', action_id: 'notify' } }],
  retry: { initial_interval: '1s', backoff: 2, maximum_interval: '5m', maximum_attempts: 20 },
};

function issues(doc: unknown): { path: string; message: string }[] {
  const r = parsePlaybook(doc);
  if (r.ok) throw new Error('expected invalid_playbook');
  expect(r.error.error).toBe('invalid_playbook');
  return r.error.issues;
}

describe('playbook document', () => {
  it('accepts the contract example as is', () => {
    const r = parsePlaybook(CONTRACT_EXAMPLE);
    expect(r).toEqual({ ok: true, playbook: CONTRACT_EXAMPLE });
  });

  it('accepts a user workflow step by name, and its {name} form', () => {
    const doc = {
      ...CONTRACT_EXAMPLE,
      steps: [{ workflow: 'myWorkflow' }, { workflow: { name: 'other' } }],
    };
    const r = parsePlaybook(doc);
    expect(r.ok && r.playbook.steps).toEqual([{ workflow: 'myWorkflow' }, { workflow: 'other' }]);
  });

  it('defaults on_timeout to escalate', () => {
    const r = parsePlaybook({
      ...CONTRACT_EXAMPLE,
      steps: [{ wait_for_resolution: { timeout: '2s' } }],
    });
    expect(r.ok && r.playbook.steps).toEqual([
      { wait_for_resolution: { timeout: '2s', on_timeout: 'escalate' } },
    ]);
  });

  it.each([
    [{ steps: [{ ticket: { integration: 'jira' } }] }, 'steps[0].ticket.action_id'],
    [{ steps: [{ tikcet: { integration: 'jira', action_id: 'x' } }] }, 'steps[0].tikcet'],
    [{ steps: [{ enrich: { integration: 'a', backend_id: 'b' }, ticket: {} }] }, 'steps[0]'],
    [
      { steps: [{ wait_for_resolution: { timeout: '72 hours' } }] },
      'steps[0].wait_for_resolution.timeout',
    ],
    [
      { steps: [{ wait_for_resolution: { timeout: '1h', on_timeout: 'ignore' } }] },
      'steps[0].wait_for_resolution.on_timeout',
    ],
    [
      {
        steps: [
          {
            alert: {
              integration: 's',
              action_id: 'p',
              condition: { and: [{ gt: { path: '$.a', value: 'x' } }] },
            },
          },
        ],
      },
      'steps[0].alert.condition.and[0].gt.value',
    ],
    [
      {
        steps: [
          {
            action: {
              integration: 's',
              action_id: 'p',
              condition: { eq: { path: '$..a[?(@.x)]', value: 1 } },
            },
          },
        ],
      },
      'steps[0].action.condition.eq.path',
    ],
    [
      {
        steps: [
          {
            alert: {
              integration: 's',
              action_id: 'p',
              condition: { velocity: { field: '$.device.ip', window: '1h', gt: 3 } },
            },
          },
        ],
      },
      'steps[0].alert.condition.velocity',
    ],
    [
      { after_decision: [{ wait_for_resolution: { timeout: '1h' } }] },
      'after_decision[0].wait_for_resolution',
    ],
    [{ on: { decision: ['ALLOW'] } }, 'on.decision[0]'],
    [{ retry: { backoff: 0.5 } }, 'retry.backoff'],
    [{ retry: { initial_interval: '10s', maximum_interval: '1s' } }, 'retry.maximum_interval'],
    [
      {
        steps: [
          { wait_for_resolution: { timeout: '1h' } },
          { wait_for_resolution: { timeout: '2h' } },
        ],
      },
      'steps[1].wait_for_resolution',
    ],
    [{ blacklist: true }, 'blacklist'],
  ])('refuses %j at %s', (patch, path) => {
    const found = issues({ ...CONTRACT_EXAMPLE, ...patch });
    expect(found.map((i) => i.path)).toContain(path);
    for (const i of found) expect(i.message).toBeTruthy();
  });

  it('matches on outcome and context (no contexts: every context)', () => {
    const pb = CONTRACT_EXAMPLE as unknown as Playbook;
    expect(playbookMatches(pb, 'REVIEW', 'checkout')).toBe(true);
    expect(playbookMatches(pb, 'REVIEW', 'login')).toBe(false);
    expect(playbookMatches(pb, 'BLOCK', 'checkout')).toBe(false);
    expect(playbookMatches({ ...pb, on: { decision: ['BLOCK'] } }, 'BLOCK', 'login')).toBe(true);
  });
});

describe('conditions (CONTRACT §1 semantic 7)', () => {
  const data = {
    transaction: { amount: 600000, currency: 'EUR' },
    customer: { id: 'cus_1', tags: ['vip', 'b2b'] },
    enrichment: { 'ip-check': { ip: { outcome: 'REVIEW', response: { score: 80 } } } },
    nothing: null,
  };
  const cases: [Condition, boolean][] = [
    [{ gte: { path: '$.transaction.amount', value: 500000 } }, true],
    [{ lt: { path: '$.transaction.amount', value: 500000 } }, false],
    [{ gt: { path: '$.transaction.currency', value: 1 } }, false],
    [{ eq: { path: '$.enrichment.ip-check.ip.outcome', value: 'REVIEW' } }, true],
    [{ gte: { path: '$.enrichment.ip-check.ip.response.score', value: 75 } }, true],
    [{ eq: { path: '$.customer.tags', value: ['vip', 'b2b'] } }, true],
    [{ eq: { path: '$.customer.tags[1]', value: 'b2b' } }, true],
    [{ neq: { path: '$.missing', value: 'x' } }, false],
    [{ neq: { path: '$.nothing', value: 'x' } }, false],
    [{ eq: { path: '$.nothing', value: null } }, false],
    [{ neq: { path: '$.customer.id', value: 'cus_2' } }, true],
    [{ in: { path: '$.customer.id', values: ['cus_0', 'cus_1'] } }, true],
    [{ in: { path: '$.missing', values: [null] } }, false],
    [{ not: { eq: { path: '$.missing', value: 1 } } }, true],
    [
      {
        and: [
          { gte: { path: '$.transaction.amount', value: 1 } },
          {
            or: [
              { eq: { path: '$.customer.id', value: 'x' } },
              { eq: { path: '$.transaction.currency', value: 'EUR' } },
            ],
          },
        ],
      },
      true,
    ],
  ];
  it.each(cases)('%j → %s', (expr, expected) => {
    expect(evaluateCondition(expr, data)).toBe(expected);
  });

  it('reads simple paths only', () => {
    expect(valueAt(data, '$.customer.tags[0]')).toBe('vip');
    expect(valueAt(data, '$.customer.tags.0')).toBeUndefined();
    expect(valueAt(data, '$..id')).toBeUndefined();
    expect(
      valueAt({ a: Object.create({ inherited: 1 }) as object }, '$.a.inherited'),
    ).toBeUndefined();
  });

  it('parses durations', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('2s')).toBe(2000);
    expect(parseDuration('72h')).toBe(259_200_000);
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('0s')).toBeUndefined();
    expect(parseDuration('1y')).toBeUndefined();
    expect(parseDuration('400d')).toBeUndefined();
  });
});
