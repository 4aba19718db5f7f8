// The inline proxy: node:http in front, undici behind. Pass-through routes stream both ways
// untouched; monitored routes extract, decide and enforce (CONTRACT §5). The server answers
// nothing itself but block responses and its own errors (JSON, never a stack).
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { Registry } from 'prom-client';
import { clientAddress, normalizeIp, toTrustedProxies, type TrustedProxies } from './client-ip.ts';
import {
  renderBlock,
  STARTUP_LIMITS,
  type CompiledConfig,
  type CompiledRoute,
  type Limits,
} from './config.ts';
import { buildDecisionContext } from './extract.ts';
import {
  createOriginPool,
  originKey,
  forward,
  sendJson,
  type OriginPool,
  type UpstreamFailure,
} from './forward.ts';
import { hostCount, originRequestHeaders, type ForwardedFacts } from './headers.ts';
import { parseTarget, type RequestTarget } from './match.ts';
import { decisionMetrics, proxyMetrics, type ProxyMetrics } from './metrics.ts';
import { openConfigSource, type ConfigSource, type ReloadResult } from './source.ts';
import type {
  DecideFn,
  FailOpenReason,
  OnRequestEvent,
  ProxyDecision,
  ProxyLogger,
  RequestEvent,
} from './types.ts';
import { stderrLogger } from './types.ts';
import { writeBurst } from '../flush.ts';
import { decideWithin, type DecideResult } from './decide.ts';
import { handleUpgrade } from './upgrade.ts';

export interface InlineProxyOptions {
  /** A route file path (watched, SIGHUP reloads), a route document, or a compiled config. */
  config: string | object | CompiledConfig;
  decide: DecideFn;
  /** VIGIL_TRUSTED_PROXIES entries (IPs, CIDRs, `loopback`, `private`), or parsed. */
  trustedProxies?: readonly string[] | TrustedProxies | undefined;
  registry?: Registry | undefined;
  onRequestEvent?: OnRequestEvent | undefined;
  /** Defaults for `limits` (the route file's own `limits` override them). */
  limits?: Partial<Limits> | undefined;
  log?: ProxyLogger | undefined;
  watch?: boolean | undefined;
  sighup?: boolean | undefined;
}

export interface InlineProxy {
  server: http.Server;
  listen(port?: number, host?: string): Promise<AddressInfo>;
  /** Stops accepting, lets requests in flight finish for `graceMs`, then cuts the rest. */
  close(graceMs?: number): Promise<void>;
  reload(doc?: unknown): Promise<ReloadResult>;
  readonly config: CompiledConfig;
  readonly version: number;
  readonly metrics: ProxyMetrics;
}

type BodyResult = Buffer | 'too_large' | 'aborted';

/** Buffers a request body up to `limit` bytes; stops reading (and says so) past it. */
function readBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onAbort);
      req.off('close', onAbort);
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        cleanup();
        req.pause();
        resolve('too_large');
        return;
      }
      chunks.push(c);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onAbort = () => {
      cleanup();
      resolve('aborted');
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onAbort);
    req.on('close', onAbort);
  });
}

/** The request has a body not read yet (a GET has none, even before Node marks it complete). */
function bodyPending(req: IncomingMessage): boolean {
  if (req.complete) return false;
  const cl = req.headers['content-length'];
  return cl !== undefined ? cl !== '0' : req.headers['transfer-encoding'] !== undefined;
}

const CLIENT_ERROR_STATUS: Record<string, [number, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'request_header_fields_too_large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request_timeout'],
};

function rawJson(status: number, reason: string, body: Record<string, unknown>): string {
  const text = JSON.stringify(body);
  return (
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`
  );
}

/**
 * How long a stopping proxy lets requests in flight finish: as long as its slowest route may
 * take (origin timeout plus the decision), capped at 30 s (under systemd's default 90 s stop
 * timeout); 2 s at least. A fixed 2 s cut requests a route allowed 10 s for.
 */
export function shutdownGraceMs(proxy: Pick<InlineProxy, 'config'>): number {
  const c = proxy.config;
  let longest = 0;
  for (const r of c.routes) longest = Math.max(longest, r.timeoutMs);
  return Math.min(30_000, Math.max(2_000, longest + c.limits.decision_timeout_ms));
}

export function createInlineProxy(opts: InlineProxyOptions): InlineProxy {
  const log = opts.log ?? stderrLogger;
  const registry = opts.registry ?? new Registry();
  const metrics = proxyMetrics(registry);
  const trusted: TrustedProxies = toTrustedProxies(opts.trustedProxies);
  const decide = opts.decide;
  const onEvent = opts.onRequestEvent;

  const source: ConfigSource = openConfigSource({
    config: opts.config,
    limitDefaults: opts.limits,
    watch: opts.watch,
    sighup: opts.sighup,
    log,
    onResult: (r) =>
      metrics.reloads.inc({ result: r.ok ? (r.changed ? 'ok' : 'unchanged') : 'error' }),
  });
  let cfg = source.current();
  metrics.configVersion.set(cfg.version);
  const startLimits = cfg.limits;

  let pools = new Map<string, OriginPool>();
  const buildPools = (c: CompiledConfig, old: Map<string, OriginPool>) => {
    const next = new Map<string, OriginPool>();
    for (const [name, spec] of c.origins) {
      const prev = old.get(name);
      // Same origin, same settings: keep the pool and its warm connections.
      next.set(
        name,
        prev && prev.key === originKey(spec, c.limits) ? prev : createOriginPool(spec, c.limits),
      );
    }
    return next;
  };
  pools = buildPools(cfg, pools);

  source.onChange((next, prev) => {
    const old = pools;
    pools = buildPools(next, old);
    cfg = next;
    metrics.configVersion.set(next.version);
    for (const key of STARTUP_LIMITS) {
      if (next.limits[key] !== prev.limits[key]) {
        log.warn(
          { limit: key },
          'proxy limit changed in the route file; it applies after a restart',
        );
      }
    }
    // Requests already holding a retired pool get to finish on it.
    const retired = [...old.values()].filter((p) => ![...pools.values()].includes(p));
    if (retired.length) {
      setTimeout(() => {
        for (const p of retired) void p.pool.close();
      }, 10_000).unref();
    }
  });

  const limits = startLimits;
  const server = http.createServer({
    maxHeaderSize: limits.max_header_size,
    // Never the lenient parser: it accepts the ambiguous framing that smuggling relies on.
    insecureHTTPParser: false,
    // Checked in onRequest instead: Node's own 400 has an empty body, ours is JSON.
    requireHostHeader: false,
    joinDuplicateHeaders: false,
    headersTimeout:
      limits.request_timeout_ms > 0
        ? Math.min(limits.headers_timeout_ms, limits.request_timeout_ms)
        : limits.headers_timeout_ms,
    requestTimeout: limits.request_timeout_ms,
    keepAliveTimeout: limits.keep_alive_timeout_ms,
    // Node checks the two timeouts above on this interval (30 s by default): a slowloris
    // client would otherwise outlive headers_timeout_ms by up to that much.
    connectionsCheckingInterval: Math.max(100, Math.min(1_000, limits.headers_timeout_ms / 4)),
  });
  // Node drops headers past maxHeadersCount silently; one more than the limit lets the handler
  // see the overflow and refuse the request (431) instead of forwarding it truncated.
  server.maxHeadersCount = limits.max_headers_count + 1;
  server.maxConnections = limits.max_connections;
  server.timeout = 0;

  // The response in progress on a socket, for clientError (a symbol property: cheaper per
  // request than a WeakMap entry).
  const kResponding = Symbol('vigil.responding');
  type Tracked = (Socket | Duplex) & { [kResponding]?: ServerResponse };
  const upgraded = new Set<Duplex>();
  let inflight = 0;

  const factsOf = (req: IncomingMessage): ForwardedFacts => {
    const peer = normalizeIp(req.socket.remoteAddress ?? '');
    const peerTrusted = trusted.has(peer);
    return {
      peer,
      peerTrusted,
      clientIp: peerTrusted
        ? clientAddress(peer, req.headers['x-forwarded-for'], trusted, true)
        : peer,
      proto: 'http',
    };
  };

  const reject = (
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    error: string,
    message: string,
    route = '(none)',
    close = false,
  ) => {
    metrics.rejected.inc({ reason: error });
    metrics.countRequest(route, status);
    // Keep the connection only if the request was read to its end; otherwise the rest of its
    // body would be read as the next request, or drained at length.
    sendJson(
      res,
      status,
      { error, message },
      { close: close || bodyPending(req) || status >= 500 },
    );
  };

  const emit = (e: RequestEvent) => {
    if (!onEvent) return;
    try {
      onEvent(e);
    } catch (err) {
      log.warn({ error: (err as Error).message }, 'request event sink threw');
    }
  };

  /** `expectContinue`: the client waits for `100 Continue` before it sends the body. */
  function onRequest(req: IncomingMessage, res: ServerResponse, expectContinue = false): void {
    // Node emits pipelined requests as soon as it parses them, before those ahead of them are
    // answered, and gives a response the socket only once the previous one is written and the
    // connection stays open. Waiting for it keeps a request queued behind an answer that closes
    // the connection (a block page, a refused body) from being decided or forwarded.
    if (res.socket === null) {
      res.once('socket', () => onRequest(req, res, expectContinue));
      return;
    }
    const socket = req.socket as Tracked;
    // Parsed after such an answer was written (its unread body released the parser).
    if (socket.writableEnded) return;
    socket[kResponding] = res;
    const c = cfg;
    if (req.httpVersionMajor !== 1) {
      reject(req, res, 505, 'http_version_not_supported', 'HTTP/1.0 or HTTP/1.1 only');
      return;
    }
    const hosts = hostCount(req.rawHeaders);
    if (hosts !== 1 && (hosts > 1 || req.httpVersionMinor === 1)) {
      const message = hosts > 1 ? 'more than one Host header' : 'the Host header is required';
      // Closed: what follows a message the origin might read differently is not trusted either.
      reject(req, res, 400, 'bad_request', message, '(none)', true);
      return;
    }
    const target = parseTarget(req.url ?? '');
    if (target === null) {
      reject(req, res, 400, 'bad_request', 'the request target must be a path');
      return;
    }
    const te = req.headers['transfer-encoding'];
    // Node decodes only `chunked`; anything else would reach the origin still encoded and
    // re-framed by us, a mismatch between what we parsed and what it parses.
    if (te !== undefined && te.trim().toLowerCase() !== 'chunked') {
      reject(req, res, 400, 'bad_request', 'unsupported transfer-encoding');
      return;
    }
    if (req.rawHeaders.length > limits.max_headers_count * 2) {
      reject(req, res, 431, 'request_header_fields_too_large', 'too many header fields');
      return;
    }
    const method = req.method ?? 'GET';
    const route = c.match(method, target.matchPath.toLowerCase());
    if (route === undefined) {
      reject(req, res, 404, 'not_found', 'no route for this request');
      return;
    }
    const origin = pools.get(route.origin);
    if (origin === undefined) {
      reject(req, res, 502, 'bad_gateway', `origin ${route.origin} is not configured`, route.label);
      return;
    }
    const cl = req.headers['content-length'];
    const hasBody = cl !== undefined ? cl !== '0' : te !== undefined;
    if (route.context === null) {
      const facts = factsOf(req);
      if (expectContinue && hasBody) res.writeContinue();
      forward({
        origin,
        method,
        path: target.path + target.search,
        headers: originRequestHeaders(req.rawHeaders, req.headers, facts, {
          keepContentLength: hasBody,
        }),
        body: hasBody ? req : null,
        timeoutMs: route.timeoutMs,
        res,
        onDone: (status) => metrics.countRequest(route.label, status),
        onFailure: (kind, err) => upstreamFailure(origin, kind, err),
      });
      return;
    }
    monitored(req, res, c, route, target, hasBody, expectContinue).catch((err: unknown) => {
      log.error({ error: (err as Error).message, route: route.label }, 'monitored request failed');
      if (!res.headersSent)
        sendJson(res, 500, { error: 'internal', message: 'internal error' }, { close: true });
      else res.destroy();
    });
  }

  const labelled = decisionMetrics(metrics, 'proxy');

  const lastFailureLog = new Map<string, number>();
  function upstreamFailure(origin: OriginPool, kind: UpstreamFailure, err: Error): void {
    if (kind === 'client') return;
    metrics.upstreamErrors.inc({ origin: origin.name, kind });
    // One line per origin and kind every 5 s: an origin down must not flood the log.
    const key = `${origin.name}:${kind}`;
    const now = Date.now();
    if ((lastFailureLog.get(key) ?? 0) + 5_000 <= now) {
      lastFailureLog.set(key, now);
      log.warn(
        { origin: origin.name, kind, error: err.message, code: (err as { code?: string }).code },
        'origin request failed',
      );
    }
  }

  async function monitored(
    req: IncomingMessage,
    res: ServerResponse,
    c: CompiledConfig,
    route: CompiledRoute,
    target: RequestTarget,
    hasBody: boolean,
    expectContinue: boolean,
  ): Promise<void> {
    const t0 = performance.now();
    const method = req.method ?? 'GET';
    const context = route.context!;
    const facts = factsOf(req);
    const event = (
      status: number,
      d: ProxyDecision | null,
      failOpen: FailOpenReason | null,
      session: string | null,
    ) =>
      emit({
        method,
        path: target.path,
        route: route.label,
        context,
        mode: route.mode,
        status,
        decision_id: d?.id ?? null,
        decision: d?.decision ?? null,
        fail_open: failOpen,
        ip: facts.clientIp,
        elapsed_ms: Math.round((performance.now() - t0) * 1000) / 1000,
        session,
        ...(d?.dropped ? { dropped: d.dropped } : {}),
      });
    const send = (
      body: Buffer | null,
      streamBody: boolean,
      extra: string[],
      done: (status: number) => void,
    ) => {
      const origin = pools.get(route.origin);
      if (!origin) {
        reject(
          req,
          res,
          502,
          'bad_gateway',
          `origin ${route.origin} is not configured`,
          route.label,
        );
        done(502);
        return;
      }
      const headers = originRequestHeaders(req.rawHeaders, req.headers, facts, {
        keepContentLength: streamBody,
        extra: body ? [...extra, 'content-length', String(body.length)] : extra,
      });
      // Asked for only when the body is about to be read (here or by readBody below, never
      // both): a request refused before that (413 by its Content-Length, a block) is answered
      // without the client sending its body at all.
      if (streamBody && expectContinue) res.writeContinue();
      forward({
        origin,
        method,
        path: target.path + target.search,
        headers,
        body: streamBody ? req : body,
        timeoutMs: route.timeoutMs,
        res,
        onDone: (status) => {
          metrics.countRequest(route.label, status);
          done(status);
        },
        onFailure: (kind, err) => upstreamFailure(origin, kind, err),
      });
    };

    if (inflight >= c.limits.max_inflight_decisions) {
      const policy = c.limits.overload;
      metrics.overload.inc({ policy });
      metrics.failOpen.inc({ context, reason: 'overload', source: 'proxy' });
      if (policy === 'reject') {
        metrics.countRequest(route.label, 503);
        sendJson(
          res,
          503,
          { error: 'overloaded', message: 'too many requests being checked; retry shortly' },
          {
            close: hasBody,
            headers: { 'retry-after': String(c.limits.retry_after_seconds) },
          },
        );
        event(503, null, 'overload', null);
        return;
      }
      send(null, hasBody, [], (status) => event(status, null, 'overload', null));
      return;
    }

    inflight++;
    metrics.inflight.set(inflight);
    let body: Buffer | null = null;
    let outcome: DecideResult;
    let session: string | null;
    let tDecide: number;
    try {
      if (hasBody && route.needsBody) {
        const declared = req.headers['content-length'];
        if (declared !== undefined && Number(declared) > route.bodyLimit) {
          reject(
            req,
            res,
            413,
            'payload_too_large',
            `body over ${route.bodyLimit} bytes`,
            route.label,
          );
          return;
        }
        if (expectContinue) res.writeContinue();
        const read = await readBody(req, route.bodyLimit);
        if (read === 'aborted') return;
        if (read === 'too_large') {
          reject(
            req,
            res,
            413,
            'payload_too_large',
            `body over ${route.bodyLimit} bytes`,
            route.label,
          );
          return;
        }
        body = read;
      }
      tDecide = performance.now();
      const built = buildDecisionContext(
        route.extractors,
        {
          method,
          path: target.path,
          search: target.search,
          headers: req.headers,
          ip: facts.clientIp,
          body: body ?? undefined,
        },
        c.session,
        route.label,
      );
      session = built.session;
      outcome = await decideWithin(
        decide,
        {
          context,
          body: built.body,
          source: 'proxy',
          ...(built.dropped.length ? { dropped: built.dropped } : {}),
        },
        c.limits.decision_timeout_ms,
      );
    } finally {
      inflight--;
      metrics.inflight.set(inflight);
    }
    labelled.timer(context).observe((performance.now() - tDecide) / 1000);
    if (res.destroyed) return;
    // Body not buffered: it is still on the wire and goes to the origin as a stream.
    const streamBody = hasBody && body === null;

    if (outcome === 'error' || outcome === 'timeout') {
      metrics.failOpen.inc({ context, reason: outcome, source: 'proxy' });
      send(body, streamBody, [], (status) => event(status, null, outcome, session));
      return;
    }
    const d = outcome;
    labelled.counter(context, d.decision, route.mode).inc();
    if (route.mode === 'active' && d.decision === 'BLOCK') {
      const b = route.block;
      const text = renderBlock(b, d.id);
      const headers: Record<string, string | number> = {
        'content-type': b.contentType,
        'content-length': Buffer.byteLength(text),
        'cache-control': 'no-store',
        'x-vigil-decision': d.decision,
        'x-vigil-decision-id': d.id,
      };
      for (const [k, v] of b.headers) headers[k] = v.split('{{decision_id}}').join(d.id);
      if (bodyPending(req)) headers.connection = 'close';
      // Written with the other answers of this loop pass, like forwarded ones (../flush.ts).
      await writeBurst();
      if (!res.destroyed) {
        res.writeHead(b.status, headers);
        res.end(text);
      }
      metrics.countRequest(route.label, b.status);
      event(b.status, d, null, session);
      return;
    }
    const extra = ['x-vigil-decision', d.decision, 'x-vigil-decision-id', d.id];
    if (route.mode === 'passive') extra.push('x-vigil-mode', 'passive');
    send(body, streamBody, extra, (status) => event(status, d, null, session));
  }

  server.on('request', onRequest);
  // Without this listener Node sends `100 Continue` before the request is even routed.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) =>
    onRequest(req, res, true),
  );

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const code = err.code ?? 'unknown';
    metrics.rejected.inc({
      reason:
        code === 'HPE_HEADER_OVERFLOW'
          ? 'header_overflow'
          : code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? 'timeout'
            : 'malformed',
    });
    const inProgress = (socket as Tracked)[kResponding];
    if (
      code === 'ECONNRESET' ||
      !socket.writable ||
      (inProgress !== undefined && inProgress.headersSent && !inProgress.writableFinished)
    ) {
      socket.destroy();
      return;
    }
    const [status, error] = CLIENT_ERROR_STATUS[code] ?? [400, 'bad_request'];
    const reason = http.STATUS_CODES[status] ?? 'Bad Request';
    const message = status === 400 ? 'malformed request' : reason.toLowerCase();
    socket.end(rawJson(status, reason, { error, message }));
    // end() flushes; a client that never reads must not hold the socket open.
    setTimeout(() => socket.destroy(), 1_000).unref();
  });

  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    metrics.rejected.inc({ reason: 'connect_method' });
    socket.end(
      rawJson(405, 'Method Not Allowed', {
        error: 'method_not_allowed',
        message: 'CONNECT is not proxied',
      }),
    );
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    handleUpgrade({
      req,
      socket,
      head,
      cfg,
      pools,
      facts: factsOf(req),
      decide,
      metrics,
      upgraded,
      emit,
      log,
    });
  });

  return {
    server,
    get config() {
      return cfg;
    },
    get version() {
      return cfg.version;
    },
    metrics,
    reload: (doc?: unknown) => source.reload(doc),
    listen(port = 0, host = '127.0.0.1') {
      return new Promise<AddressInfo>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve(server.address() as AddressInfo);
        });
      });
    },
    async close(graceMs = 10_000) {
      source.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
        timer.unref();
      });
      await Promise.race([closed, grace]);
      clearTimeout(timer);
      server.closeAllConnections();
      for (const s of upgraded) s.destroy();
      await Promise.all([...pools.values()].map((p) => p.pool.destroy()));
    },
  };
}
