import { describe, expect, it } from 'vitest';
import { LIMITS, parseRuleset, parseWindow, type Issue } from '../../../rulesets/schema.ts';

const gt = (path = '$.transaction.amount', value: unknown = 1) => ({ gt: { path, value } });
const cond = (condition: unknown, extra: Record<string, unknown> = {}) => ({
  id: 'r',
  type: 'condition',
  action: 'BLOCK',
  condition,
  ...extra,
});
const doc = (rules: unknown[], extra: Record<string, unknown> = {}) => ({
  name: 'Checkout v7',
  context: 'checkout',
  rules,
  ...extra,
});
const backend = (extra: Record<string, unknown> = {}) => ({
  id: 'risk',
  type: 'backend',
  integration: 'acme-risk',
  backend_id: 'score',
  ...extra,
});
const group = (extra: Record<string, unknown> = {}) => ({
  id: 'g',
  type: 'backend_group',
  strategy: 'parallel',
  members: [{ integration: 'acme-risk', backend_id: 'score' }],
  ...extra,
});

function issuesOf(d: unknown, edition: 'core' | 'connect' = 'connect'): Issue[] {
  const r = parseRuleset(d, { edition });
  if (r.ok) throw new Error('expected the document to be refused');
  return r.issues;
}

// [what is wrong, the document, the issue path that must be named]
const MALFORMED: [string, unknown, string][] = [
  ['not an object', 'nope', ''],
  ['no name', { context: 'checkout', rules: [] }, 'name'],
  ['blank name', doc([], { name: '   ' }), 'name'],
  ['name too long', doc([], { name: 'n'.repeat(201) }), 'name'],
  ['context with spaces', doc([], { context: 'check out' }), 'context'],
  ['context in upper case (no decision can send it)', doc([], { context: 'Checkout' }), 'context'],
  ['rules not an array', doc([], { rules: {} }), 'rules'],
  ['unknown top-level key', doc([], { rule: [] }), 'rule'],
  [
    'too many rules',
    doc(Array.from({ length: 1001 }, (_, k) => cond(gt(), { id: `r${k}` }))),
    'rules',
  ],
  ['rule not an object', doc([42]), 'rules[0]'],
  ['unknown rule type', doc([{ id: 'r', type: 'script', action: 'BLOCK' }]), 'rules[0].type'],
  ['missing id', doc([{ type: 'condition', action: 'BLOCK', condition: gt() }]), 'rules[0].id'],
  ['id with spaces', doc([cond(gt(), { id: 'big amount' })]), 'rules[0].id'],
  ['duplicate ids', doc([cond(gt()), cond(gt())]), 'rules[1].id'],
  ['bad action', doc([cond(gt(), { action: 'DENY' })]), 'rules[0].action'],
  ['missing action', doc([{ id: 'r', type: 'condition', condition: gt() }]), 'rules[0].action'],
  ['enabled not boolean', doc([cond(gt(), { enabled: 'yes' })]), 'rules[0].enabled'],
  ['live not boolean', doc([cond(gt(), { live: 0 })]), 'rules[0].live'],
  ['unknown rule key', doc([cond(gt(), { priority: 1 })]), 'rules[0].priority'],
  [
    'missing condition',
    doc([{ id: 'r', type: 'condition', action: 'BLOCK' }]),
    'rules[0].condition',
  ],
  [
    'unknown operator',
    doc([cond({ contains: { path: '$.a', value: 1 } })]),
    'rules[0].condition.contains',
  ],
  [
    'two operators in one node',
    doc([cond({ ...gt(), lt: { path: '$.a', value: 1 } })]),
    'rules[0].condition',
  ],
  ['empty expression', doc([cond({})]), 'rules[0].condition'],
  ['gt without path', doc([cond({ gt: { value: 1 } })]), 'rules[0].condition.gt.path'],
  [
    'gt path not a string',
    doc([cond({ gt: { path: 7, value: 1 } })]),
    'rules[0].condition.gt.path',
  ],
  ['gt on a string value', doc([cond(gt('$.a', '100'))]), 'rules[0].condition.gt.value'],
  ['eq without value', doc([cond({ eq: { path: '$.a' } })]), 'rules[0].condition.eq.value'],
  [
    'eq null never matches',
    doc([cond({ eq: { path: '$.a', value: null } })]),
    'rules[0].condition.eq.value',
  ],
  [
    'unknown key in a comparison',
    doc([cond({ gt: { path: '$.a', value: 1, strict: true } })]),
    'rules[0].condition.gt.strict',
  ],
  ['path without $', doc([cond(gt('transaction.amount'))]), 'rules[0].condition.gt.path'],
  ['path too long', doc([cond(gt(`$.${'a'.repeat(260)}`))]), 'rules[0].condition.gt.path'],
  ['in without values', doc([cond({ in: { path: '$.a' } })]), 'rules[0].condition.in.values'],
  [
    'in with empty values',
    doc([cond({ in: { path: '$.a', values: [] } })]),
    'rules[0].condition.in.values',
  ],
  [
    'in with too many values',
    doc([cond({ in: { path: '$.a', values: Array.from({ length: 10_001 }, (_, k) => k) } })]),
    'rules[0].condition.in.values',
  ],
  ['and not an array', doc([cond({ and: gt() })]), 'rules[0].condition.and'],
  ['empty or', doc([cond({ or: [] })]), 'rules[0].condition.or'],
  [
    'bad term deep inside',
    doc([cond({ and: [gt(), { or: [gt(), { not: { lt: { path: '$..a', value: 1 } } }] }] })]),
    'rules[0].condition.and[1].or[1].not.lt.path',
  ],
  [
    'nested deeper than 32',
    doc([cond(Array.from({ length: 40 }).reduce<unknown>((e) => ({ not: e }), gt()))]),
    'rules[0].condition.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not',
  ],
  [
    'velocity without threshold',
    doc([cond({ velocity: { field: '$.device.ip', window: '1h' } })]),
    'rules[0].condition.velocity',
  ],
  [
    'velocity with two thresholds',
    doc([cond({ velocity: { field: '$.device.ip', window: '1h', gt: 1, lt: 5 } })]),
    'rules[0].condition.velocity',
  ],
  [
    'velocity negative threshold',
    doc([cond({ velocity: { field: '$.device.ip', window: '1h', gt: -1 } })]),
    'rules[0].condition.velocity.gt',
  ],
  [
    'velocity window without unit',
    doc([cond({ velocity: { field: '$.device.ip', window: '60', gt: 1 } })]),
    'rules[0].condition.velocity.window',
  ],
  [
    'velocity window over 90d',
    doc([cond({ velocity: { field: '$.device.ip', window: '91d', gt: 1 } })]),
    'rules[0].condition.velocity.window',
  ],
  [
    'velocity on a non-countable field',
    doc([cond({ velocity: { field: '$.customer.email', window: '1h', gt: 1 } })]),
    'rules[0].condition.velocity.field',
  ],
  [
    'velocity distinct with a wildcard',
    doc([
      cond({ velocity: { field: '$.device.ip', window: '1h', gt: 1, distinct: '$.items[*].sku' } }),
    ]),
    'rules[0].condition.velocity.distinct',
  ],
  [
    'velocity_fields with a wildcard',
    doc([], { velocity_fields: ['$.items[*].sku'] }),
    'velocity_fields[0]',
  ],
  [
    'blacklist without fields',
    doc([{ id: 'bl', type: 'blacklist', action: 'BLOCK', fields: [] }]),
    'rules[0].fields',
  ],
  [
    'blacklist with a bad field path',
    doc([{ id: 'bl', type: 'blacklist', action: 'BLOCK', fields: ['$.device.ip', '$[?(@.x)]'] }]),
    'rules[0].fields[1]',
  ],
  [
    'blacklist populate_on an unknown event',
    doc([
      {
        id: 'bl',
        type: 'blacklist',
        action: 'BLOCK',
        fields: ['$.device.ip'],
        populate_on: ['dispute'],
      },
    ]),
    'rules[0].populate_on[0]',
  ],
  [
    'blacklist ttl zero',
    doc([
      { id: 'bl', type: 'blacklist', action: 'BLOCK', fields: ['$.device.ip'], ttl_seconds: 0 },
    ]),
    'rules[0].ttl_seconds',
  ],
  ['backend with an action', doc([backend({ action: 'BLOCK' })]), 'rules[0].action'],
  [
    'backend without integration',
    doc([backend({ integration: undefined })]),
    'rules[0].integration',
  ],
  [
    'backend integration not a slug',
    doc([backend({ integration: '../etc' })]),
    'rules[0].integration',
  ],
  ['backend bad on_error', doc([backend({ on_error: 'retry' })]), 'rules[0].on_error'],
  ['backend timeout not an integer', doc([backend({ timeout_ms: 1.5 })]), 'rules[0].timeout_ms'],
  ['backend timeout over a minute', doc([backend({ timeout_ms: 600_000 })]), 'rules[0].timeout_ms'],
  ['group bad strategy', doc([group({ strategy: 'race' })]), 'rules[0].strategy'],
  ['group bad merge', doc([group({ merge: 'majority' })]), 'rules[0].merge'],
  ['group without members', doc([group({ members: [] })]), 'rules[0].members'],
  [
    'group member without backend_id',
    doc([group({ members: [{ integration: 'a' }] })]),
    'rules[0].members[0].backend_id',
  ],
  [
    'group member weight zero',
    doc([
      group({ strategy: 'split', members: [{ integration: 'a', backend_id: 'b', weight: 0 }] }),
    ]),
    'rules[0].members[0].weight',
  ],
  [
    'group with only shadow members',
    doc([group({ members: [{ integration: 'a', backend_id: 'b', live: false }] })]),
    'rules[0].members',
  ],
];

describe('parseRuleset: malformed documents name the offending path', () => {
  it('has at least 25 cases', () => expect(MALFORMED.length).toBeGreaterThanOrEqual(25));

  it.each(MALFORMED)('%s → %s', (_what, d, path) => {
    const issues = issuesOf(d);
    expect(issues.map((i) => i.path)).toContain(path);
    for (const i of issues) expect(i.message).toMatch(/\S/);
  });

  it('reports every issue, not just the first', () => {
    const issues = issuesOf(
      doc([
        cond(gt('$..x')),
        cond({ lt: { path: '$.a', value: 'x' } }, { id: 'r2' }),
        { id: 'r3', type: '?' },
      ]),
    );
    expect(issues.map((i) => i.path)).toEqual([
      'rules[0].condition.gt.path',
      'rules[1].condition.lt.value',
      'rules[2].type',
    ]);
  });

  it('caps the number of issues', () => {
    const rules = Array.from({ length: 500 }, (_, k) => cond(gt('nope'), { id: `r${k}` }));
    expect(issuesOf(doc(rules)).length).toBeLessThanOrEqual(LIMITS.issues);
  });

  it('names the duplicate and the first use', () => {
    const issues = issuesOf(
      doc([cond(gt(), { id: 'a' }), cond(gt(), { id: 'b' }), cond(gt(), { id: 'a' })]),
    );
    expect(issues).toEqual([{ path: 'rules[2].id', message: expect.stringContaining('rules[0]') }]);
  });
});

describe('parseRuleset: JSONPath that could run code is refused at upload', () => {
  const INJECTIONS: [string, RegExp][] = [
    ['$..[?(@.x)]', /recursive descent/],
    ['$[?(@.amount > 0)]', /filter expression/],
    ['$.items[?(@.price>1)].sku', /filter expression/],
    ['$[(1+1)]', /script expression/],
    ['$.a[(@.length-1)]', /script expression/],
    ['$..a', /recursive descent/],
    ["$['constructor']", /not allowed/],
    ['$.__proto__.polluted', /not allowed/],
    ["$['x;process.exit()']", /looks like a script/],
    ["$['a'](1)", /script syntax/],
    ['$.a.b()', /script syntax/],
    ['$.a[0:2]', /slice/],
    ['$.a[0,1]', /union/],
    ['@.a', /must start with/],
    ['$.a[*][*][*][*][*]', /wildcards/],
    ['$.a.', /ends with/],
  ];
  it.each(INJECTIONS)('%s', (path, message) => {
    const issues = issuesOf(doc([cond({ eq: { path, value: 1 } })]));
    expect(issues).toHaveLength(1);
    expect(issues[0]!.path).toBe('rules[0].condition.eq.path');
    expect(issues[0]!.message).toMatch(message);
  });

  it('names the offending token in the message', () => {
    const [issue] = issuesOf(doc([cond({ eq: { path: '$.items[?(@.x)].y', value: 1 } })]));
    expect(issue!.message).toContain('[?(@.x)]');
  });
});

describe('parseRuleset: edition gate', () => {
  it('refuses backend and backend_group rules on core with edition_required', () => {
    const r = parseRuleset(doc([cond(gt()), backend(), group()]), { edition: 'core' });
    expect(r).toEqual({
      ok: false,
      error: 'edition_required',
      edition: 'connect',
      issues: [
        { path: 'rules[1].type', message: expect.stringMatching(/Connect/) },
        { path: 'rules[2].type', message: expect.stringMatching(/Connect/) },
      ],
    });
  });

  it('accepts them on connect, and core accepts documents without them', () => {
    expect(parseRuleset(doc([backend(), group()]), { edition: 'connect' }).ok).toBe(true);
    expect(parseRuleset(doc([cond(gt())]), { edition: 'core' }).ok).toBe(true);
  });

  it('gates before other validation: fixing the rest would not help on core', () => {
    const r = parseRuleset(doc([backend({ on_error: 'nope' })]), { edition: 'core' });
    expect(r.ok === false && r.error).toBe('edition_required');
  });
});

describe('parseRuleset: valid documents', () => {
  const full = {
    name: 'Checkout v7',
    context: 'checkout',
    description: 'the contract example',
    velocity_fields: ['$.customer.email'],
    rules: [
      {
        id: 'trusted',
        type: 'condition',
        action: 'ALLOW',
        condition: { in: { path: '$.customer.id', values: ['cus_vip1'] } },
      },
      {
        id: 'known-bad',
        type: 'blacklist',
        action: 'BLOCK',
        fields: ['$.credential_fingerprint', '$.device.ip'],
        ttl_seconds: 604800,
        populate_on: ['fraud_report', 'chargeback'],
      },
      {
        id: 'card-testing',
        type: 'condition',
        action: 'BLOCK',
        condition: {
          and: [
            gt('$.transaction.amount', 500),
            { velocity: { field: '$.credential_fingerprint', window: '1h', gt: 5 } },
          ],
        },
      },
      {
        id: 'many-cards',
        type: 'condition',
        action: 'REVIEW',
        condition: {
          velocity: {
            field: '$.device.ip',
            distinct: '$.credential_fingerprint',
            window: '24h',
            gte: 4,
          },
        },
      },
      {
        id: 'email-busy',
        type: 'condition',
        action: 'REVIEW',
        live: false,
        condition: { velocity: { field: "$['customer']['email']", window: '7d', gte: 10 } },
      },
      backend({ id: 'risk-api', on_error: 'allow', timeout_ms: 150 }),
      group({
        id: 'second-opinion',
        merge: 'most_severe',
        on_error: 'review',
        timeout_ms: 200,
        members: [
          { integration: 'acme-risk', backend_id: 'score' },
          { integration: 'ipcheck', backend_id: 'ip', live: false },
        ],
      }),
    ],
  };

  it('accepts the contract example and fills defaults', () => {
    const r = parseRuleset(full, { edition: 'connect' });
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    const [trusted, , , , , risk, second] = r.value.rules;
    expect(trusted).toMatchObject({ enabled: true, live: true });
    expect(risk).toMatchObject({ on_error: 'allow', async: false, timeout_ms: 150 });
    expect(second).toMatchObject({
      merge: 'most_severe',
      members: [
        { live: true, weight: 1 },
        { live: false, weight: 1 },
      ],
    });
    expect(r.value.velocity_fields).toEqual(['$.customer.email']);
  });

  it('is idempotent: a parsed document parses again to itself (stored documents are re-parsed)', () => {
    const once = parseRuleset(full, { edition: 'connect' });
    if (!once.ok) throw new Error('invalid');
    const twice = parseRuleset(JSON.parse(JSON.stringify(once.value)), { edition: 'connect' });
    expect(twice).toEqual(once);
  });

  it('drops the fields the API adds when showing a ruleset, so a fetched document can be sent back', () => {
    const r = parseRuleset(
      { ...full, id: 'rs_1', status: 'DRAFT', version: 3, created_at: 'x' },
      { edition: 'connect' },
    );
    expect(r.ok && Object.keys(r.value)).toEqual([
      'name',
      'context',
      'rules',
      'description',
      'velocity_fields',
    ]);
  });

  it('accepts member names with dashes, quoted names, indexes and wildcards', () => {
    const paths = [
      '$.backends.acme-risk.score.outcome',
      "$['billing']['zip code']",
      '$.items[0].sku',
      '$.items[-1].sku',
      '$.items[*].sku',
      '$.items.*.tags[*]',
      '$',
    ];
    for (const path of paths) {
      expect(
        parseRuleset(doc([cond({ eq: { path, value: 'x' } })]), { edition: 'connect' }).ok,
        path,
      ).toBe(true);
    }
  });

  it('parses windows', () => {
    expect(parseWindow('30s')).toBe(30_000);
    expect(parseWindow('15m')).toBe(900_000);
    expect(parseWindow('1h')).toBe(3_600_000);
    expect(parseWindow('90d')).toBe(90 * 86_400_000);
    for (const w of ['0s', '1w', '1.5h', '-1h', '91d', '', '1 h', '01h'])
      expect(parseWindow(w), w).toBeUndefined();
  });
});
