// Builds the API server (never listens: server.ts and the CLI do). Routes are plugins that get
// their dependencies passed in; the app itself knows only errors, auth, health and metrics.
import swagger from '@fastify/swagger';
import http from 'node:http';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  isResponseSerializationError,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { TokenVerifier } from './auth.ts';
import { statusOf } from './errors.ts';
import type { ApiMetrics } from './metrics.ts';
import type { FastRoute, FastRouteContext } from './routes/decisions-fast.ts';

/** Server limits: fastify's defaults leave requestTimeout and connectionTimeout at 0 (none). */
export const API_LIMITS = {
  bodyLimit: 1024 * 1024,
  requestTimeoutMs: 30_000,
  connectionTimeoutMs: 60_000,
  keepAliveTimeoutMs: 10_000,
  maxHeaderSize: 16 * 1024,
} as const;

export type HealthState = 'up' | 'down' | 'degraded' | 'disabled';
export interface HealthCheck {
  name: string;
  /** Whether the process can serve without it (readyz stays 200 when an optional one is down). */
  required: boolean;
  check(): Promise<{ state: HealthState; detail?: string }>;
}

export interface AppOptions {
  metrics: ApiMetrics;
  health: HealthCheck[];
  verifyToken: TokenVerifier;
  /** Route plugins under /api, registered in order. */
  routes?: ((app: FastifyInstance, verify: TokenVerifier) => Promise<void> | void)[];
  /**
   * Routes answered on node:http before fastify sees the request (routes/decisions-fast.ts);
   * each takes what it can and leaves the rest to the fastify routes. Not used by inject().
   */
  fastRoutes?: ((ctx: FastRouteContext) => FastRoute)[];
  logger?: FastifyServerOptions['logger'];
  serveApi?: boolean;
  version?: string;
  /**
   * Metrics of other processes this one answers for (the proxy workers of `vigil proxy` and
   * `vigil start`, which serve nothing on API_PORT), as prom-client JSON; merged into /metrics.
   */
  metricsFrom?: () => Promise<MetricObjectWithValues<MetricValue<string>>[][]>;
}

export type App = FastifyInstance;

const HEALTH_TIMEOUT_MS = 1_000;

async function runCheck(c: HealthCheck) {
  const timeout = new Promise<{ state: HealthState; detail: string }>((resolve) =>
    setTimeout(
      () => resolve({ state: 'down', detail: 'health check timed out' }),
      HEALTH_TIMEOUT_MS,
    ).unref(),
  );
  try {
    return await Promise.race([c.check(), timeout]);
  } catch (err) {
    return { state: 'down' as const, detail: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * The JSON error answer for an error thrown on the way to a route's answer (fastify's own client
 * errors, zod schema failures, the catalog's codes, anything else as 500), counted by code. The
 * error handler and the decisions fast path (routes/decisions-fast.ts) answer through it, so an
 * error reads the same on either path.
 */
export function errorAnswer(
  err: Error & { statusCode?: number; validationContext?: string },
  metrics: ApiMetrics,
): { status: number; body: Record<string, unknown> } {
  if (hasZodFastifySchemaValidationErrors(err)) {
    const issues = err.validation.map((v) => ({
      path: `${err.validationContext ?? 'body'}${v.instancePath.replaceAll('/', '.')}`.replace(
        /\.(\d+)(?=\.|$)/g,
        '[$1]',
      ),
      message: v.message ?? 'invalid',
    }));
    metrics.httpErrors.inc({ code: 'invalid_request' });
    return {
      status: 400,
      body: {
        error: 'invalid_request',
        message: issues.map((i) => `${i.path}: ${i.message}`).join('; '),
        issues,
      },
    };
  }
  // Fastify's own client errors (bad JSON, body too large, unsupported type) carry statusCode.
  const fastifyStatus = err.statusCode;
  if (
    !isResponseSerializationError(err) &&
    fastifyStatus &&
    fastifyStatus >= 400 &&
    fastifyStatus < 500 &&
    !('details' in err)
  ) {
    const code =
      fastifyStatus === 413
        ? 'payload_too_large'
        : fastifyStatus === 415
          ? 'unsupported_media_type'
          : 'bad_request';
    metrics.httpErrors.inc({ code });
    return { status: fastifyStatus, body: { error: code, message: err.message } };
  }
  const { status, code } = statusOf(err);
  metrics.httpErrors.inc({ code });
  if (status >= 500) {
    return {
      status,
      body: {
        error: code,
        message: status === 503 ? 'a dependency is unavailable' : 'internal error',
      },
    };
  }
  const details = (err as { details?: Record<string, unknown> }).details ?? {};
  return { status, body: { error: code, message: err.message, ...details } };
}

export async function buildApp(opts: AppOptions): Promise<App> {
  const fast: FastRoute[] = [];
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: API_LIMITS.bodyLimit,
    routerOptions: { maxParamLength: 200 },
    // The server fastify would make (same limits and timeouts), with the fast routes in front.
    serverFactory: (handler) => {
      const server = http.createServer({ maxHeaderSize: API_LIMITS.maxHeaderSize }, (req, res) => {
        for (let i = 0; i < fast.length; i++) if (fast[i]!(req, res)) return;
        handler(req, res);
      });
      server.keepAliveTimeout = API_LIMITS.keepAliveTimeoutMs;
      server.requestTimeout = API_LIMITS.requestTimeoutMs;
      server.setTimeout(API_LIMITS.connectionTimeoutMs);
      return server;
    },
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  await app.register(swagger, {
    openapi: {
      info: { title: 'Vigil API', version: opts.version ?? '0.1.0' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });

  app.setErrorHandler(
    (err: Error & { statusCode?: number; validationContext?: string }, req, reply) => {
      const { status, body } = errorAnswer(err, opts.metrics);
      if (status >= 500) req.log.error({ err }, 'request failed');
      return reply.code(status).send(body);
    },
  );
  app.setNotFoundHandler((req, reply) =>
    reply
      .code(404)
      .send({ error: 'not_found', message: `no route for ${req.method} ${req.url.split('?')[0]}` }),
  );

  app.get('/healthz', { schema: { hide: true } }, () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    const results = await Promise.all(opts.health.map(async (c) => ({ c, r: await runCheck(c) })));
    const dependencies = Object.fromEntries(
      results.map(({ c, r }) => [
        c.name,
        { state: r.state, required: c.required, ...(r.detail ? { detail: r.detail } : {}) },
      ]),
    );
    const ready = results.every(
      ({ c, r }) => !c.required || r.state === 'up' || r.state === 'degraded',
    );
    return reply
      .code(ready ? 200 : 503)
      .send({ status: ready ? 'ready' : 'not_ready', dependencies });
  });
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    const others = opts.metricsFrom ? await opts.metricsFrom() : [];
    // Same-named series from several processes are summed (counters, histograms, gauges).
    const body = others.length
      ? await AggregatorRegistry.aggregate([
          await opts.metrics.registry.getMetricsAsJSON(),
          ...others,
        ]).metrics()
      : await opts.metrics.registry.metrics();
    return reply.type(opts.metrics.registry.contentType).send(body);
  });
  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());

  if (opts.serveApi !== false) {
    for (const plugin of opts.routes ?? []) await plugin(app, opts.verifyToken);
    const ctx: FastRouteContext = {
      verify: opts.verifyToken,
      bodyLimit: API_LIMITS.bodyLimit,
      fail: (res, e) => {
        const err = (e instanceof Error ? e : new Error(String(e))) as Error & {
          statusCode?: number;
        };
        const { status, body } = errorAnswer(err, opts.metrics);
        if (status >= 500) app.log.error({ err }, 'request failed');
        if (res.headersSent || res.destroyed) return;
        const out = JSON.stringify(body);
        res.writeHead(status, {
          'content-type': 'application/json; charset=utf-8',
          'content-length': Buffer.byteLength(out),
        });
        res.end(out);
      },
    };
    for (const make of opts.fastRoutes ?? []) fast.push(make(ctx));
  }
  return app;
}
