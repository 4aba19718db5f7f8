// The outbound HTTP client of one integration: an undici Pool on the integration's origin with a
// bounded number of connections, TLS verified, no redirects, no retries (a retry belongs to the
// workflow's policy, never to a call under a decision deadline), every connect through the
// egress guard, every request under one abort signal (the caller's and the budget's), responses
// capped in size before and after decompression. Auth headers are added here, so a kind or a
// template never sees them. Errors carry stable codes and never a secret or a body.
import { createHmac } from 'node:crypto';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { buildConnector, errors as undiciErrors, Pool } from 'undici';
import { effectivePort, type EgressPolicy, canonicalIp } from './egress.ts';
import { IntegrationError, isIntegrationError, retryableStatus } from './errors.ts';
import type { AuthConfig } from './schema.ts';
import type { HttpMethod } from './kinds/kind.ts';

export const HTTP_LIMITS = {
  maxResponseBytes: 1024 * 1024,
  maxEncodings: 2,
  connectTimeoutMs: 5_000,
  /** Pool-wide ceilings; each request sets its own, from its budget. */
  headersTimeoutMs: 30_000,
  bodyTimeoutMs: 30_000,
  keepAliveTimeoutMs: 10_000,
} as const;

/** How far past the budget undici's own header/body timeouts sit: backstops, never the cause. */
const BACKSTOP_MS = 25;

export interface HttpRequest {
  method: HttpMethod;
  /** Path and query under the base URL's path, starting with '/'. */
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** The whole call's budget, ms (connect, headers and body). */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The decoded body. */
  body: Buffer;
}

export interface IntegrationHttpOptions {
  baseUrl: string;
  auth: AuthConfig;
  connections: number;
  egress: EgressPolicy;
  maxResponseBytes?: number;
  now?: () => number;
}

export class IntegrationHttp {
  readonly origin: string;
  readonly #basePath: string;
  readonly #pool: Pool;
  readonly #auth: AuthConfig;
  readonly #cap: number;
  readonly #now: () => number;
  /** For an IP-literal origin, the refusal decided once (the allow list does not change). */
  readonly #literalRefusal: string | undefined;

  constructor(opts: IntegrationHttpOptions) {
    const url = new URL(opts.baseUrl);
    this.origin = url.origin;
    this.#basePath = url.pathname.replace(/\/+$/, '');
    this.#auth = opts.auth;
    this.#cap = opts.maxResponseBytes ?? HTTP_LIMITS.maxResponseBytes;
    this.#now = opts.now ?? Date.now;
    const port = effectivePort(url);
    const literal = canonicalIp(url.hostname.replace(/^\[|\]$/g, ''));
    this.#literalRefusal =
      literal === undefined ? undefined : opts.egress.check(url.hostname, port, literal);

    const egress = opts.egress;
    // rejectUnauthorized stays at its default (true): certificates are always verified.
    const base = buildConnector({ timeout: HTTP_LIMITS.connectTimeoutMs });
    const connect: buildConnector.connector = (o, cb) => {
      const p = Number(o.port) || (o.protocol === 'https:' ? 443 : 80);
      egress.resolve(o.hostname, p).then(
        // The checked address is the one connected to; SNI and certificate checks keep the name
        // (undici derives servername from `host`).
        (address) => base({ ...o, hostname: address }, cb),
        (err: unknown) => cb(err as Error, null),
      );
    };
    this.#pool = new Pool(this.origin, {
      connections: opts.connections,
      pipelining: 1,
      connect,
      headersTimeout: HTTP_LIMITS.headersTimeoutMs,
      bodyTimeout: HTTP_LIMITS.bodyTimeoutMs,
      keepAliveTimeout: HTTP_LIMITS.keepAliveTimeoutMs,
    });
  }

  async request(req: HttpRequest): Promise<HttpResponse> {
    if (this.#literalRefusal) {
      throw new IntegrationError('egress_refused', this.#literalRefusal, { retryable: false });
    }
    const budget = Math.max(1, Math.floor(req.timeoutMs));
    const timeout = AbortSignal.timeout(budget);
    const signal = req.signal ? AbortSignal.any([req.signal, timeout]) : timeout;
    const headers: Record<string, string> = { ...req.headers, ...this.#authHeaders(req.body) };
    // The answer is due when the signal fires, not when undici has torn the connection down:
    // the caller is answered from the abort event, and undici is told one macrotask later, so
    // its synchronous teardown runs after the decision has gone on (its own header and body
    // timeouts sit a little past the budget, as backstops).
    const undici = new AbortController();
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => {
        reject(new Error('aborted'));
        setImmediate(() => undici.abort(signal.reason));
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    const work = this.#exchange(req, headers, undici.signal, budget + BACKSTOP_MS);
    try {
      return await Promise.race([work, aborted]);
    } catch (err) {
      throw classify(err, { timeout, caller: req.signal, budget });
    } finally {
      signal.removeEventListener('abort', onAbort!);
      work.catch(() => {});
      aborted.catch(() => {});
    }
  }

  async #exchange(
    req: HttpRequest,
    headers: Record<string, string>,
    signal: AbortSignal,
    budget: number,
  ): Promise<HttpResponse> {
    const res = await this.#pool.request({
      method: req.method,
      path: this.#basePath + req.path,
      headers,
      body: req.body ?? null,
      signal,
      headersTimeout: budget,
      bodyTimeout: budget,
    });
    if (res.statusCode >= 300 && res.statusCode < 400) {
      await res.body.dump().catch(() => {});
      throw new IntegrationError(
        'redirect',
        `answered HTTP ${res.statusCode}; redirects are not followed`,
        { retryable: false, status: res.statusCode },
      );
    }
    const raw = await readCapped(res.body, res.headers['content-length'], this.#cap);
    const body = decode(raw, res.headers['content-encoding'], this.#cap);
    return { status: res.statusCode, headers: res.headers, body };
  }

  #authHeaders(body: string | undefined): Record<string, string> {
    const a = this.#auth;
    switch (a.type) {
      case 'none':
        return {};
      case 'bearer':
        return { authorization: `Bearer ${a.token}` };
      case 'basic':
        return {
          authorization: `Basic ${Buffer.from(`${a.username}:${a.password}`, 'utf8').toString('base64')}`,
        };
      case 'header':
        return { [a.name.toLowerCase()]: a.value };
      case 'hmac': {
        const ts = String(Math.floor(this.#now() / 1000));
        return {
          'x-vigil-timestamp': ts,
          [a.header.toLowerCase()]: `sha256=${hmacSignature(a.secret, ts, body ?? '')}`,
        };
      }
    }
  }

  async close(): Promise<void> {
    await this.#pool.close().catch(() => this.#pool.destroy());
  }
}

/** HMAC-SHA256 over `"{timestamp}.{raw body}"`, hex: what `auth.type: hmac` sends. */
export function hmacSignature(secret: string, timestamp: string, body: string): string {
  return createHmac('sha256', secret).update(`${timestamp}.${body}`, 'utf8').digest('hex');
}

async function readCapped(
  body: AsyncIterable<Buffer> & { destroy(err?: Error): unknown },
  contentLength: string | string[] | undefined,
  cap: number,
): Promise<Buffer> {
  const declared = typeof contentLength === 'string' ? Number(contentLength) : NaN;
  if (declared > cap) {
    body.destroy();
    throw tooLarge(cap);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (total > cap) {
      body.destroy();
      throw tooLarge(cap);
    }
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
}

const tooLarge = (cap: number) =>
  new IntegrationError('response_too_large', `the answer is larger than ${cap} bytes`);

function decode(raw: Buffer, header: string | string[] | undefined, cap: number): Buffer {
  // An empty body (204, HEAD-like answers) has nothing to decode, whatever the header says.
  if (header === undefined || raw.length === 0) return raw;
  const codings = (Array.isArray(header) ? header.join(',') : header)
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return raw;
  if (codings.length > HTTP_LIMITS.maxEncodings) {
    throw new IntegrationError(
      'bad_encoding',
      `more than ${HTTP_LIMITS.maxEncodings} content encodings`,
    );
  }
  let out = raw;
  // Codings are listed in the order they were applied: undo them from the last.
  for (const c of codings.reverse()) {
    const opts = { maxOutputLength: cap };
    try {
      if (c === 'gzip' || c === 'x-gzip') out = gunzipSync(out, opts);
      else if (c === 'deflate') out = inflateSync(out, opts);
      else if (c === 'br') out = brotliDecompressSync(out, opts);
      else
        throw new IntegrationError(
          'bad_encoding',
          `unsupported content encoding '${c.slice(0, 20)}'`,
        );
    } catch (err) {
      if (isIntegrationError(err)) throw err;
      if (
        (err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE' ||
        err instanceof RangeError
      ) {
        throw tooLarge(cap);
      }
      throw new IntegrationError('bad_encoding', `the ${c} body does not decode`);
    }
  }
  return out;
}

function classify(
  err: unknown,
  ctx: { timeout: AbortSignal; caller: AbortSignal | undefined; budget: number },
): IntegrationError {
  if (isIntegrationError(err)) return err;
  if (ctx.timeout.aborted)
    return new IntegrationError('timeout', `no answer within ${ctx.budget} ms`);
  if (ctx.caller?.aborted) return new IntegrationError('aborted', 'the caller gave up on the call');
  if (
    err instanceof undiciErrors.HeadersTimeoutError ||
    err instanceof undiciErrors.BodyTimeoutError ||
    err instanceof undiciErrors.ConnectTimeoutError
  ) {
    return new IntegrationError('timeout', `no answer within ${ctx.budget} ms`);
  }
  const code = (err as { code?: unknown }).code;
  if (err instanceof undiciErrors.ResponseExceededMaxSizeError) return tooLarge(0);
  // Only the error code: a system message can name the address, which is fine, but a TLS or
  // parser message could quote bytes from the answer.
  return new IntegrationError(
    'connection',
    `the connection failed${typeof code === 'string' ? ` (${code})` : ''}`,
  );
}

/** Parses a JSON answer; `invalid_json` otherwise. */
export function parseJson(res: HttpResponse): unknown {
  try {
    return JSON.parse(res.body.toString('utf8')) as unknown;
  } catch {
    throw new IntegrationError('invalid_json', `the answer (HTTP ${res.status}) is not JSON`);
  }
}

/** A non-2xx answer as an error: retryable per its status, Retry-After honoured on 429/503. */
export function statusError(res: HttpResponse, nowMs: number): IntegrationError {
  const opts: { retryable: boolean; status: number; retryAfterMs?: number } = {
    retryable: retryableStatus(res.status),
    status: res.status,
  };
  if (res.status === 429 || res.status === 503) {
    const ra = retryAfterMs(res.headers['retry-after'], nowMs);
    if (ra !== undefined) opts.retryAfterMs = ra;
  }
  return new IntegrationError('http_status', `answered HTTP ${res.status}`, opts);
}

/** `Retry-After` as milliseconds from now: delta-seconds or an HTTP date; capped at a day. */
export function retryAfterMs(v: string | string[] | undefined, nowMs: number): number | undefined {
  const s = (Array.isArray(v) ? v[0] : v)?.trim();
  if (!s) return undefined;
  const DAY = 86_400_000;
  if (/^\d+$/.test(s)) return Math.min(DAY, Number(s) * 1000);
  const at = Date.parse(s);
  if (Number.isNaN(at)) return undefined;
  return Math.min(DAY, Math.max(0, at - nowMs));
}
