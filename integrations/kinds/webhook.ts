// `webhook`: a Standard Webhooks (standardwebhooks.com) signed POST. The receiver verifies the
// signature with any Standard Webhooks library and recognises a retry by its `webhook-id`, which
// is the step's idempotency key.
import { createHmac } from 'node:crypto';
import { z } from 'zod';
import type { ActionCall, IntegrationKind, OutboundRequest } from './kind.ts';
import { VISIBLE_ASCII, actionOf, field, keyToken, settingsOf } from './util.ts';

const SECRET_PREFIX = 'whsec_';

/** The HMAC key inside a `whsec_<base64>` secret, or undefined when it is not one. */
function secretKey(secret: string): Buffer | undefined {
  if (!secret.startsWith(SECRET_PREFIX)) return undefined;
  const b64 = secret.slice(SECRET_PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) return undefined;
  const key = Buffer.from(b64, 'base64');
  // The spec asks for 24 to 64 random bytes.
  return key.length >= 24 && key.length <= 64 ? key : undefined;
}

export const webhookSettings = z.strictObject({
  // A fixed message: the value must never be echoed back.
  secret: z.string().refine((s) => secretKey(s) !== undefined, {
    message: 'must be whsec_ followed by the base64 of 24 to 64 random bytes',
  }),
  path: z
    .string()
    .max(2048)
    .regex(/^\/[^\s#]*$/, 'must start with / and hold no spaces or fragment')
    .default('/'),
});
export type WebhookSettings = z.infer<typeof webhookSettings>;

export const webhookAction = z.strictObject({
  event_type: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,128}$/, 'letters, digits, _ . - (e.g. vigil.case.opened)'),
  /** The event's `data`: a template (`{{…}}` placeholders and `$.…` leaves). */
  body: z.unknown().default({}),
});

/** `webhook-id` is a header value the receiver stores and compares: a plain bounded token. */
const ID_MAX = 255;

/** `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`. */
export function signWebhook(key: Buffer, id: string, timestampSec: number, body: string): string {
  const mac = createHmac('sha256', key).update(`${id}.${timestampSec}.${body}`, 'utf8');
  return `v1,${mac.digest('base64')}`;
}

function signedRequest(
  raw: unknown,
  id: string,
  type: string,
  data: unknown,
  nowMs: number,
): OutboundRequest {
  const settings = settingsOf('webhook', webhookSettings, raw);
  // The schema only accepts secrets secretKey() decodes.
  const key = secretKey(settings.secret) as Buffer;
  const timestampSec = Math.floor(nowMs / 1000);
  // The payload shape the spec recommends: a dotted type, an ISO timestamp and the data.
  const body = JSON.stringify({ type, timestamp: new Date(nowMs).toISOString(), data });
  return {
    method: 'POST',
    path: settings.path,
    body,
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(timestampSec),
      'webhook-signature': signWebhook(key, id, timestampSec, body),
    },
  };
}

export const webhookKind: IntegrationKind = {
  name: 'webhook',
  settings: webhookSettings,
  secretSettings: ['secret'],
  action: webhookAction,
  build(call: ActionCall): OutboundRequest {
    const action = actionOf('webhook', webhookAction, call);
    const data = field(action, 'body') ?? {};
    const id = keyToken(call.idempotencyKey, ID_MAX, { allowed: VISIBLE_ASCII });
    return signedRequest(call.settings, id, action.declared.event_type, data, call.nowMs);
  },
  testCall(settings: unknown, nowMs: number): OutboundRequest {
    return signedRequest(settings, `vigil-test-${nowMs}`, 'vigil.test', { test: true }, nowMs);
  },
};
