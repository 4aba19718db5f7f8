// The registry of built-in integration kinds (CONTRACT §3), keyed by the document's `kind`.
import type { IntegrationKind } from './kind.ts';
import { httpKind } from './http.ts';
import { webhookKind } from './webhook.ts';
import { slackKind } from './slack.ts';
import { pagerdutyKind } from './pagerduty.ts';
import { jiraKind } from './jira.ts';
import { servicenowKind } from './servicenow.ts';

export const KINDS: Record<IntegrationKind['name'], IntegrationKind> = {
  http: httpKind,
  webhook: webhookKind,
  slack: slackKind,
  pagerduty: pagerdutyKind,
  jira: jiraKind,
  servicenow: servicenowKind,
};

export const kindNames = Object.keys(KINDS) as IntegrationKind['name'][];
