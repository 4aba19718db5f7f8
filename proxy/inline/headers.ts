// Header rewriting between client and origin. Hop-by-hop headers describe one connection and
// must not cross the proxy (RFC 9110 §7.6.1): forwarding Connection or Transfer-Encoding would
// let a client dictate how the origin frames the next message, the root of request smuggling.
// Framing to the origin is undici's (Content-Length or chunked), never the client's.

/** Request headers never forwarded as they came. */
const DROP_REQUEST = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  // undici writes Host for the origin, and refuses Expect (Node answered 100-continue already).
  'host',
  'expect',
  // Rewritten below; a client must not choose what the origin believes about it.
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-real-ip',
]);

/** Response headers never passed back as they came. */
const DROP_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Names listed in a Connection header are hop-by-hop too (`Connection: close, x-secret`). */
export function connectionTokens(value: string | undefined): Set<string> | null {
  if (!value) return null;
  // The usual values name no other header; no set to build on every message.
  const v = value.length <= 10 ? value.toLowerCase() : '';
  if (v === 'keep-alive' || v === 'close' || v === 'upgrade') return null;
  const tokens = new Set<string>();
  for (const t of value.split(',')) {
    const name = t.trim().toLowerCase();
    if (name) tokens.add(name);
  }
  return tokens;
}

/**
 * How many Host field lines the request has. Node keeps only the first in `headers.host`, so
 * two of them would otherwise go unnoticed, and the proxy and the origin could each believe a
 * different one (RFC 9112 §3.2: 400).
 */
export function hostCount(rawHeaders: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 4 && (name === 'Host' || name.toLowerCase() === 'host')) n++;
  }
  return n;
}

export interface ForwardedFacts {
  /** The socket peer (normalized). */
  peer: string;
  /** The client address rules saw (X-Real-IP for the origin). */
  clientIp: string;
  /** The peer is a trusted proxy: its X-Forwarded-Proto/Host describe the original request. */
  peerTrusted: boolean;
  proto: 'http' | 'https';
}

export interface OriginHeaderOptions {
  /** Keep Content-Length (the body is streamed through as received). */
  keepContentLength: boolean;
  /** Keep `Connection: upgrade` and `Upgrade` (WebSocket pass-through). */
  upgrade?: boolean;
  /** Appended after the client's headers (`x-vigil-decision` …). */
  extra?: readonly string[];
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The request headers for the origin, as a flat [name, value, …] list keeping the client's
 * order and casing. Client-sent `x-vigil-*` headers are dropped: only the proxy may say what
 * was decided.
 */
export function originRequestHeaders(
  rawHeaders: readonly string[],
  headers: NodeJS.Dict<string | string[]>,
  facts: ForwardedFacts,
  opts: OriginHeaderOptions,
): string[] {
  const out: string[] = [];
  const tokens = connectionTokens(first(headers.connection));
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    // An upgrade's Connection and Upgrade are re-added below in a canonical form.
    if (DROP_REQUEST.has(lower)) continue;
    if (lower === 'content-length' && !opts.keepContentLength) continue;
    if (lower.startsWith('proxy-') || lower.startsWith('x-vigil-')) continue;
    if (tokens !== null && tokens.has(lower)) continue;
    out.push(name, rawHeaders[i + 1]!);
  }
  const prior = headers['x-forwarded-for'];
  const priorList = Array.isArray(prior) ? prior.join(', ') : prior;
  out.push('x-forwarded-for', priorList ? `${priorList}, ${facts.peer}` : facts.peer);
  const proto = facts.peerTrusted ? first(headers['x-forwarded-proto']) : undefined;
  out.push('x-forwarded-proto', proto ?? facts.proto);
  const host =
    (facts.peerTrusted ? first(headers['x-forwarded-host']) : undefined) ?? first(headers.host);
  if (host) out.push('x-forwarded-host', host);
  out.push('x-real-ip', facts.clientIp);
  if (opts.upgrade) {
    const upgrade = first(headers.upgrade);
    if (upgrade) out.push('connection', 'upgrade', 'upgrade', upgrade);
  }
  if (opts.extra) out.push(...opts.extra);
  return out;
}

/** The origin's response headers for the client, hop-by-hop ones removed. */
export function clientResponseHeaders(raw: readonly (Buffer | string)[]): string[] {
  const out: string[] = [];
  let tokens: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1');
    const lower = name.toLowerCase();
    if (lower === 'connection') tokens = connectionTokens(raw[i + 1]!.toString('latin1'));
    if (DROP_RESPONSE.has(lower) || lower.startsWith('proxy-')) continue;
    out.push(name, raw[i + 1]!.toString('latin1'));
  }
  if (tokens === null) return out;
  const kept: string[] = [];
  for (let i = 0; i < out.length; i += 2) {
    if (!tokens.has(out[i]!.toLowerCase())) kept.push(out[i]!, out[i + 1]!);
  }
  return kept;
}
