// `servicenow`: an incident through the Table API (POST /api/now/table/incident). The Table API
// takes no idempotency key, so the step's key goes in the incident's `correlation_id` and is
// looked up before creating: a retry after a lost answer finds the incident the first attempt
// opened. Auth (basic, or a bearer OAuth token) is the integration's `auth`.
import { z } from 'zod';
import type { ActionCall, IntegrationKind, Lookup, OutboundRequest } from './kind.ts';
import {
  actionOf,
  field,
  getRequest,
  isRecord,
  jsonRequest,
  keyToken,
  lookupFailed,
  parsedBody,
  requiredText,
  settingsOf,
  text,
  truncate,
} from './util.ts';

const INCIDENTS = '/api/now/table/incident';

export const servicenowSettings = z.strictObject({
  /** `correlation_display`: names the system that opened the incident. */
  correlation_display: z.string().min(1).max(100).default('Vigil'),
  /** sys_id or name of the group new incidents go to, unless an action names another. */
  assignment_group: z.string().min(1).max(100).optional(),
});

// ServiceNow's 1 (high) to 3 (low) scale; sent as the strings the Table API returns.
const level = z.union([z.literal(1), z.literal(2), z.literal(3)]);

export const servicenowAction = z.strictObject({
  /** The incident's title (a template); the incident table keeps 160 characters. */
  short_description: z.string().min(1),
  /** The incident's body (a template). */
  description: z.string().default(''),
  urgency: level.default(2),
  impact: level.default(2),
  category: z.string().min(1).max(40).optional(),
  assignment_group: z.string().min(1).max(100).optional(),
});

const SHORT_MAX = 160;
// `correlation_id` is a 100-character string column.
const CORRELATION_MAX = 100;

/** The `correlation_id` that carries an idempotency key: identical for every retry of a step. */
export function servicenowCorrelationId(idempotencyKey: string): string {
  return keyToken(idempotencyKey, CORRELATION_MAX);
}

export const servicenowKind: IntegrationKind = {
  name: 'servicenow',
  settings: servicenowSettings,
  secretSettings: [],
  action: servicenowAction,
  build(call: ActionCall): OutboundRequest {
    const settings = settingsOf('servicenow', servicenowSettings, call.settings);
    const action = actionOf('servicenow', servicenowAction, call);
    const { declared } = action;
    const body: Record<string, unknown> = {
      short_description: truncate(requiredText(action, 'short_description', call), SHORT_MAX),
      description: text(field(action, 'description')),
      urgency: String(declared.urgency),
      impact: String(declared.impact),
      correlation_id: servicenowCorrelationId(call.idempotencyKey),
      correlation_display: settings.correlation_display,
    };
    if (declared.category !== undefined) body.category = declared.category;
    const group = declared.assignment_group ?? settings.assignment_group;
    if (group !== undefined) body.assignment_group = group;
    return jsonRequest('POST', INCIDENTS, body);
  },
  lookup(call: ActionCall): Lookup {
    settingsOf('servicenow', servicenowSettings, call.settings);
    // The token's characters (TOKEN_CHARS) hold no `^`, the encoded-query separator. The oldest
    // match: if two creates ever raced, every retry settles on the same incident.
    const query =
      `sysparm_query=${encodeURIComponent(`correlation_id=${servicenowCorrelationId(call.idempotencyKey)}^ORDERBYsys_created_on`)}` +
      '&sysparm_limit=1&sysparm_fields=sys_id%2Cnumber';
    return {
      request: getRequest(`${INCIDENTS}?${query}`),
      found(status: number, body: unknown): string | undefined {
        if (status < 200 || status >= 300) throw lookupFailed('servicenow', status);
        const parsed = parsedBody(body);
        if (!isRecord(parsed) || !Array.isArray(parsed.result)) return undefined;
        const first: unknown = parsed.result[0];
        return isRecord(first) && typeof first.sys_id === 'string' ? first.sys_id : undefined;
      },
    };
  },
  /**
   * The incident's `sys_id`, from the 201 answer `{result: {...}}`: stable and what every later
   * Table API call addresses (`/api/now/table/incident/{sys_id}`); `number` (INC0010001) is only
   * a display name.
   */
  ref(status: number, body: unknown): string | undefined {
    const parsed = parsedBody(body);
    if (status < 200 || status >= 300 || !isRecord(parsed) || !isRecord(parsed.result)) {
      return undefined;
    }
    return typeof parsed.result.sys_id === 'string' ? parsed.result.sys_id : undefined;
  },
  // Reads one incident's sys_id: proves the base URL, credentials and table ACL, writes nothing.
  testCall(settings: unknown): OutboundRequest {
    settingsOf('servicenow', servicenowSettings, settings);
    return getRequest(`${INCIDENTS}?sysparm_limit=1&sysparm_fields=sys_id`);
  },
};
