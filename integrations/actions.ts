// Actions (playbook ticket/alert/action steps): render the action's templates from the step's
// context, let the kind build the exact request, send it with the integration's auth under the
// egress guard, and answer what the third party created. Failures are thrown as errors shaped
// like activities/deps.ts ActionError: `retryable` says whether the workflow's retry policy
// should try again, `retryAfterMs` carries a 429/503 Retry-After.
import { IntegrationError, isIntegrationError } from './errors.ts';
import { parseJson, statusError, type HttpResponse } from './http.ts';
import type { ActionCall, OutboundRequest } from './kinds/kind.ts';
import { isBroken, type IntegrationRegistry, type LoadedIntegration } from './registry.ts';
import { renderAction, renderString } from './template.ts';

/** activities/deps.ts InvokeActionRequest / InvokeActionResult, declared structurally. */
export interface InvokeActionRequest {
  integration: string;
  action_id: string;
  context: Record<string, unknown>;
  idempotencyKey: string;
  signal?: AbortSignal;
}

export interface InvokeActionResult {
  status: number;
  ref?: string;
  body?: unknown;
}

export const ACTION_TIMEOUT_MS = 10_000;
const BODY_TEXT_MAX = 4_096;

export interface ActionInvokerOptions {
  registry: IntegrationRegistry;
  now: () => number;
  timeoutMs?: number;
}

export function createActionInvoker(opts: ActionInvokerOptions) {
  const timeoutMs = opts.timeoutMs ?? ACTION_TIMEOUT_MS;

  async function send(
    loaded: LoadedIntegration,
    out: OutboundRequest,
    signal: AbortSignal | undefined,
  ): Promise<HttpResponse> {
    return loaded.http.request({
      method: out.method,
      path: out.path,
      headers: out.headers,
      ...(out.body !== undefined ? { body: out.body } : {}),
      timeoutMs,
      signal,
    });
  }

  return async function invokeAction(req: InvokeActionRequest): Promise<InvokeActionResult> {
    const loaded = await opts.registry.get(req.integration);
    if (!loaded) {
      throw new IntegrationError('unknown_integration', `no integration '${req.integration}'`, {
        retryable: false,
      });
    }
    if (isBroken(loaded)) throw loaded.error;
    const action = loaded.actions.get(req.action_id);
    if (!action) {
      throw new IntegrationError(
        'unknown_action',
        `integration '${req.integration}' has no action '${req.action_id}'`,
        { retryable: false },
      );
    }
    const { action_id: _id, ...fields } = action;
    const call: ActionCall = {
      settings: loaded.doc.settings,
      action,
      payload: renderPayload(fields, req.context),
      idempotencyKey: req.idempotencyKey,
      nowMs: opts.now(),
    };
    try {
      if (loaded.kind.lookup) {
        const lk = loaded.kind.lookup(call);
        const res = await send(loaded, lk.request, req.signal);
        if (res.status < 200 || res.status >= 300) {
          // Creating anyway could open the duplicate the lookup is there to prevent: the step
          // fails, retryable by its status, after the Retry-After of a 429/503 (Jira's search
          // is the most rate-limited call of a ticket).
          const e = statusError(res, opts.now());
          throw new IntegrationError(
            'lookup_failed',
            `${loaded.kind.name} lookup answered HTTP ${res.status}`,
            {
              retryable: e.retryable,
              status: res.status,
              ...(e.retryAfterMs !== undefined ? { retryAfterMs: e.retryAfterMs } : {}),
            },
          );
        }
        const ref = lk.found(res.status, bodyOf(res));
        if (ref !== undefined) return { status: res.status, ref };
      }
      const res = await send(loaded, loaded.kind.build(call), req.signal);
      if (res.status < 200 || res.status >= 300) throw statusError(res, opts.now());
      const body = bodyOf(res);
      const ref = loaded.kind.ref?.(res.status, body);
      const out: InvokeActionResult = { status: res.status };
      if (ref !== undefined) out.ref = ref;
      if (body !== undefined) out.body = body;
      return out;
    } catch (err) {
      if (isIntegrationError(err)) throw err;
      // A kind's own error (KindError) already has the ActionError shape; anything else is a
      // bug in a kind, and a retry would repeat it.
      const e = err as { code?: unknown; retryable?: unknown };
      if (typeof e.code === 'string' && typeof e.retryable === 'boolean') throw err;
      throw new IntegrationError(
        'kind_error',
        `the ${loaded.kind.name} kind failed to build the request`,
        {
          retryable: false,
        },
      );
    }
  };
}

/**
 * The action rendered against the case. A placeholder in a `path` is one path segment's worth
 * of text, percent-encoded: a customer id such as `../../admin/users/1/delete?x=` must not
 * walk the third party's URL space with the integration's credentials.
 */
function renderPayload(fields: Record<string, unknown>, ctx: unknown): unknown {
  const payload = renderAction(fields, ctx);
  if (typeof fields.path === 'string' && payload !== null && typeof payload === 'object') {
    (payload as Record<string, unknown>).path = renderString(fields.path, ctx, pathSegment);
  }
  return payload;
}

/** A placeholder's value as path text: percent-encoded, and never a dot segment. */
function pathSegment(value: string): string {
  // encodeURIComponent leaves `.` and `..` as they are, and servers resolve them.
  if (value === '.' || value === '..') {
    throw new IntegrationError(
      'invalid_action',
      'a path placeholder rendered to a dot segment (. or ..)',
      { retryable: false },
    );
  }
  return encodeURIComponent(value);
}

/** A JSON answer parsed; other answers as (bounded) text; none as undefined. */
function bodyOf(res: HttpResponse): unknown {
  if (res.body.length === 0) return undefined;
  const type = res.headers['content-type'];
  const t = (Array.isArray(type) ? type[0] : type) ?? '';
  if (/\bjson\b/i.test(t)) {
    try {
      return parseJson(res);
    } catch {
      return res.body.toString('utf8').slice(0, BODY_TEXT_MAX);
    }
  }
  return res.body.toString('utf8').slice(0, BODY_TEXT_MAX);
}
