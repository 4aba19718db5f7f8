// `pagerduty`: an Events API v2 `trigger` (POST /v2/enqueue on https://events.pagerduty.com).
// PagerDuty deduplicates on `dedup_key`: the step's idempotency key, so a retry lands on the
// alert the first attempt opened instead of opening a second one.
import { z } from 'zod';
import type { ActionCall, IntegrationKind, OutboundRequest } from './kind.ts';
import {
  actionOf,
  field,
  isRecord,
  jsonRequest,
  keyToken,
  parsedBody,
  requiredText,
  settingsOf,
  truncate,
  VISIBLE_ASCII,
} from './util.ts';

const SEVERITIES = ['critical', 'error', 'warning', 'info'] as const;

export const pagerdutySettings = z.strictObject({
  /** The integration key of an Events API v2 integration on a PagerDuty service. */
  routing_key: z
    .string()
    .regex(/^[A-Za-z0-9]{20,64}$/, 'must be the 32-character Events API v2 integration key'),
  /** `payload.source`: the system the alert is about, unless an action names another. */
  source: z.string().min(1).max(255).default('vigil'),
});

export const pagerdutyAction = z.strictObject({
  /** The alert's summary (a template); PagerDuty keeps 1024 characters. */
  summary: z.string().min(1),
  severity: z.enum(SEVERITIES).default('warning'),
  source: z.string().min(1).max(255).optional(),
  component: z.string().max(255).optional(),
  group: z.string().max(255).optional(),
  class: z.string().max(255).optional(),
  /** `payload.custom_details` (a template): free-form detail shown on the alert. */
  custom_details: z.unknown().optional(),
});

const SUMMARY_MAX = 1024;
const DEDUP_MAX = 255;
const TEST_DEDUP_KEY = 'vigil-test';

function enqueue(
  raw: unknown,
  dedupKey: string,
  payload: Record<string, unknown>,
): OutboundRequest {
  const settings = settingsOf('pagerduty', pagerdutySettings, raw);
  return jsonRequest('POST', '/v2/enqueue', {
    routing_key: settings.routing_key,
    event_action: 'trigger',
    dedup_key: dedupKey,
    payload: { source: settings.source, ...payload },
  });
}

export const pagerdutyKind: IntegrationKind = {
  name: 'pagerduty',
  settings: pagerdutySettings,
  secretSettings: ['routing_key'],
  action: pagerdutyAction,
  build(call: ActionCall): OutboundRequest {
    const action = actionOf('pagerduty', pagerdutyAction, call);
    const { declared } = action;
    const payload: Record<string, unknown> = {
      summary: truncate(requiredText(action, 'summary', call), SUMMARY_MAX),
      severity: declared.severity,
      timestamp: new Date(call.nowMs).toISOString(),
    };
    if (declared.source !== undefined) payload.source = declared.source;
    if (declared.component !== undefined) payload.component = declared.component;
    if (declared.group !== undefined) payload.group = declared.group;
    if (declared.class !== undefined) payload.class = declared.class;
    const details = field(action, 'custom_details');
    if (details !== undefined) payload.custom_details = details;
    return enqueue(
      call.settings,
      keyToken(call.idempotencyKey, DEDUP_MAX, { allowed: VISIBLE_ASCII }),
      payload,
    );
  },
  /** The 202 answer's `dedup_key`: the alert a later resolve or acknowledge would address. */
  ref(status: number, body: unknown): string | undefined {
    const parsed = parsedBody(body);
    if (status < 200 || status >= 300 || !isRecord(parsed)) return undefined;
    return typeof parsed.dedup_key === 'string' ? parsed.dedup_key : undefined;
  },
  // There is no dry-run in the Events API: this triggers a real `info` alert. The fixed dedup key
  // folds every test into one alert, which the on-call resolves once.
  testCall(settings: unknown, nowMs: number): OutboundRequest {
    return enqueue(settings, TEST_DEDUP_KEY, {
      summary: 'Vigil integration test: safe to resolve',
      severity: 'info',
      timestamp: new Date(nowMs).toISOString(),
    });
  },
};
