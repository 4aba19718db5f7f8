// `slack`: a message through a Slack incoming webhook. The webhook URL's path is the credential
// (anyone holding it can post), so it is a secret setting; base_url is https://hooks.slack.com.
// Incoming webhooks take no idempotency key: a retry after a lost answer can post twice.
import { z } from 'zod';
import type { ActionCall, IntegrationKind, OutboundRequest } from './kind.ts';
import {
  actionOf,
  field,
  jsonRequest,
  requiredText,
  settingsOf,
  truncate,
  withoutHoles,
} from './util.ts';

export const slackSettings = z.strictObject({
  webhook_path: z
    .string()
    .regex(
      /^\/services\/[A-Z0-9]+\/[A-Z0-9]+\/[A-Za-z0-9]+$/,
      'must be the /services/T…/B…/… path of a Slack incoming webhook URL',
    ),
});
export type SlackSettings = z.infer<typeof slackSettings>;

export const slackAction = z.strictObject({
  /** The message text (a template); also the notification fallback when `blocks` are given. */
  text: z.string().min(1).max(40_000),
  /** Block Kit blocks (a template), passed through as given. */
  blocks: z.array(z.record(z.string(), z.unknown())).max(50).optional(),
});

// Slack truncates message text beyond 40,000 characters; cut it ourselves so nothing is refused.
const TEXT_MAX = 40_000;

function message(raw: unknown, body: Record<string, unknown>): OutboundRequest {
  const settings = settingsOf('slack', slackSettings, raw);
  return jsonRequest('POST', settings.webhook_path, body);
}

export const slackKind: IntegrationKind = {
  name: 'slack',
  settings: slackSettings,
  secretSettings: ['webhook_path'],
  action: slackAction,
  build(call: ActionCall): OutboundRequest {
    const action = actionOf('slack', slackAction, call);
    const body: Record<string, unknown> = {
      text: truncate(requiredText(action, 'text', call), TEXT_MAX),
    };
    const blocks = field(action, 'blocks');
    if (Array.isArray(blocks)) body.blocks = withoutHoles(blocks);
    return message(call.settings, body);
  },
  // Slack answers the plain text `ok`: nothing to reference.
  testCall(settings: unknown, nowMs: number): OutboundRequest {
    return message(settings, {
      text: `Vigil test message (${new Date(nowMs).toISOString()}): this integration can post here.`,
    });
  },
};
