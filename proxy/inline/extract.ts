// Extractors: from the parts of a request to a decision context. Each source is parsed at most
// once and only if an extractor reads it; a value that is missing or cannot be coerced to the
// declared type is left out, so rules see a missing path (false for every comparison) rather
// than a wrong value. A value that may be there but that the proxy cannot see as the origin
// would (a body it cannot read, a form field sent twice) is left out too, and its target is
// listed as dropped: otherwise a client could hide a value from the rules by the way it sends it.
import type { IncomingHttpHeaders } from 'node:http';
import type { CompiledExtractor, SessionSpec, ValueType } from './config.ts';

export interface RequestFacts {
  method: string;
  /** Normalized path, without the query. */
  path: string;
  /** The query with its `?`, or ''. */
  search: string;
  headers: IncomingHttpHeaders;
  ip: string;
  /** The buffered body of a monitored request (none for authz and upgrades). */
  body?: Buffer | undefined;
}

const METADATA_VALUE_MAX = 512;

export function coerce(value: unknown, type: ValueType | undefined): unknown {
  if (value === undefined || value === null) return undefined;
  switch (type) {
    case undefined:
      return value;
    case 'string':
      return typeof value === 'string'
        ? value
        : typeof value === 'number' || typeof value === 'boolean'
          ? String(value)
          : undefined;
    case 'integer':
      if (typeof value === 'number') return Number.isSafeInteger(value) ? value : undefined;
      if (typeof value === 'string' && /^\s*-?\d+\s*$/.test(value)) {
        const n = Number(value);
        return Number.isSafeInteger(n) ? n : undefined;
      }
      return undefined;
    case 'number':
      if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
      if (typeof value === 'string' && /^\s*-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(value)) {
        const n = Number(value);
        return Number.isFinite(n) ? n : undefined;
      }
      return undefined;
    case 'boolean':
      if (typeof value === 'boolean') return value;
      if (value === 1 || value === 0) return value === 1;
      if (typeof value === 'string') {
        const v = value.trim().toLowerCase();
        if (v === 'true' || v === '1' || v === 'yes' || v === 'on') return true;
        if (v === 'false' || v === '0' || v === 'no' || v === 'off') return false;
      }
      return undefined;
  }
}

/** The value of one cookie; quotes removed, percent-decoding applied when valid. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  let start = 0;
  while (start < header.length) {
    let end = header.indexOf(';', start);
    if (end === -1) end = header.length;
    const eq = header.indexOf('=', start);
    if (eq !== -1 && eq < end && header.slice(start, eq).trim() === name) {
      let v = header.slice(eq + 1, end).trim();
      if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
      if (!v.includes('%')) return v;
      try {
        return decodeURIComponent(v);
      } catch {
        return v;
      }
    }
    start = end + 1;
  }
  return undefined;
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function sessionOf(headers: IncomingHttpHeaders, spec: SessionSpec | null): string | null {
  if (!spec) return null;
  const v =
    spec.kind === 'cookie'
      ? cookieValue(headerValue(headers, 'cookie'), spec.name)
      : headerValue(headers, spec.name);
  return v ? v : null;
}

type ContentKind = 'json' | 'form' | 'other';

function contentKind(headers: IncomingHttpHeaders): ContentKind {
  const ct = headers['content-type'];
  if (!ct) return 'other';
  const semi = ct.indexOf(';');
  const mime = (semi === -1 ? ct : ct.slice(0, semi)).trim().toLowerCase();
  if (mime === 'application/json' || mime.endsWith('+json')) return 'json';
  if (mime === 'application/x-www-form-urlencoded') return 'form';
  return 'other';
}

/**
 * How the body was read: `none` (no body), `json`, `form`, or `unreadable` (it is there but the
 * proxy cannot read it as the origin may: compressed, not valid JSON, of another type).
 */
type BodyKind = 'none' | 'json' | 'form' | 'unreadable';

/** Express (by default) and others decompress a request body; the proxy does not. */
function encoded(headers: IncomingHttpHeaders): boolean {
  const ce = headers['content-encoding'];
  if (ce === undefined) return false;
  const v = ce.trim().toLowerCase();
  return v !== '' && v !== 'identity';
}

/** The first character that is not JSON whitespace opens an object or an array. */
function looksLikeJson(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
    return c === 0x7b /* { */ || c === 0x5b; /* [ */
  }
  return false;
}

function own(obj: unknown, key: string): unknown {
  if (obj === null || typeof obj !== 'object') return undefined;
  // Own properties only: a field named `constructor` must not read Object's prototype.
  return Object.hasOwn(obj, key) ? (obj as Record<string, unknown>)[key] : undefined;
}

interface FormBody {
  fields: Record<string, string>;
  /** Keys sent more than once: PHP takes the last, Express makes an array, the proxy neither. */
  repeated: Set<string> | undefined;
}

function formObject(params: URLSearchParams): FormBody {
  const fields: Record<string, string> = Object.create(null) as Record<string, string>;
  let repeated: Set<string> | undefined;
  for (const [k, v] of params) {
    if (k in fields) (repeated ??= new Set()).add(k);
    else fields[k] = v;
  }
  return { fields, repeated };
}

function setPath(root: Record<string, unknown>, target: readonly string[], value: unknown): void {
  let node = root;
  for (let i = 0; i < target.length - 1; i++) {
    const seg = target[i]!;
    const next = node[seg];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) {
      const fresh: Record<string, unknown> = {};
      node[seg] = fresh;
      node = fresh;
    } else {
      node = next as Record<string, unknown>;
    }
  }
  node[target[target.length - 1]!] = value;
}

const NONE: readonly string[] = Object.freeze([]);

export interface BuiltContext {
  body: Record<string, unknown>;
  session: string | null;
  /** The body was there but could not be read (encoded, not valid JSON, of another type). */
  bodyUnreadable: boolean;
  /**
   * Targets left out because their value could not be seen as the origin sees it (an unreadable
   * body, a repeated form field), as `transaction.amount`; for the decision's `dropped`.
   */
  dropped: readonly string[];
}

/**
 * Builds the decision context: `device` (ip, user_agent, session), `metadata` (route, method,
 * path) and whatever the extractors find. Metadata values are strings (the decision API's
 * contract) cut to 512 characters.
 */
export function buildDecisionContext(
  extractors: readonly CompiledExtractor[],
  facts: RequestFacts,
  session: SessionSpec | null,
  route: string,
): BuiltContext {
  const sessionId = sessionOf(facts.headers, session);
  const device: Record<string, unknown> = { ip: facts.ip };
  const ua = headerValue(facts.headers, 'user-agent');
  if (ua) device.user_agent = ua;
  if (sessionId) device.session = sessionId;
  const body: Record<string, unknown> = {
    device,
    metadata: {
      route,
      method: facts.method,
      path: facts.path.slice(0, METADATA_VALUE_MAX),
    },
  };

  let parsedBody: unknown;
  let bodyKind: BodyKind | undefined;
  let repeated: Set<string> | undefined;
  let dropped: string[] | undefined;
  let query: URLSearchParams | undefined;
  const readBody = (): BodyKind => {
    if (bodyKind !== undefined) return bodyKind;
    const raw = facts.body;
    if (!raw || raw.length === 0) return (bodyKind = 'none');
    if (encoded(facts.headers)) return (bodyKind = 'unreadable');
    const kind = contentKind(facts.headers);
    let text = raw.toString('utf8');
    if (kind === 'form') {
      const form = formObject(new URLSearchParams(text));
      parsedBody = form.fields;
      repeated = form.repeated;
      return (bodyKind = 'form');
    }
    // Express and most JSON parsers skip a byte order mark.
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    // Many origins parse JSON whatever the content type says (or without one): a body that
    // looks like JSON is read as JSON; any other body of another type cannot be read.
    if (kind === 'other' && !looksLikeJson(text)) return (bodyKind = 'unreadable');
    try {
      parsedBody = JSON.parse(text);
      return (bodyKind = 'json');
    } catch {
      return (bodyKind = 'unreadable');
    }
  };

  for (const e of extractors) {
    let raw: unknown;
    switch (e.from) {
      case 'body':
      case 'form': {
        const kind = readBody();
        if (kind === 'none') break;
        if (kind === 'form') {
          if (repeated?.has(e.key)) {
            (dropped ??= []).push(e.target.join('.'));
            continue;
          }
          raw = own(parsedBody, e.key);
          break;
        }
        // JSON counts as unreadable for a `form` field: an origin that parses both reads it there.
        if (kind === 'unreadable' || e.from === 'form') {
          (dropped ??= []).push(e.target.join('.'));
          continue;
        }
        let node = parsedBody;
        for (const seg of e.keyPath)
          node = Array.isArray(node) ? node[Number(seg)] : own(node, seg);
        raw = node;
        break;
      }
      case 'query':
        if (query === undefined) query = new URLSearchParams(facts.search);
        raw = query.get(e.key) ?? undefined;
        break;
      case 'header':
        raw = headerValue(facts.headers, e.key);
        break;
      case 'cookie':
        raw = cookieValue(headerValue(facts.headers, 'cookie'), e.key);
        break;
    }
    let value = coerce(raw, e.type);
    if (value === undefined) continue;
    if (e.target[0] === 'metadata') {
      if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
        continue;
      }
      value = String(value).slice(0, METADATA_VALUE_MAX);
    }
    setPath(body, e.target, value);
  }
  return {
    body,
    session: sessionId,
    bodyUnreadable: bodyKind === 'unreadable',
    dropped: dropped ?? NONE,
  };
}
