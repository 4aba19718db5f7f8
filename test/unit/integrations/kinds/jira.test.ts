import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { adfDoc, jiraIdempotencyLabel, jiraKind } from '../../../../integrations/kinds/jira.ts';
import type { ActionCall } from '../../../../integrations/kinds/kind.ts';
import { send } from './send.ts';

const BASE = 'https://jira.example';
const settings = jiraKind.settings.parse({ project_key: 'FRAUD' });
const IDEM = 'session-s1:dec_1:review-default.steps[1].ticket';

function call(over: Partial<ActionCall> = {}): ActionCall {
  const declared = jiraKind.action.parse({
    summary: 'Review {{decision.id}}',
    description: 'Outcome {{decision.outcome}}',
    labels: ['vigil', 'checkout'],
    priority: 'High',
  }) as Record<string, unknown>;
  return {
    settings,
    action: { action_id: 'create-issue', ...declared },
    payload: {
      ...declared,
      summary: 'Review dec_1',
      description: 'Outcome BLOCK\nrule velocity\n\nAmount 1250.00 EUR',
    },
    idempotencyKey: IDEM,
    nowMs: 1_700_000_000_000,
    ...over,
  };
}

const JQL =
  'project = "FRAUD" AND labels = "vigil-session-s1:dec_1:review-default.steps[1].ticket" ORDER BY created ASC';

beforeAll(() => nock.disableNetConnect());
afterEach(() => nock.cleanAll());
afterAll(() => nock.enableNetConnect());

describe('jira kind (Jira Cloud REST v3)', () => {
  it('looks the label up with /rest/api/3/search/jql, then creates the issue; ref = the issue key', async () => {
    const c = call();
    const lookup = jiraKind.lookup?.(c);
    expect(lookup).toBeDefined();
    const search = nock(BASE, { reqheaders: { accept: 'application/json' } })
      .get('/rest/api/3/search/jql')
      .query({ jql: JQL, fields: 'key', maxResults: '1' })
      .reply(200, { issues: [], isLast: true });
    const found = await send(BASE, lookup!.request);
    search.done();
    expect(lookup!.request.method).toBe('GET');
    expect(lookup!.request.body).toBeUndefined();
    expect(lookup!.found(found.status, found.body)).toBeUndefined();

    const create = nock(BASE, {
      reqheaders: { 'content-type': 'application/json', accept: 'application/json' },
    })
      .post('/rest/api/3/issue', {
        fields: {
          project: { key: 'FRAUD' },
          issuetype: { name: 'Task' },
          summary: 'Review dec_1',
          description: {
            type: 'doc',
            version: 1,
            content: [
              {
                type: 'paragraph',
                content: [
                  { type: 'text', text: 'Outcome BLOCK' },
                  { type: 'hardBreak' },
                  { type: 'text', text: 'rule velocity' },
                ],
              },
              { type: 'paragraph', content: [{ type: 'text', text: 'Amount 1250.00 EUR' }] },
            ],
          },
          labels: ['vigil', 'checkout', 'vigil-session-s1:dec_1:review-default.steps[1].ticket'],
          priority: { name: 'High' },
        },
      })
      .reply(201, {
        id: '10042',
        key: 'FRAUD-42',
        self: 'https://jira.example/rest/api/3/issue/10042',
      });
    const answer = await send(BASE, jiraKind.build(c));
    create.done();
    expect(answer.status).toBe(201);
    expect(jiraKind.ref?.(answer.status, answer.body)).toBe('FRAUD-42');
  });

  it('found(): the first issue of a non-empty answer, nothing for an empty one, a failure for non-2xx', () => {
    const lookup = jiraKind.lookup!(call());
    expect(
      lookup.found(200, {
        issues: [
          {
            id: '10042',
            key: 'FRAUD-42',
            self: 'https://jira.example/rest/api/3/issue/10042',
            fields: {},
          },
        ],
        isLast: true,
      }),
    ).toBe('FRAUD-42');
    // The enhanced search returns ids only when no field is asked for.
    expect(lookup.found(200, { issues: [{ id: '10042' }], isLast: true })).toBe('10042');
    expect(lookup.found(200, { issues: [], isLast: true })).toBeUndefined();
    expect(lookup.found(200, '{"issues":[{"id":"1","key":"FRAUD-1"}]}')).toBe('FRAUD-1');
    expect(() =>
      lookup.found(410, { errorMessages: ['The requested API has been removed.'] }),
    ).toThrow(expect.objectContaining({ code: 'lookup_failed', retryable: false, status: 410 }));
    expect(() => lookup.found(503, '')).toThrow(
      expect.objectContaining({ code: 'lookup_failed', retryable: true, status: 503 }),
    );
  });

  it('a lookup that finds the first attempt’s issue lets the caller skip the create', async () => {
    const lookup = jiraKind.lookup!(call({ nowMs: 1_700_000_060_000 }));
    const search = nock(BASE)
      .get('/rest/api/3/search/jql')
      .query({ jql: JQL, fields: 'key', maxResults: '1' })
      .reply(200, { issues: [{ id: '10042', key: 'FRAUD-42' }], isLast: true });
    const a = await send(BASE, lookup.request);
    search.done();
    expect(lookup.found(a.status, a.body)).toBe('FRAUD-42');
  });

  it('same key, same label; odd keys become a stable hashed label', () => {
    const label = (c: ActionCall) =>
      JSON.parse(jiraKind.build(c).body as string).fields.labels.at(-1);
    expect(label(call())).toBe(label(call({ nowMs: 1 })));
    expect(label(call())).toBe(jiraIdempotencyLabel(IDEM));
    expect(label(call({ idempotencyKey: 'session-s1:dec_1:alert' }))).not.toBe(label(call()));
    const odd = 'session-a "b" \\c:dec_1:ticket';
    expect(jiraIdempotencyLabel(odd)).toMatch(/^vigil-sha256-[0-9a-f]{64}$/);
    expect(jiraIdempotencyLabel(odd)).toBe(jiraIdempotencyLabel(odd));
    expect(jiraKind.lookup!(call({ idempotencyKey: odd })).request.path).toContain(
      encodeURIComponent(`labels = "${jiraIdempotencyLabel(odd)}"`),
    );
    // The key's own label is not added twice when an action already lists it.
    const dup = call();
    (dup.payload as Record<string, unknown>).labels = [jiraIdempotencyLabel(IDEM)];
    dup.action = { ...dup.action, labels: [jiraIdempotencyLabel(IDEM)] };
    expect(JSON.parse(jiraKind.build(dup).body as string).fields.labels).toEqual([
      jiraIdempotencyLabel(IDEM),
    ]);
  });

  it('summary is one line of at most 255; issue_type from the action overrides the setting', () => {
    const c = call({
      action: { ...call().action, issue_type: 'Bug' },
      payload: { summary: 'a\nb  ' + 'x'.repeat(400), description: '' },
    });
    const fields = JSON.parse(jiraKind.build(c).body as string).fields;
    expect(fields.summary.startsWith('a b x')).toBe(true);
    expect(fields.summary).toHaveLength(255);
    expect(fields.issuetype).toEqual({ name: 'Bug' });
    expect(fields.description).toEqual({ type: 'doc', version: 1, content: [] });
    expect(adfDoc('one')).toEqual({
      type: 'doc',
      version: 1,
      content: [{ type: 'paragraph', content: [{ type: 'text', text: 'one' }] }],
    });
  });

  it('testCall reads /rest/api/3/myself; schemas are strict', async () => {
    const scope = nock(BASE)
      .get('/rest/api/3/myself')
      .reply(200, { accountId: '5b10a2844c20165700ede21g', active: true });
    const a = await send(BASE, jiraKind.testCall(settings, 0));
    scope.done();
    expect(a.status).toBe(200);
    expect(jiraKind.secretSettings).toEqual([]);
    expect(settings).toEqual({ project_key: 'FRAUD', issue_type: 'Task' });
    expect(jiraKind.settings.safeParse({ project_key: 'fraud' }).success).toBe(false);
    expect(jiraKind.settings.safeParse({ project_key: 'FRAUD', api_token: 'x' }).success).toBe(
      false,
    );
    expect(jiraKind.action.safeParse({ summary: 's', labels: ['has space'] }).success).toBe(false);
    expect(() => jiraKind.build(call({ settings: {} }))).toThrow(
      expect.objectContaining({ code: 'invalid_settings' }),
    );
  });

  it('a summary that rendered blank names the case and step (the API refuses a blank one)', () => {
    const c = call();
    const req = jiraKind.build({ ...c, payload: { ...(c.payload as object), summary: '' } });
    const b = JSON.parse(req.body as string);
    expect(b.fields.summary).toBe(`Vigil: ${c.idempotencyKey}`);
  });
});
