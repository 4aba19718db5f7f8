// Small pure helpers shared by the built-in kinds.
import { createHash } from 'node:crypto';
import type { z } from 'zod';
import type { ActionCall, OutboundRequest } from './kind.ts';

/**
 * What a kind throws. The shape matches activities/deps.ts `ActionError` so the invoker can pass
 * it on. Messages name fields, never their values: settings may hold secrets.
 */
export class KindError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly status?: number;
  constructor(code: string, message: string, opts: { retryable?: boolean; status?: number } = {}) {
    super(`${code}: ${message}`);
    this.name = 'KindError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
    if (opts.status !== undefined) this.status = opts.status;
  }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The action as declared (defaults applied, for its plain fields) and as rendered (for its
 * template fields). The invoker renders the whole action and passes it as `payload`; without
 * one the declared values stand in, so a kind also builds from an unrendered action.
 */
export function actionOf<T extends Record<string, unknown>>(
  kind: string,
  schema: z.ZodType<T>,
  call: ActionCall,
): { declared: T; rendered: Record<string, unknown> } {
  const { action_id: actionId, ...fields } = call.action;
  const parsed = schema.safeParse(fields);
  if (!parsed.success) {
    const where = parsed.error.issues.map((i) => i.path.join('.') || '(action)').join(', ');
    throw new KindError('invalid_action', `${kind} action ${actionId} is invalid at ${where}`);
  }
  return { declared: parsed.data, rendered: isRecord(call.payload) ? call.payload : parsed.data };
}

/**
 * A template field as rendered. A JSONPath leaf that found nothing is left out by the renderer:
 * absent here too, never the unrendered `$.…` text.
 */
export function field(a: { rendered: Record<string, unknown> }, name: string): unknown {
  return a.rendered[name];
}

/** The rendered action fields (the declared action when nothing was rendered). */
export function renderedFields(call: ActionCall): Record<string, unknown> {
  return isRecord(call.payload) ? call.payload : call.action;
}

/** Parses settings; the message names the kind, never a value (settings hold secrets). */
export function settingsOf<T>(kind: string, schema: z.ZodType<T>, raw: unknown): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const where = parsed.error.issues.map((i) => i.path.join('.') || '(settings)').join(', ');
    throw new KindError('invalid_settings', `${kind} settings are invalid at ${where}`);
  }
  return parsed.data;
}

/** A template leaf as text: a JSONPath leaf may have rendered to a number, null or an object. */
export function text(v: unknown, fallback = ''): string {
  if (v === undefined || v === null) return fallback;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v);
}

/**
 * A field the receiving API requires non-blank (Slack `text`, a PagerDuty or Jira summary, a
 * ServiceNow short description), as rendered. A template whose values were all missing renders
 * blank, and the API would refuse it with a 4xx that is never retried: no alert, no ticket. A
 * blank one becomes a line naming the case and step instead (`idempotencyKey` is
 * `{workflow_id}:{opened_by}:{step}`).
 */
export function requiredText(
  a: { rendered: Record<string, unknown> },
  name: string,
  call: Pick<ActionCall, 'idempotencyKey'>,
): string {
  const t = text(field(a, name));
  return t.trim() !== '' ? t : `Vigil: ${call.idempotencyKey}`;
}

/** JSON with the holes a missing template value leaves in arrays (null) taken out. */
export function withoutHoles(v: unknown): unknown {
  if (Array.isArray(v)) return v.filter((x) => x !== null && x !== undefined).map(withoutHoles);
  if (isRecord(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = withoutHoles(x);
    return out;
  }
  return v;
}

export function truncate(s: string, max: number): string {
  if (s.length <= max) return s;
  // Whole code points only: a cut surrogate pair is invalid text to most APIs.
  let out = '';
  for (const cp of s) {
    if (out.length + cp.length > max - 1) break;
    out += cp;
  }
  return out + '…';
}

/**
 * Characters every receiver stores and matches literally, and that no query syntax here treats
 * specially (ServiceNow's `^`, JQL quotes): enough for the keys the workflows make,
 * `session-…:dec_…:review-default.steps[1].ticket`.
 */
/** An HTTP header name (RFC 9110 token), bounded. */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;

/**
 * Headers Vigil sets itself, never a document: the framing and routing ones (a template or an
 * auth header that set them could smuggle a second request or send the call elsewhere), the
 * body's type and the idempotency key. One list for auth headers and action headers alike.
 */
export const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'proxy-authorization',
  'expect',
  'content-type',
  'idempotency-key',
]);

export const TOKEN_CHARS = /^[A-Za-z0-9._:@[\]-]+$/;
/** Visible ASCII: what an HTTP header value or a free-form key field carries as is. */
export const VISIBLE_ASCII = /^[\x21-\x7e]+$/;

/**
 * The idempotency key as a token a third party stores and matches exactly (header value, Jira
 * label, ServiceNow correlation_id, PagerDuty dedup_key). The key embeds the session id, which
 * the caller chose: when it has characters outside `allowed`, or is longer than the receiver
 * keeps, a SHA-256 of it stands in. Either way the same key always gives the same token, so a
 * retry finds the first call.
 */
export function keyToken(
  key: string,
  maxLength: number,
  opts: { prefix?: string; allowed?: RegExp } = {},
): string {
  const prefix = opts.prefix ?? '';
  const plain = prefix + key;
  if ((opts.allowed ?? TOKEN_CHARS).test(key) && plain.length <= maxLength) return plain;
  const digest = createHash('sha256').update(key, 'utf8').digest('hex');
  return (prefix + 'sha256-' + digest).slice(0, maxLength);
}

export function jsonRequest(
  method: OutboundRequest['method'],
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): OutboundRequest {
  return {
    method,
    path,
    headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
    body: JSON.stringify(body),
  };
}

export function getRequest(path: string): OutboundRequest {
  return { method: 'GET', path, headers: { accept: 'application/json' } };
}

/** A JSON answer arrives parsed by the client, or as text when its content type said otherwise. */
export function parsedBody(body: unknown): unknown {
  if (typeof body === 'string' || body instanceof Uint8Array) {
    const s = typeof body === 'string' ? body : Buffer.from(body).toString('utf8');
    try {
      return JSON.parse(s) as unknown;
    } catch {
      return undefined;
    }
  }
  return body;
}

/**
 * A look-before-create that did not answer 2xx: creating anyway could open the duplicate the
 * lookup exists to prevent, so the step fails and its retry policy decides.
 */
export function lookupFailed(kind: string, status: number): KindError {
  const retryable = status >= 500 || status === 408 || status === 425 || status === 429;
  return new KindError('lookup_failed', `${kind} lookup answered HTTP ${status}`, {
    retryable,
    status,
  });
}
