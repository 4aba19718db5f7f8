import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { slackKind } from '../../../../integrations/kinds/slack.ts';
import type { ActionCall } from '../../../../integrations/kinds/kind.ts';
import { send } from './send.ts';

const BASE = 'https://slack.example';
const HOOK = '/services/T0123ABCD/B0456EFGH/Xq9ZsecretTokenAbc123';
const settings = slackKind.settings.parse({ webhook_path: HOOK });
const blocks = [
  { type: 'section', text: { type: 'mrkdwn', text: '*Review* {{decision.id}}' } },
  { type: 'context', elements: [{ type: 'mrkdwn', text: 'amount $.transaction.amount' }] },
];

function call(over: Partial<ActionCall> = {}): ActionCall {
  return {
    settings,
    action: {
      action_id: 'post',
      ...(slackKind.action.parse({ text: 'Review {{decision.id}}', blocks }) as Record<
        string,
        unknown
      >),
    },
    payload: {
      text: 'Review dec_1 (BLOCK, 1250.00 EUR)',
      blocks: [{ type: 'section', text: { type: 'mrkdwn', text: '*Review* dec_1' } }],
    },
    idempotencyKey: 'session-s1:dec_1:alert',
    nowMs: 1_700_000_000_000,
    ...over,
  };
}

beforeAll(() => nock.disableNetConnect());
afterEach(() => nock.cleanAll());
afterAll(() => nock.enableNetConnect());

describe('slack kind (incoming webhook)', () => {
  it('POSTs {text, blocks} as JSON to the secret webhook path; Slack answers ok and there is no ref', async () => {
    const scope = nock(BASE, {
      reqheaders: { 'content-type': 'application/json', accept: 'application/json' },
    })
      .post(HOOK, {
        text: 'Review dec_1 (BLOCK, 1250.00 EUR)',
        blocks: [{ type: 'section', text: { type: 'mrkdwn', text: '*Review* dec_1' } }],
      })
      .reply(200, 'ok', { 'content-type': 'text/html' });
    const req = slackKind.build(call());
    expect(req).toEqual({
      method: 'POST',
      path: HOOK,
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: '{"text":"Review dec_1 (BLOCK, 1250.00 EUR)","blocks":[{"type":"section","text":{"type":"mrkdwn","text":"*Review* dec_1"}}]}',
    });
    const answer = await send(BASE, req);
    expect(answer).toEqual({ status: 200, body: 'ok' });
    scope.done();
    expect(slackKind.ref).toBeUndefined();
  });

  it('text only: no blocks key; a number rendered from a JSONPath is sent as text', async () => {
    const scope = nock(BASE).post(HOOK, { text: '125000' }).reply(200, 'ok');
    const req = slackKind.build(
      call({
        action: { action_id: 'post', text: '$.transaction.amount' },
        payload: { text: 125000 },
      }),
    );
    await send(BASE, req);
    scope.done();
  });

  it('overlong text is cut to Slack’s 40,000 characters', () => {
    const req = slackKind.build(call({ payload: { text: 'x'.repeat(50_000) } }));
    const text = JSON.parse(req.body as string).text as string;
    expect(text.length).toBe(40_000);
    expect(text.endsWith('…')).toBe(true);
  });

  it('testCall posts a test message', async () => {
    const scope = nock(BASE)
      .post(HOOK, {
        text: 'Vigil test message (2023-11-14T22:13:20.000Z): this integration can post here.',
      })
      .reply(200, 'ok');
    await send(BASE, slackKind.testCall(settings, 1_700_000_000_000));
    scope.done();
  });

  it('the webhook path is secret: refused paths are never echoed in errors', () => {
    expect(slackKind.secretSettings).toEqual(['webhook_path']);
    const bad = '/services/T0123ABCD/B0456EFGH/has-dash-secret';
    const r = slackKind.settings.safeParse({ webhook_path: bad });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error)).not.toContain('has-dash-secret');
    let thrown: unknown;
    try {
      slackKind.build(call({ settings: { webhook_path: bad } }));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toMatchObject({ code: 'invalid_settings', retryable: false });
    expect(String((thrown as Error).message)).not.toContain('has-dash-secret');
    // A valid secret never appears in an action error either.
    try {
      slackKind.build(call({ action: { action_id: 'post' } }));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toMatchObject({ code: 'invalid_action' });
    expect(String((thrown as Error).message)).not.toContain('Xq9ZsecretTokenAbc123');
    expect(slackKind.settings.safeParse({ webhook_path: HOOK, channel: '#x' }).success).toBe(false);
    expect(slackKind.action.safeParse({ text: 'x', channel: '#x' }).success).toBe(false);
  });

  it('a text that rendered blank names the case and step (Slack refuses no_text); holes leave blocks', () => {
    const req = slackKind.build(
      call({
        payload: {
          text: '  ',
          blocks: [{ type: 'context', elements: [null, { type: 'mrkdwn', text: 'x' }] }],
        },
      }),
    );
    expect(JSON.parse(req.body as string)).toEqual({
      text: 'Vigil: session-s1:dec_1:alert',
      blocks: [{ type: 'context', elements: [{ type: 'mrkdwn', text: 'x' }] }],
    });
  });
});
