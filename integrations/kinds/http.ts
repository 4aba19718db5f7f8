// The generic `http` kind: an action is a request the user spells out (method, path, headers,
// JSON body template) against the integration's base_url, with the integration's auth. The
// receiver gets the step's idempotency key as `Idempotency-Key`, the convention of Stripe and
// the IETF draft, so a retried step can be recognised there.
import { z } from 'zod';
import type { IntegrationKind, OutboundRequest } from './kind.ts';
import { HEADER_NAME, RESERVED_HEADERS, isRecord, renderedFields, text } from './util.ts';

const RelPath = z
  .string()
  .min(1)
  .max(2_048)
  .regex(/^\/[^\s#]*$/, "a path starting with '/' (no spaces, no fragment)");

const Settings = z
  .strictObject({
    /** What `POST …/test` fetches with GET; default `/`. */
    test_path: RelPath.optional(),
  })
  .default({});

const Action = z.strictObject({
  method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']),
  path: RelPath,
  headers: z
    .record(
      z
        .string()
        .regex(HEADER_NAME, 'a header name')
        .refine((h) => !RESERVED_HEADERS.has(h.toLowerCase()), 'this header is set by Vigil'),
      z.string().max(4_096),
    )
    .optional(),
  body: z.unknown().optional(),
});
type Action = z.infer<typeof Action>;

function renderedPath(p: unknown, fallback: string): string {
  const s = text(p, fallback);
  // A placeholder may render into the path: keep it a path on the same origin.
  return s.startsWith('/') && !s.startsWith('//') && !/[\s#]/.test(s) ? s : fallback;
}

export const httpKind: IntegrationKind = {
  name: 'http',
  settings: Settings,
  secretSettings: [],
  action: Action,

  build(call): OutboundRequest {
    const declared = call.action as unknown as Action;
    const fields = renderedFields(call);
    const headers: Record<string, string> = { accept: 'application/json' };
    const rendered = isRecord(fields.headers) ? fields.headers : {};
    for (const [k, v] of Object.entries(rendered)) {
      if (HEADER_NAME.test(k) && !RESERVED_HEADERS.has(k.toLowerCase())) {
        // Header values cannot carry line breaks (response splitting).
        headers[k.toLowerCase()] = text(v).replace(/[\r\n]+/g, ' ');
      }
    }
    headers['idempotency-key'] = call.idempotencyKey;
    const req: OutboundRequest = {
      method: declared.method,
      path: renderedPath(fields.path, declared.path),
      headers,
    };
    if (fields.body !== undefined && declared.method !== 'GET') {
      req.body = JSON.stringify(fields.body);
      headers['content-type'] ??= 'application/json';
    }
    return req;
  },

  ref(_status, body) {
    if (!isRecord(body)) return undefined;
    const id = body.id;
    return typeof id === 'string' || typeof id === 'number' ? String(id) : undefined;
  },

  testCall(settings): OutboundRequest {
    const s = isRecord(settings) ? settings : {};
    const path = typeof s.test_path === 'string' ? s.test_path : '/';
    return { method: 'GET', path, headers: { accept: '*/*' } };
  },
};
