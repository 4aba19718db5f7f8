// Builds the API server (never listens: server.ts and the CLI do). Routes are plugins that get
// their dependencies passed in; the app itself knows only errors, auth, health and metrics.
import swagger from '@fastify/swagger';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyServerOptions,
} from 'fastify';
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
import { STATUS_BY_CODE, statusOf } from './errors.ts';
import type { ApiMetrics } from './metrics.ts';

/** Server limits: fastify's defaults leave requestTimeout and connectionTimeout at 0 (none). */
export const API_LIMITS = {
  bodyLimit: 1024 * 1024,
  requestTimeoutMs: 30_000,
  connectionTimeoutMs: 60_000,
  keepAliveTimeoutMs: 10_000,
  maxHeaderSize: 16 * 1024,
  /**
   * Headers of an API call arrive in milliseconds; Node's default (60 s, checked every 30 s)
   * let a client holding connections open with a header line now and then exhaust the file
   * descriptors.
   */
  headersTimeoutMs: 10_000,
  connectionsCheckingIntervalMs: 1_000,
  /** Past it new connections are refused at once, before the process runs out of descriptors. */
  maxConnections: 10_000,
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

const CLIENT_ERROR_MESSAGES: Record<string, string> = {
  bad_request: 'the request could not be parsed as HTTP/1.1',
  headers_too_large: 'the request headers are too large',
  request_timeout: 'the request was not received in time',
};
const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
};

/** Deepest nesting of arrays and objects a JSON body may have. */
export const MAX_DEPTH = 64;

/** Whether `json` nests arrays/objects deeper than `max` (strings skipped, escapes honoured). */
export function nestingExceeds(json: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \\ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > max) return true;
    } else if (c === 125 /* } */ || c === 93 /* ] */) depth--;
  }
  return false;
}

export async function buildApp(opts: AppOptions): Promise<App> {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: API_LIMITS.bodyLimit,
    requestTimeout: API_LIMITS.requestTimeoutMs,
    connectionTimeout: API_LIMITS.connectionTimeoutMs,
    keepAliveTimeout: API_LIMITS.keepAliveTimeoutMs,
    routerOptions: { maxParamLength: 200 },
    http: {
      maxHeaderSize: API_LIMITS.maxHeaderSize,
      headersTimeout: API_LIMITS.headersTimeoutMs,
      connectionsCheckingInterval: API_LIMITS.connectionsCheckingIntervalMs,
    },
    // The router's own refusals (a path parameter over maxParamLength, a malformed URL) answer
    // before any route: in the API's error shape, not fastify's `{statusCode, code}`.
    frameworkErrors: (err, _req, reply) => {
      const code =
        (err as { code?: string }).code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? 'uri_too_long'
          : 'bad_request';
      opts.metrics.httpErrors.inc({ code });
      void (reply as unknown as FastifyReply)
        .code(STATUS_BY_CODE[code]!)
        .send({ error: code, message: err.message });
    },
    // Requests Node's parser refuses (bad framing, headers too large, too slow): written on
    // the socket, since there is no request to answer; JSON all the same.
    clientErrorHandler: (err, socket) => {
      if (!socket.writable) return socket.destroy();
      const c = (err as { code?: string }).code;
      const code =
        c === 'HPE_HEADER_OVERFLOW'
          ? 'headers_too_large'
          : c === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? 'request_timeout'
            : 'bad_request';
      const status = STATUS_BY_CODE[code]!;
      const body = JSON.stringify({ error: code, message: CLIENT_ERROR_MESSAGES[code] });
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\ncontent-type: application/json\r\n` +
          `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    },
  }).withTypeProvider<ZodTypeProvider>();
  app.server.maxConnections = API_LIMITS.maxConnections;
  // JSON nested thousands deep (a 1 MiB body allows ~500,000 levels) parses, then overflows the
  // stack wherever it is copied or serialized: a BLOCK answered 500, an ALLOW never stored.
  // Refused here, at the boundary, for every route. Bodies this small cannot nest that deep.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body: string, done) => {
    if (body.length > MAX_DEPTH * 2 && nestingExceeds(body, MAX_DEPTH)) {
      const err = Object.assign(new Error(`the JSON body nests deeper than ${MAX_DEPTH} levels`), {
        statusCode: 400,
      });
      done(err, undefined);
      return;
    }
    void parseJson(req, body, done);
  });
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
      if (hasZodFastifySchemaValidationErrors(err)) {
        const issues = err.validation.map((v) => ({
          path: `${err.validationContext ?? 'body'}${v.instancePath.replaceAll('/', '.')}`.replace(
            /\.(\d+)(?=\.|$)/g,
            '[$1]',
          ),
          message: v.message ?? 'invalid',
        }));
        opts.metrics.httpErrors.inc({ code: 'invalid_request' });
        return reply.code(400).send({
          error: 'invalid_request',
          message: issues.map((i) => `${i.path}: ${i.message}`).join('; '),
          issues,
        });
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
        opts.metrics.httpErrors.inc({ code });
        return reply.code(fastifyStatus).send({ error: code, message: err.message });
      }
      const { status, code } = statusOf(err);
      opts.metrics.httpErrors.inc({ code });
      if (status >= 500) {
        req.log.error({ err }, 'request failed');
        return reply.code(status).send({
          error: code,
          message: status === 503 ? 'a dependency is unavailable' : 'internal error',
        });
      }
      const details = (err as { details?: Record<string, unknown> }).details ?? {};
      return reply.code(status).send({ error: code, message: err.message, ...details });
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
  }
  return app;
}
