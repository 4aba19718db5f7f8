// The integration document (CONTRACT §3), parsed once at the boundary: on PUT, and again when a
// stored document is loaded (defaults applied, secrets already decrypted). Every object is strict
// and every issue carries the path users see: `backends[0].request.email`.
// JSONPaths are parsed with the engine's own grammar (rulesets/jsonpath.ts), never evaluated by
// a general JSONPath engine; a path into `$.metadata` is refused, since metadata never leaves.
import { z } from 'zod';
import { parsePath, type PathToken } from '../rulesets/jsonpath.ts';
import type { Outcome } from '../rulesets/ports.ts';
import {
  formatIssuePath,
  LIFECYCLE_EVENT_TYPES,
  type Issue,
  type LifecycleEventType,
} from '../rulesets/schema.ts';
import type { HttpMethod, IntegrationKind } from './kinds/kind.ts';
import { KINDS } from './kinds/index.ts';
import { HEADER_NAME, RESERVED_HEADERS } from './kinds/util.ts';

export const LIMITS = {
  backends: 100,
  actions: 100,
  requiredFields: 64,
  templateNodes: 2_000,
  templateDepth: 16,
  stringLength: 4_096,
  /** A backend's own timeout is clamped into this range (ms). */
  minTimeoutMs: 1,
  maxTimeoutMs: 30_000,
  defaultTimeoutMs: 1_000,
  maxConnections: 256,
  defaultConnections: 16,
  defaultFailureThreshold: 5,
  defaultOpenMs: 30_000,
  issues: 100,
} as const;

export type AuthConfig =
  | { type: 'none' }
  | { type: 'bearer'; token: string }
  | { type: 'basic'; username: string; password: string }
  | { type: 'header'; name: string; value: string }
  | { type: 'hmac'; secret: string; header: string; algorithm: 'sha256' };

export interface BackendDoc {
  backend_id: string;
  method: HttpMethod;
  path: string;
  required_fields: string[];
  request?: Record<string, unknown>;
  response: { outcome_path: string; map: Record<string, Outcome> };
  timeout_ms: number;
  events: LifecycleEventType[];
  /** Where lifecycle events are POSTed; default `{path}/events`. */
  events_path?: string;
}

export type ActionDoc = { action_id: string } & Record<string, unknown>;

export interface IntegrationDocument {
  slug: string;
  kind: IntegrationKind['name'];
  base_url: string;
  auth: AuthConfig;
  settings: unknown;
  backends: BackendDoc[];
  actions: ActionDoc[];
  pool: { connections: number };
  circuit: { failure_threshold: number; open_ms: number };
}

export type ParseIntegrationResult =
  { ok: true; value: IntegrationDocument } | { ok: false; issues: Issue[] };

export const SLUG = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const IDENT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const RelPath = z
  .string()
  .max(2_048)
  .regex(/^\/(?!\/)[^\s#]*$/, "a path starting with '/' (no spaces, no fragment)");

const Secret = z.string().min(1).max(4_096);
// Sent as a header value: what HTTP allows there (RFC 9110 field-value), or every call would
// fail as a `connection` error instead of the document being refused here.
const HeaderSecret = Secret.refine(
  (v) => /^[\t\x20-\x7e\x80-\xff]*$/.test(v),
  'only visible characters, spaces and tabs (it is sent in a header)',
);

const Auth = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('none') }),
  z.strictObject({ type: z.literal('bearer'), token: HeaderSecret }),
  z.strictObject({
    type: z.literal('basic'),
    username: z
      .string()
      .min(1)
      .max(256)
      .refine((u) => !u.includes(':'), "no ':' in a username"),
    password: Secret,
  }),
  z.strictObject({
    type: z.literal('header'),
    name: z
      .string()
      .regex(HEADER_NAME, 'a header name')
      .refine((h) => !RESERVED_HEADERS.has(h.toLowerCase()), 'this header is set by Vigil'),
    value: HeaderSecret,
  }),
  z.strictObject({
    type: z.literal('hmac'),
    secret: Secret,
    header: z
      .string()
      .regex(HEADER_NAME, 'a header name')
      .refine((h) => !RESERVED_HEADERS.has(h.toLowerCase()), 'this header is set by Vigil')
      .default('x-vigil-signature'),
    algorithm: z.literal('sha256').default('sha256'),
  }),
]);

const BaseUrl = z
  .string()
  .max(2_048)
  .superRefine((s, ctx) => {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'not a URL' });
      return;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      ctx.addIssue({ code: 'custom', message: 'must be http:// or https://' });
    }
    if (u.username || u.password) {
      ctx.addIssue({ code: 'custom', message: 'no credentials in the URL: use auth' });
    }
    if (u.hash || s.includes('#')) ctx.addIssue({ code: 'custom', message: 'no fragment' });
    if (u.search) {
      ctx.addIssue({ code: 'custom', message: 'no query string: put it in the paths' });
    }
  });

const Path = z.string().max(256);

const Backend = z.strictObject({
  backend_id: z.string().regex(IDENT, 'an id: letters, digits, _ . - (≤ 64)'),
  method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']).default('POST'),
  path: RelPath,
  required_fields: z.array(Path).max(LIMITS.requiredFields).default([]),
  request: z.record(z.string(), z.unknown()).optional(),
  response: z.strictObject({
    outcome_path: Path,
    map: z
      .record(z.string().max(256), z.enum(['ALLOW', 'REVIEW', 'BLOCK']))
      .refine((m) => Object.keys(m).length > 0, 'map at least one answer'),
  }),
  timeout_ms: z
    .number()
    .int()
    .positive()
    .default(LIMITS.defaultTimeoutMs)
    .transform((n) => Math.min(LIMITS.maxTimeoutMs, Math.max(LIMITS.minTimeoutMs, n))),
  events: z.array(z.enum(LIFECYCLE_EVENT_TYPES)).max(16).default([]),
  events_path: RelPath.optional(),
});

const Top = z.strictObject({
  slug: z.string().regex(SLUG, 'a lowercase slug: letters, digits, - and _ (≤ 63)'),
  kind: z.enum(Object.keys(KINDS) as [IntegrationKind['name'], ...IntegrationKind['name'][]]),
  base_url: BaseUrl,
  auth: Auth.default({ type: 'none' }),
  settings: z.record(z.string(), z.unknown()).default({}),
  backends: z.array(Backend).max(LIMITS.backends).default([]),
  actions: z
    .array(
      z.looseObject({ action_id: z.string().regex(IDENT, 'an id: letters, digits, _ . - (≤ 64)') }),
    )
    .max(LIMITS.actions)
    .default([]),
  pool: z
    .strictObject({
      connections: z.number().int().min(1).max(LIMITS.maxConnections),
    })
    .default({ connections: LIMITS.defaultConnections }),
  circuit: z
    .strictObject({
      failure_threshold: z.number().int().min(1).max(1_000).default(LIMITS.defaultFailureThreshold),
      open_ms: z.number().int().min(100).max(3_600_000).default(LIMITS.defaultOpenMs),
    })
    .default({ failure_threshold: LIMITS.defaultFailureThreshold, open_ms: LIMITS.defaultOpenMs }),
});

// ---------------------------------------------------------------------------------------------

type PathPart = string | number;

class Issues {
  list: Issue[] = [];
  add(path: readonly PathPart[], message: string): void {
    if (this.list.length < LIMITS.issues) this.list.push({ path: formatIssuePath(path), message });
  }
  fromZod(base: readonly PathPart[], error: z.ZodError): void {
    for (const i of error.issues) {
      const at = [...base, ...(i.path as PathPart[])];
      if (i.code === 'unrecognized_keys') {
        for (const k of i.keys) this.add([...at, k], `unknown key '${k}'`);
      } else {
        this.add(at, i.message);
      }
    }
  }
}

// zod says "expected string, received undefined" for a missing key; users read "required".
const PARSE_OPTIONS = {
  error: (iss: { code?: string; input?: unknown }) =>
    iss.input === undefined && (iss.code === 'invalid_type' || iss.code === 'invalid_value')
      ? 'required'
      : undefined,
};

const readsMetadata = (tokens: readonly PathToken[]) => {
  const first = tokens[0];
  return (
    first !== undefined &&
    (first.t === 'wildcard' || (first.t === 'member' && first.name === 'metadata'))
  );
};

/** A path a backend may read: parsed, definite when asked, never into `$.metadata`. */
function checkBackendPath(
  p: string,
  at: PathPart[],
  issues: Issues,
  opts: { definite: boolean },
): void {
  const parsed = parsePath(p);
  if (!parsed.ok) return issues.add(at, parsed.message);
  if (readsMetadata(parsed.tokens)) {
    return issues.add(at, '$.metadata is never sent to backends; a path may not read it');
  }
  if (opts.definite && !parsed.definite) issues.add(at, 'a path without wildcards');
}

/** Whether a template string leaf is a JSONPath lookup rather than literal text. */
export const isPathLeaf = (s: string) => s.startsWith('$.') || s.startsWith('$[');

function checkTemplate(
  v: unknown,
  at: PathPart[],
  issues: Issues,
  budget: { n: number },
  depth: number,
): void {
  if (--budget.n < 0) {
    if (budget.n === -1) issues.add(at, `template is larger than ${LIMITS.templateNodes} nodes`);
    return;
  }
  if (depth > LIMITS.templateDepth)
    return issues.add(at, `nested deeper than ${LIMITS.templateDepth}`);
  if (typeof v === 'string') {
    if (v.length > LIMITS.stringLength) return issues.add(at, `longer than ${LIMITS.stringLength}`);
    if (isPathLeaf(v)) checkBackendPath(v, at, issues, { definite: false });
    return;
  }
  if (v === null || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) issues.add(at, 'numbers must be finite');
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, k) => checkTemplate(x, [...at, k], issues, budget, depth + 1));
    return;
  }
  if (typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) checkTemplate(x, [...at, k], issues, budget, depth + 1);
    return;
  }
  issues.add(at, 'not a JSON value');
}

/**
 * Parses an integration document. `slug`, when given, is the URL's: a document naming another
 * one is refused (a PUT is not a rename); a document without one takes it.
 */
export function parseIntegration(
  input: unknown,
  opts: { slug?: string } = {},
): ParseIntegrationResult {
  const issues = new Issues();
  let doc = input;
  if (opts.slug !== undefined && typeof doc === 'object' && doc !== null && !Array.isArray(doc)) {
    const d = doc as Record<string, unknown>;
    if (d.slug === undefined) doc = { ...d, slug: opts.slug };
    else if (d.slug !== opts.slug) issues.add(['slug'], `must equal the URL's slug '${opts.slug}'`);
  }
  const top = Top.safeParse(doc, PARSE_OPTIONS);
  if (!top.success) {
    issues.fromZod([], top.error);
    return { ok: false, issues: issues.list };
  }
  const t = top.data;
  const kind = KINDS[t.kind];

  const settings = kind.settings.safeParse(t.settings, PARSE_OPTIONS);
  if (!settings.success) issues.fromZod(['settings'], settings.error);

  const backendIds = new Set<string>();
  const backends: BackendDoc[] = [];
  t.backends.forEach((b, i) => {
    const at = ['backends', i];
    if (backendIds.has(b.backend_id))
      issues.add([...at, 'backend_id'], `duplicate backend_id '${b.backend_id}'`);
    backendIds.add(b.backend_id);
    b.required_fields.forEach((p, k) =>
      checkBackendPath(p, [...at, 'required_fields', k], issues, { definite: true }),
    );
    checkBackendPath(b.response.outcome_path, [...at, 'response', 'outcome_path'], issues, {
      definite: true,
    });
    if (b.request !== undefined) {
      checkTemplate(b.request, [...at, 'request'], issues, { n: LIMITS.templateNodes }, 0);
      if (b.method === 'GET' || b.method === 'DELETE') {
        issues.add([...at, 'request'], `a ${b.method} request has no body`);
      }
    }
    if (b.events_path !== undefined && b.events.length === 0) {
      issues.add([...at, 'events_path'], 'list the lifecycle events this backend takes in events');
    }
    const out: BackendDoc = {
      backend_id: b.backend_id,
      method: b.method,
      path: b.path,
      required_fields: b.required_fields,
      response: b.response,
      timeout_ms: b.timeout_ms,
      events: b.events,
    };
    if (b.request !== undefined) out.request = b.request;
    if (b.events_path !== undefined) out.events_path = b.events_path;
    backends.push(out);
  });

  const actionIds = new Set<string>();
  const actions: ActionDoc[] = [];
  t.actions.forEach((a, i) => {
    const at = ['actions', i];
    if (actionIds.has(a.action_id))
      issues.add([...at, 'action_id'], `duplicate action_id '${a.action_id}'`);
    actionIds.add(a.action_id);
    const { action_id, ...rest } = a;
    const parsed = kind.action.safeParse(rest, PARSE_OPTIONS);
    if (!parsed.success) issues.fromZod(at, parsed.error);
    else actions.push({ ...(parsed.data as Record<string, unknown>), action_id });
  });

  if (issues.list.length > 0) return { ok: false, issues: issues.list };
  return {
    ok: true,
    value: {
      slug: t.slug,
      kind: t.kind,
      base_url: t.base_url,
      auth: t.auth,
      settings: settings.success ? settings.data : {},
      backends,
      actions,
      pool: t.pool,
      circuit: t.circuit,
    },
  };
}

/** The kind named by a raw document, if it names a known one (before it is parsed). */
export function kindOf(doc: unknown): IntegrationKind | undefined {
  if (typeof doc !== 'object' || doc === null) return undefined;
  const k = (doc as { kind?: unknown }).kind;
  return typeof k === 'string' && Object.hasOwn(KINDS, k)
    ? KINDS[k as IntegrationKind['name']]
    : undefined;
}
