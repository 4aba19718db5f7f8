// One proxy worker process of `vigil proxy` / `vigil start` (VIGIL_PROXY_WORKERS > 1): its own
// decision path over the shared store (rulesets and blacklist follow the store's change feed,
// decisions go to the shared decision log and outbox, events to the shared sink) and the
// velocity counts of the primary (over IPC, without REDIS_URL) or Redis. It serves the proxy
// port only: the API, health and metrics are the primary's.
//
// It loads only what the proxy needs (no fastify, no Temporal client, no Kafka client without
// KAFKA_BROKERS): every worker's resident memory is paid once per core.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import type { Config } from '../../config/config.ts';
import { ActiveRulesets } from '../../decisions/active-rulesets.ts';
import type { DecideDeps } from '../../decisions/decide.ts';
import type { DecisionRecord } from '../../decisions/ports.ts';
import { decideExtracted, type ExtractedInput } from '../../decisions/extracted.ts';
import { createIntegrations } from '../../integrations/index.ts';
import { parseRuleset, type RulesetDocument } from '../../rulesets/schema.ts';
import type { CounterStore } from '../../rulesets/ports.ts';
import { BlacklistIndex } from '../../storage/blacklist-index.ts';
import { IpcCounterStore } from '../../storage/counters/ipc.ts';
import { DecisionLog } from '../../storage/decision-log.ts';
import type { BufferedEventSink } from '../../storage/events/sink.ts';
import { requestEvent, requestKey } from '../../storage/events/schemas.ts';
import { openStore, type RulesetRow } from '../../storage/store.ts';
import { runCluster } from './cluster.ts';
import { createInlineProxy, shutdownGraceMs } from './server.ts';
import { stderrLogger } from './types.ts';

/** What the primary tells a worker it forked (IPC, once). */
export interface WorkerInit {
  t: 'vigil.proxy.init';
  /** The routes file path or document (the demo's origin URL is known only to the primary). */
  routes: string | object;
  /** The egress allow list in force (the primary's may hold more, e.g. the demo's desk). */
  egressAllow?: string[];
}

export const WORKER_INIT = 'vigil.proxy.init';
/** The primary asks each worker for its metrics (prom-client JSON) when /metrics is scraped. */
export const METRICS_REQUEST = 'vigil.proxy.metrics';
export const METRICS_REPLY = 'vigil.proxy.metrics.reply';
/** A worker asks for its init once it listens for the answer (a message sent earlier is lost). */
export const WORKER_HELLO = 'vigil.proxy.hello';

export function isWorkerHello(m: unknown): boolean {
  return (m as { t?: unknown } | null)?.t === WORKER_HELLO;
}

export function isWorkerInit(m: unknown): m is WorkerInit {
  const r = m as Partial<WorkerInit> | null;
  return (
    !!r && r.t === WORKER_INIT && (typeof r.routes === 'string' || typeof r.routes === 'object')
  );
}

/** Asks the primary for the proxy configuration and waits for it. */
export function requestInit(timeoutMs = 30_000): Promise<WorkerInit> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      process.off('message', on);
      reject(new Error('the primary sent no proxy configuration'));
    }, timeoutMs);
    const on = (m: unknown) => {
      if (!isWorkerInit(m)) return;
      clearTimeout(timer);
      process.off('message', on);
      resolve(m);
    };
    process.on('message', on);
    process.send?.({ t: WORKER_HELLO });
  });
}

function secretKeyOf(config: Config): Buffer {
  if (config.secretKey) return createHash('sha256').update(config.secretKey).digest();
  // The primary created it before forking.
  return Buffer.from(
    readFileSync(path.join(config.dataDir, 'secret.key'), 'utf8').trim(),
    'base64',
  );
}

function toActive(rows: RulesetRow[]) {
  const out: { id: string; context: string; version: number; document: RulesetDocument }[] = [];
  for (const r of rows) {
    const parsed = parseRuleset(r.document, { edition: 'connect' });
    // The primary logs a ruleset that no longer parses; a worker skips it the same way.
    if (parsed.ok)
      out.push({ id: r.id, context: r.context, version: r.version, document: parsed.value });
  }
  return out;
}

export interface ProxyWorkerHandle {
  port: number;
  close(): Promise<void>;
}

/** Builds the decision path and the proxy in this worker and listens on the proxy port. */
export async function startProxyWorker(
  config: Config,
  init: WorkerInit,
): Promise<ProxyWorkerHandle> {
  const closers: (() => Promise<void> | void)[] = [];
  const close = async () => {
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch (err) {
        stderrLogger.error({ error: (err as Error).message }, 'proxy worker close failed');
      }
    }
  };
  try {
    const registry = new Registry();
    const onMetrics = (m: unknown) => {
      const r = m as { t?: unknown; id?: unknown } | null;
      if (r?.t !== METRICS_REQUEST) return;
      void registry
        .getMetricsAsJSON()
        .then((metrics) => process.send?.({ t: METRICS_REPLY, id: r.id, metrics }))
        .catch(() => {});
    };
    process.on('message', onMetrics);
    closers.push(() => void process.off('message', onMetrics));
    // Embedded store: WAL checkpoints are left to the primary's decision-log writer thread
    // (cli/runtime.ts, every second), off this event loop: SQLite runs one inside whichever
    // commit takes the WAL past 1,000 pages, here a REVIEW's or a log batch's.
    const store = await openStore({
      databaseUrl: config.databaseUrl,
      dataDir: config.dataDir,
      sqlite: { autoCheckpoint: false },
    });
    closers.push(() => store.close());
    const secretKey = secretKeyOf(config);
    // Backend rules decide here too: the same integrations, egress guard and breakers per worker.
    const integrations = createIntegrations({
      store,
      secretKey,
      egressAllow: init.egressAllow ?? config.egressAllow,
      registry,
      edition: config.edition,
    });
    closers.push(() => integrations.close());
    let counters: CounterStore;
    if (config.redisUrl) {
      const { RedisCounterStore } = await import('../../storage/counters/redis.ts');
      counters = new RedisCounterStore({
        url: config.redisUrl,
        hashKey: secretKey,
        commandTimeoutMs: config.counterTimeoutMs,
      });
    } else {
      counters = new IpcCounterStore({ timeoutMs: config.counterTimeoutMs });
    }
    closers.push(() => counters.close());
    const blacklist = await BlacklistIndex.open(store);
    closers.push(() => blacklist.close());
    const active = new ActiveRulesets({
      activeRulesets: async () => toActive(await store.activeRulesets()),
    });
    await active.refresh();
    closers.push(store.watchRulesets(() => void active.refresh().catch(() => {})));
    const log = new DecisionLog<DecisionRecord>(store);
    closers.push(() => log.close());
    let events: BufferedEventSink;
    if (config.kafka) {
      const { createEventSink } = await import('../../storage/events/index.ts');
      events = createEventSink({
        kafka: { brokers: config.kafka.brokers, clientId: 'vigil' },
        dataDir: config.dataDir,
        registry,
      });
    } else {
      // The file adapter alone: the events index would load the Kafka client too.
      const [{ FileTransport }, { BufferedEventSink: Sink }] = await Promise.all([
        import('../../storage/events/file.ts'),
        import('../../storage/events/sink.ts'),
      ]);
      events = new Sink(new FileTransport({ dataDir: config.dataDir }), {
        batchSize: 5_000,
        maxBatchBytes: 4 * 1024 * 1024,
        lingerMs: 20,
        registry,
      });
    }
    closers.push(() => events.close());

    const deps: DecideDeps = {
      rulesets: active,
      counters,
      blacklist,
      backends: integrations.backends,
      log,
      outbox: {
        enqueue: async (item) => {
          await store.enqueue({ kind: 'case_decision', key: item.workflow_id, payload: item });
        },
      },
      events,
      secretKey,
      pciLevel: config.pciLevel,
      eventRedact: config.eventsRedact,
      deadlineMs: config.decisionDeadlineMs,
      now: Date.now,
      clock: () => performance.now(),
    };
    const proxy = createInlineProxy({
      config: init.routes,
      trustedProxies: config.trustedProxies,
      registry,
      decide: (input: ExtractedInput) => decideExtracted(deps, input),
      onRequestEvent: (e) => events.publish('vigil.requests', requestKey(e), () => requestEvent(e)),
    });
    closers.push(() => proxy.close(shutdownGraceMs(proxy)));
    // Under node:cluster the primary owns the socket and every worker shares it.
    const addr = await proxy.listen(config.proxyPort, config.host);
    return { port: addr.port, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The script to fork workers with (runCluster's `exec`). */
export const PROXY_WORKER_ENTRY = fileURLToPath(new URL('./worker-entry.mjs', import.meta.url));

/** The body of a forked worker process (worker-entry.mjs). */
export async function runProxyWorkerProcess(config: Config): Promise<number> {
  try {
    await runCluster({
      log: stderrLogger,
      worker: async () => startProxyWorker(config, await requestInit()),
    });
    return 0;
  } catch (err) {
    stderrLogger.error({ error: (err as Error).message }, 'proxy worker failed to start');
    // The IPC channel would keep a failed worker alive: leave, and the primary forks another.
    process.exit(1);
  }
}
