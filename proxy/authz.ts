// /api/authz/{context}: the engine behind another proxy. nginx `auth_request` sends a bodyless
// subrequest carrying the original request's headers plus X-Original-URI / X-Original-Method;
// Envoy `ext_authz` (HTTP service) replays the original method, path (after a path prefix)
// and headers. Either way: 200 lets the request through, 403 stops it, and the decision rides
// in x-vigil-* headers the front proxy can hand to the origin.
import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
  preHandlerHookHandler,
} from 'fastify';
import { performance } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { writeBurst } from './flush.ts';
import { clientAddress, toTrustedProxies, type TrustedProxies } from './inline/client-ip.ts';
import {
  DEFAULT_LIMITS,
  renderBlock,
  type CompiledConfig,
  type CompiledExtractor,
  type CompiledRoute,
  type SessionSpec,
} from './inline/config.ts';
import { decideWithin } from './inline/decide.ts';
import { buildDecisionContext } from './inline/extract.ts';
import { parseTarget } from './inline/match.ts';
import { decisionMetrics, proxyMetrics } from './inline/metrics.ts';
import type { DecideFn, OnRequestEvent, ProxyDecision } from './inline/types.ts';

export interface AuthzOptions {
  decide: DecideFn;
  /** Runs first on every authz request: the API's bearer-token check goes here. */
  onRequest?: onRequestHookHandler | onRequestHookHandler[] | undefined;
  preHandler?: preHandlerHookHandler | preHandlerHookHandler[] | undefined;
  /**
   * The route config (or a getter for the live one): the route of the requested context that
   * matches the original method and path lends its query, header and cookie extractors, its
   * mode and its block body. Without one, only device and metadata are filled.
   */
  config?: CompiledConfig | (() => CompiledConfig | undefined) | undefined;
  /** Session cookie/header when no config gives one. */
  session?: SessionSpec | undefined;
  /** Hops in X-Forwarded-For to skip besides the caller (VIGIL_TRUSTED_PROXIES). */
  trustedProxies?: readonly string[] | TrustedProxies | undefined;
  registry?: Registry | undefined;
  /** Default: the config's decision_timeout_ms, else 500. */
  decisionTimeoutMs?: number | undefined;
  onRequestEvent?: OnRequestEvent | undefined;
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
const PREFIX = '/api/authz/';
const CONTEXT = /^[a-z0-9_-]{1,64}$/;
const METHOD = /^[A-Za-z]{1,20}$/;
const NO_BODY_SOURCES = new Set(['query', 'header', 'cookie']);

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The route of `context` for the original request: by method and path, else its first one. */
function routeFor(
  cfg: CompiledConfig | undefined,
  context: string,
  method: string,
  lowerPath: string,
): CompiledRoute | undefined {
  if (!cfg) return undefined;
  let fallback: CompiledRoute | undefined;
  for (const r of cfg.routes) {
    if (r.context !== context) continue;
    if ((r.methods === null || r.methods.has(method)) && r.test(lowerPath)) return r;
    fallback ??= r;
  }
  return fallback;
}

const extractorCache = new WeakMap<CompiledRoute, CompiledExtractor[]>();
function bodylessExtractors(route: CompiledRoute | undefined): CompiledExtractor[] {
  if (!route) return [];
  let list = extractorCache.get(route);
  if (!list) {
    list = route.extractors.filter((e) => NO_BODY_SOURCES.has(e.from));
    extractorCache.set(route, list);
  }
  return list;
}

export async function authzRoutes(app: FastifyInstance, opts: AuthzOptions): Promise<void> {
  const metrics = proxyMetrics(opts.registry ?? new Registry());
  const trusted: TrustedProxies = toTrustedProxies(opts.trustedProxies);
  const currentConfig =
    typeof opts.config === 'function'
      ? opts.config
      : () => opts.config as CompiledConfig | undefined;

  const labelled = decisionMetrics(metrics, 'authz');

  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    const t0 = performance.now();
    const { context } = req.params as { context: string };
    if (!CONTEXT.test(context)) {
      return reply.code(400).send({ error: 'bad_request', message: 'invalid context name' });
    }
    // Envoy: the original path follows the prefix. nginx / Traefik / Caddy: headers carry it.
    // The raw URL, not fastify's decoded wildcard: normalization happens once, in parseTarget.
    const suffix = (req.params as { '*'?: string })['*'];
    const rest = req.url.slice(PREFIX.length);
    const originalUri =
      suffix !== undefined
        ? rest.slice(rest.indexOf('/'))
        : (header(req, 'x-original-uri') ?? header(req, 'x-forwarded-uri') ?? '/');
    const originalMethod = (
      suffix !== undefined
        ? req.method
        : (header(req, 'x-original-method') ?? header(req, 'x-forwarded-method') ?? req.method)
    ).toUpperCase();
    const target = parseTarget(originalUri);
    if (target === null || !METHOD.test(originalMethod)) {
      return reply.code(400).send({ error: 'bad_request', message: 'invalid original request' });
    }

    const cfg = currentConfig();
    const route = routeFor(cfg, context, originalMethod, target.matchPath.toLowerCase());
    // The caller authenticated, so its own X-Forwarded-For entries are believed; hops it
    // appended for other trusted proxies are skipped.
    let ip = clientAddress(req.socket.remoteAddress, header(req, 'x-forwarded-for'), trusted, true);
    const realIp = header(req, 'x-real-ip');
    if (header(req, 'x-forwarded-for') === undefined && realIp) {
      ip = clientAddress(req.socket.remoteAddress, realIp, trusted, true);
    }
    const built = buildDecisionContext(
      bodylessExtractors(route),
      {
        method: originalMethod,
        path: target.path,
        search: target.search,
        headers: req.headers,
        ip,
      },
      cfg?.session ?? opts.session ?? null,
      route?.label ?? `/api/authz/${context}`,
    );
    const timeout =
      opts.decisionTimeoutMs ??
      cfg?.limits.decision_timeout_ms ??
      DEFAULT_LIMITS.decision_timeout_ms;
    const outcome = await decideWithin(
      opts.decide,
      { context, body: built.body, source: 'authz' },
      timeout,
    );
    const d: ProxyDecision | null = typeof outcome === 'string' ? null : outcome;
    const failOpen = typeof outcome === 'string' ? outcome : null;
    const mode = route?.mode ?? 'active';
    let status = 200;
    if (d === null) {
      metrics.failOpen.inc({
        context: labelled.label(context),
        reason: failOpen ?? 'error',
        source: 'authz',
      });
      reply.header('x-vigil-fail-open', failOpen);
    } else {
      labelled.counter(context, d.decision, mode).inc();
      reply.header('x-vigil-decision', d.decision).header('x-vigil-decision-id', d.id);
      if (mode === 'passive') reply.header('x-vigil-mode', 'passive');
      if (d.decision === 'BLOCK' && mode === 'active') status = 403;
    }
    reply.header('cache-control', 'no-store');
    labelled.timer(context).observe((performance.now() - t0) / 1000);
    try {
      opts.onRequestEvent?.({
        method: originalMethod,
        path: target.path,
        route: route?.label ?? `/api/authz/${context}`,
        context,
        mode,
        status,
        decision_id: d?.id ?? null,
        decision: d?.decision ?? null,
        fail_open: failOpen,
        ip,
        elapsed_ms: Math.round((performance.now() - t0) * 1000) / 1000,
        session: built.session,
        ...(d?.dropped ? { dropped: d.dropped } : {}),
      });
    } catch {
      // The event sink is best effort; the answer does not wait on it or fail with it.
    }
    await writeBurst();
    if (status === 403 && d) {
      // Always 403 whatever the route's block status: nginx auth_request turns anything but
      // 2xx/401/403 into a 500. Envoy relays this body to the client.
      const body = route
        ? renderBlock(route.block, d.id)
        : JSON.stringify({ error: 'blocked', decision_id: d.id });
      return reply
        .code(403)
        .type(route?.block.contentType ?? 'application/json')
        .send(body);
    }
    return reply.code(200).send();
  };

  await app.register((scope, _opts, done) => {
    // Envoy may replay the original body (with_request_body); it is not read here. A catch-all
    // parser in this scope only keeps fastify from answering 415 to an unknown content type.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, payload, done) => {
      payload.resume();
      done(null, undefined);
    });
    for (const url of ['/api/authz/:context', '/api/authz/:context/*']) {
      scope.route({
        method: [...METHODS],
        url,
        exposeHeadRoute: false,
        ...(opts.onRequest ? { onRequest: opts.onRequest } : {}),
        ...(opts.preHandler ? { preHandler: opts.preHandler } : {}),
        schema: {
          tags: ['authz'],
          summary:
            'nginx auth_request / Envoy ext_authz check: 200 allow, 403 block, decision in x-vigil-* headers',
        },
        handler,
      });
    }
    done();
  });
}
