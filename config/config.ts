// The only reader of process.env. Every setting of CONTRACT.md §7 is parsed here once, with
// zod, into a typed object the composition roots (cli/, proxy/server.ts, activities/worker.ts)
// pass down. Unset means the embedded default.
import path from 'node:path';
import { z } from 'zod';

/** Clamp bounds for configured durations: a typo must not turn a deadline into minutes. */
export const DECISION_DEADLINE_MS = { default: 300, min: 5, max: 30_000 } as const;

const port = z.coerce.number().int().min(0).max(65_535);
const list = z
  .string()
  .transform((s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
  )
  .default([]);
const blankToUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);
/** A comma-separated list whose every entry must match: the first bad one is named. */
const listOf = (re: RegExp, what: string) =>
  list.refine((xs) => xs.every((x) => re.test(x)), {
    error: (iss) => {
      const bad = (iss.input as string[]).find((x) => !re.test(x));
      return `${JSON.stringify(bad)} is not ${what}`;
    },
  });
// Host names as container runtimes make them too (underscores); IPv6 bracketed (a zone id
// allowed), or bare where no port follows.
const HOST = '(\\[[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?\\]|[A-Za-z0-9._-]+)';
const HOST_PORT = new RegExp(`^${HOST}:\\d{1,5}$`);
const HOST_OR_HOST_PORT = new RegExp(`^(${HOST}(:\\d{1,5})?|[0-9A-Fa-f]*:[0-9A-Fa-f:.]+)$`);
/** A secret given in the environment: short ones are guessed. */
const secret = (min: number, what: string) =>
  z.preprocess(
    blankToUndefined,
    z.string().min(min, `${what}: at least ${min} characters`).optional(),
  );
const optionalString = z.preprocess(blankToUndefined, z.string().optional());

const Env = z.object({
  TEMPORAL_ADDRESS: optionalString,
  TEMPORAL_NAMESPACE: z.preprocess(blankToUndefined, z.string().default('default')),
  KAFKA_BROKERS: z.preprocess(blankToUndefined, listOf(HOST_PORT, 'host:port').optional()),
  REDIS_URL: z.preprocess(blankToUndefined, z.url({ protocol: /^rediss?$/ }).optional()),
  DATABASE_URL: z.preprocess(blankToUndefined, z.url({ protocol: /^postgres(ql)?$/ }).optional()),
  VIGIL_DATA_DIR: z.preprocess(blankToUndefined, z.string().default('./.vigil')),
  VIGIL_CONFIG: optionalString,
  VIGIL_EDITION: z.preprocess(blankToUndefined, z.enum(['core', 'connect']).default('connect')),
  VIGIL_PCI_LEVEL: z.preprocess(
    blankToUndefined,
    z.enum(['SAQ_A', 'SAQ_A_EP', 'SAQ_B', 'SAQ_C', 'SAQ_D', 'ROC']).default('SAQ_A'),
  ),
  PORT: z.preprocess(blankToUndefined, port.default(8080)),
  API_PORT: z.preprocess(blankToUndefined, port.default(8081)),
  VIGIL_DECISION_DEADLINE_MS: z.preprocess(
    blankToUndefined,
    z.coerce
      .number()
      .int()
      .default(DECISION_DEADLINE_MS.default)
      .transform((n) => Math.min(DECISION_DEADLINE_MS.max, Math.max(DECISION_DEADLINE_MS.min, n))),
  ),
  VIGIL_EGRESS_ALLOW: z.preprocess(
    blankToUndefined,
    listOf(HOST_OR_HOST_PORT, 'a host or host:port'),
  ),
  VIGIL_TRUSTED_PROXIES: z.preprocess(blankToUndefined, list),
  // A bearer token with every scope, and the key of every card fingerprint (a weak one lets a
  // holder of fingerprints try the small space of BIN + last 4 + expiry).
  VIGIL_ADMIN_TOKEN: secret(16, 'a token with every scope'),
  VIGIL_SECRET_KEY: secret(16, 'the key of fingerprints and stored secrets'),
  VIGIL_DEMO: z.preprocess(blankToUndefined, z.enum(['0', '1']).default('1')),
  VIGIL_LOG_LEVEL: z.preprocess(
    blankToUndefined,
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  ),
  VIGIL_HOST: z.preprocess(blankToUndefined, z.string().default('127.0.0.1')),
  VIGIL_TEMPORAL_BIN: optionalString,
  VIGIL_TOKEN: optionalString,
  VIGIL_EVENTS_REDACT: z.preprocess(blankToUndefined, list),
  VIGIL_COUNTER_TIMEOUT_MS: z.preprocess(
    blankToUndefined,
    z.coerce
      .number()
      .int()
      .default(50)
      .transform((n) => Math.min(2_000, Math.max(5, n))),
  ),
  VIGIL_API_URL: z.preprocess(blankToUndefined, z.url({ protocol: /^https?$/ }).optional()),
  VIGIL_PROXY_WORKERS: z.preprocess(
    blankToUndefined,
    z.coerce.number().int().min(1).max(512).optional(),
  ),
  VIGIL_PROXY_WORKER_YOUNG_MB: z.preprocess(
    blankToUndefined,
    z.coerce.number().int().min(1).max(64).default(1),
  ),
  VIGIL_CACHE: optionalString,
  VIGIL_SUPERVISED: z.preprocess(blankToUndefined, z.enum(['0', '1']).default('0')),
  VIGIL_WORKER_PRIORITY: z.preprocess(
    blankToUndefined,
    z.enum(['idle', 'low', 'normal']).optional(),
  ),
  HOME: optionalString,
});

export interface Config {
  temporal: { address: string | undefined; namespace: string };
  kafka: { brokers: string[] } | undefined;
  redisUrl: string | undefined;
  databaseUrl: string | undefined;
  dataDir: string;
  routesFile: string | undefined;
  edition: 'core' | 'connect';
  pciLevel: 'SAQ_A' | 'SAQ_A_EP' | 'SAQ_B' | 'SAQ_C' | 'SAQ_D' | 'ROC';
  proxyPort: number;
  apiPort: number;
  host: string;
  decisionDeadlineMs: number;
  egressAllow: string[];
  trustedProxies: string[];
  adminToken: string | undefined;
  secretKey: string | undefined;
  demo: boolean;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** The Temporal CLI binary for the embedded dev server (scripts/temporal.sh builds it). */
  temporalBin: string;
  /** PII paths (`$.customer.email`) hashed as `sha256:…` in published events. */
  eventsRedact: string[];
  /** Redis counter command timeout (ms): past it the decision fails open for velocity. */
  counterTimeoutMs: number;
  /** Proxy worker processes (VIGIL_PROXY_WORKERS); undefined: one per core; 1: in-process. */
  proxyWorkers: number | undefined;
  /**
   * V8's young-generation semi-space of each proxy worker, MB (VIGIL_PROXY_WORKER_YOUNG_MB,
   * default 1): small keeps streamed bodies' buffers short-lived (RSS), larger costs monitored
   * routes less CPU (docs/proxy.md).
   */
  proxyWorkerYoungMb: number;
  /** For the client commands (`vigil decide` …): the token and the API to call. */
  client: { token: string | undefined; apiUrl: string | undefined };
  /**
   * VIGIL_SUPERVISED=1: set by `vigil start` on the worker process it forks (cli/worker-child.ts):
   * SIGINT is ignored and the process stops when its parent goes.
   */
  supervised: boolean;
  /**
   * VIGIL_WORKER_PRIORITY, the CPU priority of a worker-role process: `idle` (SCHED_IDLE: runs
   * only on CPU time nothing else wants), `low` (nice 10) or `normal`. Unset: `low` for
   * `vigil worker`, `idle` for the worker process `vigil start` forks beside its API.
   */
  workerPriority: 'idle' | 'low' | 'normal' | undefined;
}

/** Must match scripts/temporal.sh: the binary it builds and caches. */
export const TEMPORAL_CLI_VERSION = '1.5.1';

export class ConfigError extends Error {
  readonly code = 'invalid_config';
}

/** Parses the environment; an invalid value names its variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = Env.safeParse(env);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid environment: ${issues}`);
  }
  const e = parsed.data;
  return {
    temporal: { address: e.TEMPORAL_ADDRESS, namespace: e.TEMPORAL_NAMESPACE },
    kafka: e.KAFKA_BROKERS && e.KAFKA_BROKERS.length > 0 ? { brokers: e.KAFKA_BROKERS } : undefined,
    redisUrl: e.REDIS_URL,
    databaseUrl: e.DATABASE_URL,
    dataDir: path.resolve(e.VIGIL_DATA_DIR),
    routesFile: e.VIGIL_CONFIG,
    edition: e.VIGIL_EDITION,
    pciLevel: e.VIGIL_PCI_LEVEL,
    proxyPort: e.PORT,
    apiPort: e.API_PORT,
    host: e.VIGIL_HOST,
    decisionDeadlineMs: e.VIGIL_DECISION_DEADLINE_MS,
    egressAllow: e.VIGIL_EGRESS_ALLOW,
    trustedProxies: e.VIGIL_TRUSTED_PROXIES,
    adminToken: e.VIGIL_ADMIN_TOKEN,
    secretKey: e.VIGIL_SECRET_KEY,
    demo: e.VIGIL_DEMO === '1',
    logLevel: e.VIGIL_LOG_LEVEL,
    client: { token: e.VIGIL_TOKEN, apiUrl: e.VIGIL_API_URL },
    counterTimeoutMs: e.VIGIL_COUNTER_TIMEOUT_MS,
    proxyWorkers: e.VIGIL_PROXY_WORKERS,
    proxyWorkerYoungMb: e.VIGIL_PROXY_WORKER_YOUNG_MB,
    supervised: e.VIGIL_SUPERVISED === '1',
    workerPriority: e.VIGIL_WORKER_PRIORITY,
    eventsRedact: e.VIGIL_EVENTS_REDACT,
    temporalBin:
      e.VIGIL_TEMPORAL_BIN ??
      path.join(
        e.VIGIL_CACHE ?? path.join(e.HOME ?? '/root', '.cache/vigil'),
        `temporal-${TEMPORAL_CLI_VERSION}`,
        'temporal',
      ),
  };
}

/** This process's environment with `extra` laid over it: for a Vigil process this one forks. */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { ...process.env, ...extra };
}
