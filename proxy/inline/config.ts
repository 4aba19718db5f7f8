// The route file (VIGIL_CONFIG, CONTRACT §5): parsed by zod once per load, compiled into
// matchers and extractors, and swapped atomically on reload. A request keeps the compiled
// config it started with, so a reload never changes the rules under a request in flight.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { compilePath, type PathTest } from './match.ts';

/** Defaults of `limits`; docs/proxy.md lists them with the reason for each. */
export const DEFAULT_LIMITS = {
  /** Bytes of a monitored request body the proxy buffers to extract from (413 above). */
  body_limit: 1024 * 1024,
  /** Time the origin has to start answering, counted once the request is fully sent. */
  timeout_ms: 30_000,
  /** Longest silence between two chunks of an origin's response body. */
  body_timeout_ms: 60_000,
  /** Time the engine has to answer before the request goes through undecided (fail open). */
  decision_timeout_ms: 500,
  /** Monitored requests being buffered or decided at once, per process. */
  max_inflight_decisions: 256,
  /** What a monitored request gets over that bound: forwarded undecided, or 503. */
  overload: 'pass_through' as 'pass_through' | 'reject',
  /** Retry-After (seconds) of the overload 503. */
  retry_after_seconds: 1,
  /** Open connections to one origin (keep-alive pool). */
  origin_connections: 256,
  /** Idle keep-alive connections to an origin are closed after this. */
  origin_keep_alive_ms: 4_000,
  /** Client side (applied when the server starts; a reload does not change them). */
  max_header_size: 16 * 1024,
  max_headers_count: 100,
  headers_timeout_ms: 10_000,
  request_timeout_ms: 300_000,
  keep_alive_timeout_ms: 5_000,
  max_connections: 10_000,
};
export type Limits = typeof DEFAULT_LIMITS;
/** The limits read when the server is created; a reload that changes them is logged. */
export const STARTUP_LIMITS = [
  'max_header_size',
  'max_headers_count',
  'headers_timeout_ms',
  'request_timeout_ms',
  'keep_alive_timeout_ms',
  'max_connections',
] as const;

const UNITS: Record<string, number> = { b: 1, kb: 1024, kib: 1024, mb: 1024 ** 2, mib: 1024 ** 2 };
const Bytes = z.union([
  z.number().int().min(0),
  z
    .string()
    .regex(/^\s*\d+\s*(b|kb|kib|mb|mib)?\s*$/i, {
      error: 'a byte count such as 65536, "64kb" or "1mb"',
    })
    .transform((s) => {
      const m = /^\s*(\d+)\s*([a-z]*)\s*$/i.exec(s)!;
      return Number(m[1]) * (UNITS[(m[2] || 'b').toLowerCase()] ?? 1);
    }),
]);
const Ms = z.number().int().min(1).max(3_600_000);

const LimitsSchema = z
  .strictObject({
    body_limit: Bytes.pipe(z.number().max(64 * 1024 ** 2)),
    timeout_ms: Ms,
    body_timeout_ms: z.number().int().min(0).max(3_600_000),
    decision_timeout_ms: Ms,
    max_inflight_decisions: z.number().int().min(1).max(1_000_000),
    overload: z.enum(['pass_through', 'reject']),
    retry_after_seconds: z.number().int().min(0).max(3600),
    origin_connections: z.number().int().min(1).max(65_536),
    origin_keep_alive_ms: Ms,
    max_header_size: Bytes.pipe(
      z
        .number()
        .min(1024)
        .max(1024 ** 2),
    ),
    max_headers_count: z.number().int().min(8).max(10_000),
    headers_timeout_ms: Ms,
    request_timeout_ms: z.number().int().min(0).max(86_400_000),
    keep_alive_timeout_ms: Ms,
    max_connections: z.number().int().min(1).max(1_000_000),
  })
  .partial();
export type LimitsInput = z.input<typeof LimitsSchema>;

const Method = z
  .string()
  .regex(/^[A-Za-z]+$/, { error: 'an HTTP method such as GET or POST' })
  .transform((m) => m.toUpperCase());

const TARGET_SEGMENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const FORBIDDEN_SEGMENTS = new Set(['__proto__', 'constructor', 'prototype']);
/** Paths the proxy fills itself; an extractor must not let a client choose them. */
const RESERVED_TARGETS = new Map([
  ['$.device.ip', 'filled by the proxy from the client address (see VIGIL_TRUSTED_PROXIES)'],
  ['$.context', 'set from the route'],
  ['$.backends', 'reserved for backend answers'],
]);

const Extractor = z
  .strictObject({
    from: z.enum(['body', 'form', 'query', 'header', 'cookie']),
    field: z.string().min(1).optional(),
    name: z.string().min(1).optional(),
    type: z.enum(['string', 'integer', 'number', 'boolean']).optional(),
  })
  .superRefine((e, ctx) => {
    if (e.field !== undefined && e.name !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['name'], message: 'give field or name, not both' });
    } else if (e.field === undefined && e.name === undefined) {
      const which = e.from === 'header' || e.from === 'cookie' ? 'name' : 'field';
      ctx.addIssue({ code: 'custom', path: [which], message: `required for from: ${e.from}` });
    }
    const key = e.field ?? e.name;
    if (e.from === 'header' && key !== undefined && !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(key)) {
      ctx.addIssue({ code: 'custom', path: ['name'], message: 'not a header name' });
    }
    if (e.from === 'body' && key?.split('.').some((s) => s === '' || FORBIDDEN_SEGMENTS.has(s))) {
      ctx.addIssue({ code: 'custom', path: ['field'], message: 'not a dotted field path' });
    }
  });

const Block = z.strictObject({
  status: z.number().int().min(200).max(599).default(403),
  content_type: z.string().min(1).default('application/json'),
  body: z
    .string()
    .max(64 * 1024)
    .optional(),
  headers: z.record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/), z.string()).optional(),
});

const Route = z.strictObject({
  match: z.strictObject({
    method: z.union([Method, z.array(Method).min(1)]).optional(),
    path: z
      .string()
      .startsWith('/', { error: 'must start with /' })
      .regex(/^[^\s?#]*$/, { error: 'a path: no spaces, query or fragment' }),
  }),
  origin: z.string().min(1),
  context: z
    .string()
    .regex(/^[a-z0-9_-]{1,64}$/, { error: 'lowercase letters, digits, - and _ (at most 64)' })
    .optional(),
  mode: z.enum(['active', 'passive']).optional(),
  extract: z.record(z.string(), Extractor).optional(),
  block: Block.optional(),
  body_limit: Bytes.pipe(z.number().max(64 * 1024 ** 2)).optional(),
  timeout_ms: Ms.optional(),
});

const OriginUrl = z
  .url({ protocol: /^https?$/, error: 'an http:// or https:// URL' })
  .refine((u) => /^https?:\/\/[^/?#]+\/?$/i.test(u), {
    error: 'an origin: scheme, host, port, no path',
  });
const Origin = z.union([
  OriginUrl,
  z.strictObject({
    url: OriginUrl,
    /** PEM file of the CA that signed the origin's certificate (besides the system CAs). */
    ca_file: z.string().min(1).optional(),
    connections: z.number().int().min(1).max(65_536).optional(),
  }),
]);

const Session = z
  .strictObject({ cookie: z.string().min(1).optional(), header: z.string().min(1).optional() })
  .refine((s) => (s.cookie === undefined) !== (s.header === undefined), {
    error: 'give cookie or header (one of them)',
  });

export const RoutesFile = z
  .strictObject({
    mode: z.enum(['passive', 'active']),
    origins: z
      .record(z.string().regex(/^[A-Za-z0-9_.-]+$/), Origin)
      .refine((o) => Object.keys(o).length > 0, {
        error: 'at least one origin',
      }),
    session: Session.optional(),
    routes: z.array(Route).min(1),
    limits: LimitsSchema.optional(),
  })
  .superRefine((doc, ctx) => {
    const known = Object.keys(doc.origins);
    doc.routes.forEach((r, i) => {
      if (!known.includes(r.origin)) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'origin'],
          message: `unknown origin "${r.origin}" (origins: ${known.join(', ')})`,
        });
      }
      for (const target of Object.keys(r.extract ?? {})) {
        const path = ['routes', i, 'extract', target];
        const segments = target.startsWith('$.') ? target.slice(2).split('.') : [];
        if (!segments.length || !segments.every((s) => TARGET_SEGMENT.test(s))) {
          ctx.addIssue({ code: 'custom', path, message: 'a target like "$.customer.email"' });
        } else if (segments.some((s) => FORBIDDEN_SEGMENTS.has(s))) {
          ctx.addIssue({ code: 'custom', path, message: 'forbidden segment' });
        } else if (segments[0] === 'metadata' && segments.length !== 2) {
          ctx.addIssue({
            code: 'custom',
            path,
            message: 'metadata is a flat map: "$.metadata.key"',
          });
        } else {
          for (const [reserved, why] of RESERVED_TARGETS) {
            if (target === reserved || target.startsWith(`${reserved}.`)) {
              ctx.addIssue({ code: 'custom', path, message: `${reserved} is ${why}` });
            } else if (reserved.startsWith(`${target}.`)) {
              // Its value would replace the whole object, the proxy's own entry with it.
              ctx.addIssue({ code: 'custom', path, message: `contains ${reserved}, ${why}` });
            }
          }
        }
      }
      // One target inside another: whichever is set last would replace or be lost in the other
      // (an object where a value was meant, or the reverse), depending on the order of keys.
      const targets = Object.keys(r.extract ?? {});
      for (const outer of targets) {
        for (const inner of targets) {
          if (inner.startsWith(`${outer}.`)) {
            ctx.addIssue({
              code: 'custom',
              path: ['routes', i, 'extract'],
              message: `"${outer}" and "${inner}" of route ${r.match.path} overlap: one is inside the other`,
            });
          }
        }
      }
      if (r.context === undefined) {
        for (const key of ['extract', 'block', 'body_limit', 'mode'] as const) {
          if (r[key] !== undefined) {
            ctx.addIssue({
              code: 'custom',
              path: ['routes', i, key],
              message: 'only for monitored routes (give the route a context)',
            });
          }
        }
      }
    });
  });
export type RoutesFileInput = z.input<typeof RoutesFile>;
export type RoutesFileDoc = z.output<typeof RoutesFile>;

export interface ConfigIssue {
  path: string;
  message: string;
}

export class RoutesConfigError extends Error {
  readonly code = 'invalid_proxy_config';
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[], source?: string) {
    super(
      `${source ? `${source}: ` : ''}${issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}`,
    );
    this.issues = issues;
  }
}

/** `routes[1].extract.$.transaction.amount.from`: how users name a place in their file. */
function issuePath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

export type ValueType = 'string' | 'integer' | 'number' | 'boolean';
export type ExtractSource = 'body' | 'form' | 'query' | 'header' | 'cookie';

export interface CompiledExtractor {
  /** `$.transaction.amount` as ['transaction', 'amount']. */
  target: string[];
  from: ExtractSource;
  /** The field, query parameter, cookie name, or header name (lowercased). */
  key: string;
  /** A body field as its dotted segments. */
  keyPath: string[];
  type: ValueType | undefined;
}

export interface CompiledBlock {
  status: number;
  contentType: string;
  /** The body split at each `{{decision_id}}`. */
  parts: string[];
  headers: [string, string][];
}

export interface CompiledRoute {
  index: number;
  /** The route's match.path: the metrics and events label. */
  label: string;
  methods: ReadonlySet<string> | null;
  test: PathTest;
  origin: string;
  context: string | null;
  mode: 'active' | 'passive';
  extractors: CompiledExtractor[];
  needsBody: boolean;
  block: CompiledBlock;
  bodyLimit: number;
  timeoutMs: number;
}

export interface OriginSpec {
  name: string;
  url: string;
  caFile: string | undefined;
  /** The PEM itself, read at load so a missing file is a config error, not a 502 later. */
  ca: string | undefined;
  connections: number;
}

export type SessionSpec = { kind: 'cookie'; name: string } | { kind: 'header'; name: string };

export interface CompiledConfig {
  /** 1 for the first config, +1 on every successful reload. */
  version: number;
  /** sha256 of the document, first 16 hex digits. */
  hash: string;
  source: string;
  mode: 'active' | 'passive';
  origins: Map<string, OriginSpec>;
  session: SessionSpec | null;
  routes: CompiledRoute[];
  limits: Limits;
  match(method: string, lowerPath: string): CompiledRoute | undefined;
}

const DEFAULT_BLOCK_BODY = '{"error":"blocked","decision_id":"{{decision_id}}"}';

/**
 * A field left out says so, as `required for from: header` does, instead of zod's `expected
 * string, received undefined` or its list of options for an enum.
 */
const missingIsRequired = (issue: { input?: unknown; path?: PropertyKey[] | undefined }) =>
  issue.input === undefined && issue.path?.length ? 'required' : undefined;

/** Validates a parsed document; throws RoutesConfigError naming each bad place. */
export function parseRoutesDocument(doc: unknown, source?: string): RoutesFileDoc {
  const parsed = RoutesFile.safeParse(doc, { error: missingIsRequired });
  if (!parsed.success) {
    throw new RoutesConfigError(
      parsed.error.issues.map((i) => ({ path: issuePath(i.path), message: i.message })),
      source,
    );
  }
  return parsed.data;
}

/** Parses YAML or JSON text (JSON is YAML); duplicate keys are an error. */
export function parseRoutesText(text: string, source?: string): RoutesFileDoc {
  let doc: unknown;
  try {
    doc = parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (err) {
    throw new RoutesConfigError(
      [{ path: '', message: `not YAML or JSON: ${(err as Error).message.split('\n')[0]}` }],
      source,
    );
  }
  return parseRoutesDocument(doc, source);
}

export function hashOf(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

function compileBlock(b: z.output<typeof Block> | undefined): CompiledBlock {
  return {
    status: b?.status ?? 403,
    contentType: b?.content_type ?? 'application/json',
    parts: (b?.body ?? DEFAULT_BLOCK_BODY).split('{{decision_id}}'),
    headers: Object.entries(b?.headers ?? {}),
  };
}

export function renderBlock(block: CompiledBlock, decisionId: string): string {
  return block.parts.join(decisionId);
}

/**
 * Compiles a validated document. `limitDefaults` (the composition root's) sit between the
 * built-in defaults and the file's `limits`, so the file has the last word.
 */
export function compileConfig(
  doc: RoutesFileDoc,
  meta: { version: number; hash: string; source: string },
  limitDefaults: Partial<Limits> = {},
): CompiledConfig {
  const limits: Limits = {
    ...DEFAULT_LIMITS,
    ...limitDefaults,
    ...stripUndefined(doc.limits ?? {}),
  };
  const origins = new Map<string, OriginSpec>();
  const issues: ConfigIssue[] = [];
  for (const [name, o] of Object.entries(doc.origins)) {
    const spec = typeof o === 'string' ? { url: o } : o;
    let ca: string | undefined;
    if ('ca_file' in spec && spec.ca_file) {
      try {
        ca = readFileSync(spec.ca_file, 'utf8');
      } catch (err) {
        issues.push({ path: `origins.${name}.ca_file`, message: (err as Error).message });
      }
    }
    origins.set(name, {
      name,
      url: new URL(spec.url).origin,
      caFile: 'ca_file' in spec ? spec.ca_file : undefined,
      ca,
      connections:
        ('connections' in spec ? spec.connections : undefined) ?? limits.origin_connections,
    });
  }
  if (issues.length) throw new RoutesConfigError(issues, meta.source);
  const routes = doc.routes.map((r, index): CompiledRoute => {
    const extractors = Object.entries(r.extract ?? {}).map(([target, e]): CompiledExtractor => {
      const key = e.field ?? e.name ?? '';
      return {
        target: target.slice(2).split('.'),
        from: e.from,
        key: e.from === 'header' ? key.toLowerCase() : key,
        keyPath: key.split('.'),
        type: e.type,
      };
    });
    const methods = r.match.method === undefined ? null : new Set([r.match.method].flat());
    return {
      index,
      label: r.match.path,
      methods,
      test: compilePath(r.match.path),
      origin: r.origin,
      context: r.context ?? null,
      mode: r.mode ?? doc.mode,
      extractors,
      needsBody: extractors.some((e) => e.from === 'body' || e.from === 'form'),
      block: compileBlock(r.block),
      bodyLimit: r.body_limit ?? limits.body_limit,
      timeoutMs: r.timeout_ms ?? limits.timeout_ms,
    };
  });
  const session: SessionSpec | null = doc.session?.cookie
    ? { kind: 'cookie', name: doc.session.cookie }
    : doc.session?.header
      ? { kind: 'header', name: doc.session.header.toLowerCase() }
      : null;
  return {
    ...meta,
    mode: doc.mode,
    origins,
    session,
    routes,
    limits,
    match(method, lowerPath) {
      for (const r of routes) {
        if ((r.methods === null || r.methods.has(method)) && r.test(lowerPath)) return r;
      }
      return undefined;
    },
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Validates and compiles the text of a route file. */
export function compileRoutesText(
  text: string,
  source: string,
  version: number,
  limitDefaults?: Partial<Limits>,
): CompiledConfig {
  const doc = parseRoutesText(text, source);
  return compileConfig(doc, { version, hash: hashOf(text), source }, limitDefaults);
}

/** Reads, validates and compiles a route file (at startup: synchronous on purpose). */
export function loadRoutesFileSync(
  file: string,
  version = 1,
  limitDefaults?: Partial<Limits>,
): CompiledConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new RoutesConfigError([{ path: '', message: (err as Error).message }], file);
  }
  return compileRoutesText(text, file, version, limitDefaults);
}

/** Reads a route file's text; a read error is a config error naming the file. */
export async function readRoutesFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new RoutesConfigError([{ path: '', message: (err as Error).message }], file);
  }
}

/** Compiles an in-memory document (tests, embedding). */
export function compileRoutesDocument(
  doc: unknown,
  version = 1,
  limitDefaults?: Partial<Limits>,
): CompiledConfig {
  const parsed = parseRoutesDocument(doc, 'inline config');
  return compileConfig(
    parsed,
    { version, hash: hashOf(JSON.stringify(doc)), source: 'inline config' },
    limitDefaults,
  );
}
