// The composition root: builds the adapters the configuration names (or the embedded
// defaults), wires them into the roles asked for and runs until SIGINT/SIGTERM.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import nodeCluster, { type Worker as ClusterWorker } from 'node:cluster';
import { setPriority } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { RESOLVE_REFUSED, lifecycleEventSignal, resolveUpdate } from '../workflows/contracts.ts';
import type { Config } from '../config/config.ts';
import { ActiveRulesets } from '../decisions/active-rulesets.ts';
import type { DecideDeps } from '../decisions/decide.ts';
import type {
  DecisionRecord,
  HandoffItem,
  LifecycleEvent,
  RulesetRow,
} from '../decisions/ports.ts';
import type { DecisionOutcome } from '../rulesets/ports.ts';
import { decideExtracted, type ExtractedInput } from '../decisions/extracted.ts';
import { buildApp, type App, type AppOptions, type HealthCheck } from '../proxy/app.ts';
import { SCOPES, cachedTokenVerifier, requireScope, type TokenVerifier } from '../proxy/auth.ts';
import { authzRoutes } from '../proxy/authz.ts';
import {
  createInlineProxy,
  loadRoutesFileSync,
  openConfigSource,
  parseTrustedProxies,
  runCluster,
  shutdownGraceMs,
  stderrLogger,
  workerCount,
  type ClusterHandle,
  type CompiledConfig,
  type InlineProxy,
} from '../proxy/inline/index.ts';
import {
  METRICS_REPLY,
  METRICS_REQUEST,
  PROXY_WORKER_ENTRY,
  WORKER_INIT,
  isWorkerHello,
} from '../proxy/inline/worker.ts';
import { serveCount } from '../storage/counters/ipc.ts';
import { createMetrics, decisionObserver, type ApiMetrics } from '../proxy/metrics.ts';
import { blacklistRoutes } from '../proxy/routes/blacklist.ts';
import { decisionRoutes } from '../proxy/routes/decisions.ts';
import { eventRoutes } from '../proxy/routes/events.ts';
import { caseRoutes, temporalCases, unavailableCases } from '../proxy/routes/cases.ts';
import { playbookRoutes, type IntegrationRef } from '../proxy/routes/playbooks.ts';
import { rulesetRoutes } from '../proxy/routes/rulesets.ts';
import { lazyTemporalClient } from '../proxy/temporal-client.ts';
import { tokenRoutes } from '../proxy/routes/tokens.ts';
import { integrationRoutes } from '../proxy/routes/integrations.ts';
import { createIntegrations, type Integrations } from '../integrations/index.ts';
import { compileRuleset } from '../rulesets/compile.ts';
import { parseRuleset, type RulesetDocument } from '../rulesets/schema.ts';
import { PlaybookSchema } from '../rulesets/playbook.ts';
import { BlacklistIndex } from '../storage/blacklist-index.ts';
import { MemoryCounterStore } from '../storage/counters/memory.ts';
import { RedisCounterStore } from '../storage/counters/redis.ts';
import { DecisionLog, insertOf } from '../storage/decision-log.ts';
import { SqliteDecisionWriter } from '../storage/decision-log-thread.ts';
import { createEventSink } from '../storage/events/index.ts';
import { requestEvent, requestKey } from '../storage/events/schemas.ts';
import { SQLITE_FILE, openStore, type Store } from '../storage/store.ts';
import { ADMIN_TOKEN_FILE } from './client.ts';
import { startDemoDesk, startDemoOrigin } from './demo-origin.ts';
import type { EmbeddedTemporal } from './embedded-temporal.ts';
import { superviseWorkerRole, type WorkerChild } from './worker-child.ts';

export interface Roles {
  api: boolean;
  proxy: boolean;
  worker: boolean;
  /** Start the embedded dev server when TEMPORAL_ADDRESS is unset (`start` only). */
  embedded: boolean;
}

const log = (msg: string) => console.log(`[vigil] ${msg}`);
const WORKER_NICENESS = 10;

/**
 * This process's CPU priority for the worker role. `idle` is SCHED_IDLE for every thread (through
 * util-linux `chrt`; threads started later inherit it), falling back to nice 19 where that is
 * not possible; `low` is nice 10. A process only ever lowers its own priority, which needs no
 * privilege.
 */
function lowerPriority(priority: 'idle' | 'low' | 'normal', log: (msg: string) => void): void {
  if (priority === 'normal') return;
  lowerOwnAutogroup(priority === 'idle' ? 19 : WORKER_NICENESS);
  if (priority === 'idle') {
    const r = spawnSync(CHRT, ['--all-tasks', '--idle', '--pid', '0', String(process.pid)], {
      stdio: 'ignore',
    });
    if (r.status === 0) return;
    log('worker priority: SCHED_IDLE not available (chrt); running at nice 19');
  }
  try {
    setPriority(priority === 'idle' ? 19 : WORKER_NICENESS);
  } catch {
    // Not permitted here: run at the normal priority.
  }
}
const CHRT = '/usr/bin/chrt';

/**
 * Linux with CONFIG_SCHED_AUTOGROUP (on by default in most distribution kernels) schedules each
 * session as one group: a process that leads a session of its own (`vigil start`'s worker
 * process, detached so Ctrl-C reaches it through its parent) competes with the API's session at
 * full weight, whatever its threads' nice or SCHED_IDLE, which only rank them within their
 * group. Measured here: the API's event loop waited 1–8 ms for a CPU while the worker's threads
 * ran. So the group is lowered too, but only when this process leads its session: a session
 * shared with a shell would take every process of that shell down with it.
 */
function lowerOwnAutogroup(nice: number): void {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const session = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
    if (session !== process.pid) return;
    writeFileSync('/proc/self/autogroup', String(nice));
  } catch {
    // No autogroup (kernel without it, not Linux) or not permitted: nothing to lower.
  }
}

/** The instance secret: VIGIL_SECRET_KEY, or a key generated once into the data dir (0600). */
export function loadSecretKey(dataDir: string, configured: string | undefined): Buffer {
  if (configured) return createHash('sha256').update(configured).digest();
  const file = path.join(dataDir, 'secret.key');
  if (existsSync(file)) return Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
  mkdirSync(dataDir, { recursive: true });
  const key = randomBytes(32);
  writeFileSync(file, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  return key;
}

/** Stored documents are parsed again on load (defaults applied; cheap, once per version). */
function toActive(rows: RulesetRow[]) {
  const out: { id: string; context: string; version: number; document: RulesetDocument }[] = [];
  for (const r of rows) {
    const parsed = parseRuleset(r.document, { edition: 'connect' });
    if (parsed.ok)
      out.push({ id: r.id, context: r.context, version: r.version, document: parsed.value });
    else
      console.error(
        `[vigil] ruleset ${r.id} no longer parses; skipped: ${JSON.stringify(parsed.issues)}`,
      );
  }
  return out;
}

/** A resolve waits for the case to accept its update; past this the record alone resolves. */
// Past it the resolution waits in the outbox for the relay (the answer does not wait longer).
const RESOLVE_UPDATE_TIMEOUT_MS = 5_000;
/** A lifecycle event's signal into its case: the answer waits for it, so not long. */
const SIGNAL_TIMEOUT_MS = 5_000;

/**
 * The case itself answered (its validator refused the update). A case not found may not be
 * started yet (its handoff waits in the outbox): that is not an answer.
 */
function caseAnswered(err: unknown): boolean {
  // By name: @temporalio/client is loaded only once Temporal is called (it is not, here).
  return (err as { name?: unknown } | null)?.name === 'WorkflowUpdateFailedError';
}

function isAlreadyResolved(err: unknown): boolean {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    if ((e as { type?: unknown }).type === RESOLVE_REFUSED.alreadyResolved) return true;
  }
  return false;
}

export interface Runtime {
  config: Config;
  store: Store;
  metrics: ApiMetrics;
  app: App;
  decideDeps: DecideDeps;
  proxyDecide: (input: {
    context: string;
    body: Record<string, unknown>;
    source: string;
  }) => Promise<{
    id: string;
    decision: DecisionOutcome;
  }>;
  active: ActiveRulesets;
  log: DecisionLog<DecisionRecord>;
  integrations: Integrations;
  close(): Promise<void>;
}

/** Everything but listening: the API app and the decision path over the configured adapters. */
export async function buildRuntime(
  config: Config,
  opts: {
    serveApi: boolean;
    temporalAddress?: string | undefined;
    /** More /readyz checks (the proxy workers, when forked). */
    health?: HealthCheck[] | undefined;
    /** Other processes' metrics merged into /metrics (the proxy workers, when forked). */
    metricsFrom?: AppOptions['metricsFrom'];
    /**
     * The proxy's route config, live, for /api/authz: the route of the asked context lends its
     * extractors, session, mode and block body, as it does in the proxy (docs/proxy.md).
     */
    authzConfig?: (() => CompiledConfig | undefined) | undefined;
    /** /readyz is not ready without Temporal (`vigil worker` alone). */
    temporalRequired?: boolean | undefined;
  },
): Promise<Runtime> {
  // Closed last-in first-out (see close() below); also when building fails half-way, so what
  // was opened (the store's writer thread, the event sink) does not keep the process alive.
  const closers: (() => Promise<void> | void)[] = [];
  try {
    return await buildRuntimeWith(config, opts, closers);
  } catch (err) {
    for (const close of closers.reverse()) {
      try {
        await close();
      } catch {
        // The build's own error is the one to report.
      }
    }
    throw err;
  }
}

async function buildRuntimeWith(
  config: Config,
  opts: Parameters<typeof buildRuntime>[1],
  closers: (() => Promise<void> | void)[],
): Promise<Runtime> {
  // Checked before anything opens, named by its variable.
  await named('VIGIL_TRUSTED_PROXIES', () => parseTrustedProxies(config.trustedProxies));
  const metrics = createMetrics();
  // Embedded store: this connection leaves WAL checkpoints to the decision log's writer thread
  // (opened below), off the thread that answers; a checkpoint there made REVIEWs' p99 ~4.5 ms.
  const store = await openStore({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    sqlite: { autoCheckpoint: false },
  });
  closers.push(() => store.close());
  const secretKey = loadSecretKey(config.dataDir, config.secretKey);
  // Link integrations (CONTRACT §3): documents with encrypted secrets, the backend caller the
  // engine uses, the actions workflows invoke; every outbound call behind the egress guard.
  const integrations = createIntegrations({
    store,
    secretKey,
    egressAllow: config.egressAllow,
    registry: metrics.registry,
    edition: config.edition,
  });
  closers.push(() => integrations.close());

  const counters = config.redisUrl
    ? new RedisCounterStore({
        url: config.redisUrl,
        hashKey: secretKey,
        commandTimeoutMs: config.counterTimeoutMs,
        onError: () => metrics.counterErrors.inc(0),
      })
    : new MemoryCounterStore();
  closers.push(() => counters.close());
  const blacklist = await BlacklistIndex.open(store);
  closers.push(() => blacklist.close());
  const active = new ActiveRulesets({
    activeRulesets: async () => toActive(await store.activeRulesets()),
  });
  await active.refresh();
  const unwatch = store.watchRulesets(() => void active.refresh().catch(() => {}));
  closers.push(unwatch);
  // Embedded store: the log's INSERTs and COMMITs run on a thread, off the answer path.
  const logWriter =
    store.dialect === 'sqlite'
      ? await SqliteDecisionWriter.open(path.join(config.dataDir, SQLITE_FILE))
      : undefined;
  const decisionLog = new DecisionLog<DecisionRecord>(
    store,
    logWriter ? { writer: logWriter } : {},
  );
  // Closed in reverse: the log flushes into the writer, then the writer, later the store.
  if (logWriter) closers.push(() => logWriter.close());
  closers.push(() => decisionLog.close());
  // Kafka with KAFKA_BROKERS, else the local NDJSON file; a bounded buffer either way, so a
  // slow or absent broker never slows a decision (drops are counted).
  const events = createEventSink({
    kafka: config.kafka ? { brokers: config.kafka.brokers, clientId: 'vigil' } : undefined,
    dataDir: config.dataDir,
    registry: metrics.registry,
  });
  closers.push(() => events.close());

  const decideDeps: DecideDeps = {
    rulesets: active,
    counters,
    blacklist,
    backends: integrations.backends,
    log: decisionLog,
    outbox: {
      enqueue: async (item) => {
        await store.enqueue({ kind: 'case_decision', key: item.workflow_id, payload: item });
      },
      // The handoff and the record in one transaction: one commit on the answer path.
      enqueueWithRecord: (item: HandoffItem, record: DecisionRecord) =>
        store.enqueueWithDecision(
          { kind: 'case_decision', key: item.workflow_id, payload: item },
          insertOf(record),
        ),
    },
    events,
    secretKey,
    pciLevel: config.pciLevel,
    eventRedact: config.eventsRedact,
    deadlineMs: config.decisionDeadlineMs,
    now: Date.now,
    clock: () => performance.now(),
    observe: decisionObserver(metrics, (c) => active.resolve(c)?.context === c),
  };

  // Tokens: the configured admin token is registered (hashed) with every scope; without one,
  // the first start creates a bootstrap token, prints it once and keeps it in a 0600 file.
  if (config.adminToken) {
    await store.importToken({
      token: config.adminToken,
      name: 'admin (VIGIL_ADMIN_TOKEN)',
      scopes: [...SCOPES],
    });
  } else if (opts.serveApi && (await store.listTokens()).length === 0) {
    const t = await store.createToken({ name: 'bootstrap admin', scopes: [...SCOPES] });
    const file = path.join(config.dataDir, ADMIN_TOKEN_FILE);
    writeFileSync(file, `${t.token}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    log(`bootstrap admin token (shown once, also in ${file}):\n\n    ${t.token}\n`);
  }
  // Revocations through this process apply at once; through another, within the cache's 1 s.
  const tokenCache = cachedTokenVerifier(async (plaintext) => {
    const row = await store.findToken(plaintext);
    return row ? { token_id: row.id, name: row.name, scopes: row.scopes } : undefined;
  });
  const verifyToken: TokenVerifier = tokenCache.verify;

  const health: HealthCheck[] = [
    {
      name: 'store',
      required: true,
      check: async () => {
        await store.ping();
        return { state: 'up', detail: store.dialect };
      },
    },
    {
      name: 'counters',
      required: false,
      check: () => {
        if (counters instanceof RedisCounterStore) {
          const s = counters.status();
          return Promise.resolve({
            state: s.breaker === 'closed' && s.connection === 'ready' ? 'up' : 'degraded',
            detail: `redis ${s.connection}, breaker ${s.breaker}`,
          });
        }
        return Promise.resolve({ state: 'up', detail: 'in-process' });
      },
    },
    {
      name: 'events',
      required: false,
      check: () => {
        const h = events.health();
        const s = events.stats();
        return Promise.resolve({
          state: h.ok ? 'up' : 'degraded',
          detail: `${h.adapter}, ${s.buffered} buffered, ${s.dropped} dropped${h.last_error ? `, ${h.last_error}` : ''}`,
        });
      },
    },
    {
      name: 'outbox',
      required: false,
      check: async () => {
        const s = await store.outboxStats();
        return {
          state: 'up',
          detail: `${s.size} waiting, oldest ${Math.round(s.oldestAgeMs / 1000)} s`,
        };
      },
    },
    ...(opts.health ?? []),
    {
      name: 'temporal',
      // The API answers without it (handoffs wait in the outbox); a worker alone does nothing.
      required: opts.temporalRequired === true,
      check: async () => {
        if (!opts.temporalAddress) return { state: 'disabled', detail: 'TEMPORAL_ADDRESS unset' };
        // Loaded here, not with this module: an API that never meets Temporal never loads it.
        const { Connection } = await import('@temporalio/client');
        const c = await Connection.connect({ address: opts.temporalAddress, connectTimeout: 500 });
        try {
          await c.workflowService.describeNamespace({ namespace: config.temporal.namespace });
          return { state: 'up', detail: opts.temporalAddress };
        } finally {
          await c.close();
        }
      },
    },
  ];

  const rulesetRepo = {
    create: (d: { name: string; context: string; document: unknown }) => store.createRuleset(d),
    get: (id: string) => store.getRuleset(id),
    list: (f: { context?: string }) => store.listRulesets(f),
    updateDraft: (id: string, d: { name: string; context: string; document: unknown }) =>
      store.updateDraft(id, d),
    activate: (id: string) => store.activate(id),
    rollback: (id: string) => store.rollback(id),
  };
  const blacklistRepo = {
    add: (e: Parameters<Store['addBlacklist']>[0]) => store.addBlacklist(e),
    get: (id: string) => store.getBlacklist(id),
    list: (f: { field_path?: string }) => store.listBlacklist(f),
    delete: (id: string) => store.deleteBlacklist(id),
  };

  const proxyDecide = (input: ExtractedInput) => decideExtracted(decideDeps, input);

  // One client for the API's Temporal calls (resolve, cases), connected on first use.
  const temporal = opts.temporalAddress
    ? lazyTemporalClient({ address: opts.temporalAddress, namespace: config.temporal.namespace })
    : undefined;
  if (temporal) closers.push(() => temporal.close());

  const app = await buildApp({
    metrics,
    health,
    verifyToken,
    serveApi: opts.serveApi,
    ...(opts.metricsFrom ? { metricsFrom: opts.metricsFrom } : {}),
    routes: [
      decisionRoutes({
        decide: decideDeps,
        log: decisionLog,
        resolver: {
          resolve: async (id, resolution, note) => {
            const record = await decisionLog.get(id);
            if (!record) return 'not_found';
            const workflowId = record.response.workflow_id;
            if (workflowId && temporal) {
              // The case's update validator refuses a second resolve before it reaches history,
              // so the case is the one place that says "once".
              const args = { decision_id: id, resolution, ...(note ? { note } : {}) };
              try {
                await temporal.call(
                  (client) =>
                    client.workflow.getHandle(workflowId).executeUpdate(resolveUpdate, {
                      args: [args],
                    }),
                  RESOLVE_UPDATE_TIMEOUT_MS,
                );
                await decisionLog.resolve(id, resolution, note ?? null);
                return 'ok';
              } catch (err) {
                if (isAlreadyResolved(err)) return 'already_resolved';
                if (!caseAnswered(err)) {
                  // Temporal or the case's worker did not answer, or the case does not exist
                  // yet (its handoff still in the outbox): the resolution is kept in the
                  // outbox for the relay to hand to the case when it can. Kept first, then the
                  // record: a failure between the two leaves a resolution the case refuses
                  // later as a repeat, never a record the case never hears of.
                  const known = await decisionLog.get(id);
                  if (known?.response.resolution) return 'already_resolved';
                  await store.enqueue({
                    kind: 'case_resolve',
                    key: workflowId,
                    payload: { workflow_id: workflowId, resolve: args },
                  });
                  return decisionLog.resolve(id, resolution, note ?? null);
                }
              }
            }
            // No case, or the case refused (closed without a resolution): the record only.
            return decisionLog.resolve(id, resolution, note ?? null);
          },
        },
      }),
      rulesetRoutes({
        repo: rulesetRepo,
        edition: config.edition,
        // For /validate: a backend rule naming an integration or backend nobody registered
        // would answer `unknown_backend` (its on_error) on every decision.
        checkReferences: async (doc) => {
          const issues: { path: string; message: string }[] = [];
          for (const ref of compileRuleset(doc).backendRefs) {
            const integration = (await integrations.get(ref.integration)) as
              { backends?: { backend_id: string }[] } | undefined;
            if (!integration)
              issues.push({
                path: `${ref.path}.integration`,
                message: `no integration '${ref.integration}' is registered`,
              });
            else if (!integration.backends?.some((b) => b.backend_id === ref.backend_id))
              issues.push({
                path: `${ref.path}.backend_id`,
                message: `integration '${ref.integration}' has no backend '${ref.backend_id}'`,
              });
          }
          return issues;
        },
        onActivated: () => active.refresh(),
        simulate: {
          active,
          blacklist,
          newCounterStore: () => new MemoryCounterStore(),
          listDecisions: (q) => decisionLog.list(q),
          now: Date.now,
          secretKey,
          pciLevel: config.pciLevel,
        },
      }),
      blacklistRoutes(blacklistRepo, () => blacklist.refresh()),
      eventRoutes({
        log: decisionLog,
        events: { insert: async (e) => void (await store.insertEvent(e)) },
        rulesets: { get: (id) => store.getRuleset(id) },
        notifyBackends: (record, event) => integrations.notify(record, event),
        blacklist: {
          add: async (e) => {
            const entry = await store.addBlacklist(e);
            await blacklist.refresh();
            return entry;
          },
        },
        // Into the decision's case (CONTRACT §2). A case not started yet (its handoff still in
        // the outbox) or already closed refuses the signal: the answer says so
        // (`workflow_signalled: false`) and the event stays stored.
        ...(temporal
          ? {
              signalCase: async (workflowId: string, e: LifecycleEvent) => {
                await temporal.call(
                  (client) =>
                    client.workflow.getHandle(workflowId).signal(lifecycleEventSignal, {
                      id: e.id,
                      type: e.type,
                      decision_id: e.decision_id,
                      occurred_at: e.occurred_at,
                      data: e.data,
                    }),
                  SIGNAL_TIMEOUT_MS,
                );
              },
            }
          : {}),
        now: Date.now,
      }),
      // nginx auth_request / Envoy ext_authz: the same engine, behind a decisions:write token.
      (a: App, verify: TokenVerifier) =>
        authzRoutes(a, {
          decide: proxyDecide,
          // fastify awaits async hooks; authz's option is typed with the callback signature.
          // eslint-disable-next-line @typescript-eslint/no-misused-promises
          onRequest: requireScope(verify, 'decisions:write'),
          trustedProxies: config.trustedProxies,
          registry: metrics.registry,
          config: opts.authzConfig,
          // Every authz check is a monitored request (CONTRACT §6), as the proxy's are.
          onRequestEvent: (e) =>
            events.publish('vigil.requests', requestKey(e), () => requestEvent(e)),
        }),
      integrationRoutes(integrations),
      tokenRoutes(
        {
          create: (t) => store.createToken(t),
          revoke: (id) => store.revokeToken(id),
          scopesOf: async (id) => (await store.listTokens()).find((t) => t.id === id)?.scopes,
        },
        (id) => tokenCache.invalidate(id),
      ),
      playbookRoutes({
        repo: {
          put: (p) => store.putPlaybook(p),
          get: (name, version) => store.getPlaybook(name, version),
          list: () => store.listPlaybooks(),
          delete: (name) => store.deletePlaybook(name),
        },
        integrations: {
          get: async (slug) => (await store.getIntegration(slug))?.document as IntegrationRef,
        },
        // Loaded on the first playbook that names a workflow: the API needs no workflow code.
        userWorkflows: async () => Object.keys(await import('../workflows/user/index.ts')),
      }),
      caseRoutes({
        cases: temporal
          ? temporalCases(temporal, { cursorKey: secretKey })
          : unavailableCases('TEMPORAL_ADDRESS is unset: cases live in Temporal'),
      }),
    ],
  });
  // Last in, first closed: no request arrives while the log, the sink and the store close.
  closers.push(() => app.close());

  return {
    config,
    store,
    metrics,
    app,
    decideDeps,
    proxyDecide,
    active,
    log: decisionLog,
    integrations,
    close: async () => {
      // In reverse order of opening: the store is closed after everything that writes to it.
      for (const close of closers.reverse()) {
        try {
          await close();
        } catch (err) {
          console.error('[vigil] close failed:', err);
        }
      }
    },
  };
}

/** Pushes and activates the sample rulesets once, when the store has none (VIGIL_DEMO=1). */
async function seedSamples(store: Store, active: ActiveRulesets, dir: string): Promise<void> {
  if ((await store.listRulesets()).length > 0) return;
  for (const file of ['default.json', 'checkout.json', 'login.json']) {
    const parsed = parseRuleset(JSON.parse(readFileSync(path.join(dir, file), 'utf8')), {
      edition: 'connect',
    });
    if (!parsed.ok) throw new Error(`sample ${file} is invalid: ${JSON.stringify(parsed.issues)}`);
    const doc = parsed.value;
    const row = await store.createRuleset({ name: doc.name, context: doc.context, document: doc });
    await store.activate(row.id);
  }
  await active.refresh();
  log(`sample rulesets activated for contexts default, checkout, login (${dir})`);
}

type WorkerMetrics = Awaited<ReturnType<NonNullable<AppOptions['metricsFrom']>>>[number];
const WORKER_METRICS_TIMEOUT_MS = 1_000;

/** Every connected proxy worker's metrics; a worker that does not answer in time is left out. */
async function workerMetrics(): Promise<WorkerMetrics[]> {
  const workers = Object.values(nodeCluster.workers ?? {}).filter(
    (w): w is ClusterWorker => w !== undefined && w.isConnected(),
  );
  const ask = (w: ClusterWorker) =>
    new Promise<WorkerMetrics | undefined>((resolve) => {
      const id = randomBytes(8).toString('hex');
      const done = (value: WorkerMetrics | undefined) => {
        clearTimeout(timer);
        w.off('message', on);
        resolve(value);
      };
      const on = (m: { t?: unknown; id?: unknown; metrics?: WorkerMetrics }) => {
        if (m?.t === METRICS_REPLY && m.id === id) done(m.metrics);
      };
      const timer = setTimeout(() => done(undefined), WORKER_METRICS_TIMEOUT_MS);
      w.on('message', on);
      w.send({ t: METRICS_REQUEST, id });
    });
  return (await Promise.all(workers.map(ask))).filter((m): m is WorkerMetrics => !!m);
}

/**
 * Registers the demo desk integration (its port changes every start) and, once, the sample
 * playbook that opens a ticket on it for risky checkouts.
 */
async function seedDemoDesk(rt: Runtime, deskUrl: string, examples: string): Promise<void> {
  const read = (file: string) =>
    JSON.parse(readFileSync(path.join(examples, file), 'utf8')) as Record<string, unknown>;
  const put = await rt.integrations.put('demo-desk', {
    ...read('integrations/demo-desk.json'),
    base_url: deskUrl,
  });
  if (!put.ok) throw new Error(`demo-desk integration is invalid: ${JSON.stringify(put.issues)}`);
  if (!(await rt.store.getPlaybook('review-default'))) {
    const doc = read('playbooks/review-default.json');
    const parsed = PlaybookSchema.safeParse(doc);
    if (!parsed.success) throw new Error(`sample playbook is invalid: ${parsed.error.message}`);
    await rt.store.putPlaybook({ name: 'review-default', document: parsed.data });
  }
  log(
    `demo desk (risk score, tickets) on ${deskUrl}: integration 'demo-desk', playbook 'review-default'`,
  );
}

function demoRoutes(originUrl: string): object {
  return {
    mode: 'active',
    origins: { shop: originUrl },
    session: { cookie: 'sid' },
    routes: [
      {
        match: { method: 'POST', path: '/login' },
        origin: 'shop',
        context: 'login',
        extract: {
          '$.customer.email': { from: 'body', field: 'email' },
          '$.device.fingerprint': { from: 'header', name: 'x-device-id' },
        },
      },
      {
        match: { method: 'POST', path: '/checkout/*' },
        origin: 'shop',
        context: 'checkout',
        extract: {
          '$.transaction.amount': { from: 'body', field: 'amount', type: 'integer' },
          '$.transaction.currency': { from: 'body', field: 'currency' },
          '$.credential_fingerprint': { from: 'body', field: 'card_token' },
          '$.customer.id': { from: 'body', field: 'customer_id' },
        },
      },
      { match: { path: '/*' }, origin: 'shop' },
    ],
  };
}

export async function runRoles(config: Config, roles: Roles): Promise<number> {
  // The data dir holds decision contexts (emails, IPs, fingerprints) and the embedded Temporal's
  // case data: what Vigil creates there is its user's alone (0700 dirs, 0600 files), children
  // (the dev server) included. A dir that exists keeps its mode.
  process.umask(0o077);
  const closers: (() => Promise<void>)[] = [];
  try {
    return await runRolesWith(config, roles, closers);
  } catch (err) {
    // A start that fails half-way stops what it started (the dev server, the demo servers, the
    // runtime), so the process exits and a supervisor can start it again; it used to print the
    // error and hang with the dev server running.
    for (const close of closers) {
      try {
        await close();
      } catch {
        // The start's own error is the one to report.
      }
    }
    throw err;
  }
}

/** `fn`'s result, or its error prefixed with the setting it is about. */
async function named<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
}

async function runRolesWith(
  config: Config,
  roles: Roles,
  closers: (() => Promise<void>)[],
): Promise<number> {
  // Checked before anything starts: a bad routes file would otherwise only show as proxy
  // workers that crash-loop behind a primary whose API is up.
  if (roles.proxy && config.routesFile) loadRoutesFileSync(config.routesFile);
  if (!config.redisUrl && !roles.embedded && (roles.api || roles.proxy)) {
    // In-process counters are this process's (and its proxy workers'): `vigil api` and
    // `vigil proxy` run apart on one data dir share the store, not the counts.
    log(
      'velocity counts are kept in this process: other processes on this data dir count apart (set REDIS_URL to count across them)',
    );
  }
  // `vigil proxy` alone without routes would run, say ready and serve nothing.
  if (roles.proxy && !roles.api && !config.routesFile) {
    throw new Error('VIGIL_CONFIG: `vigil proxy` needs a routes file (docs/proxy.md)');
  }
  if (roles.worker && !roles.api && !roles.proxy) {
    // `vigil worker` alone: cases tolerate a few ms of delay, answers on the same machine do
    // not. Set before the Temporal runtime starts its threads, which inherit it.
    lowerPriority(config.workerPriority ?? 'low', log);
  }
  let embedded: EmbeddedTemporal | undefined;
  let temporalAddress = config.temporal.address;
  if (!temporalAddress && roles.embedded) {
    const { startEmbeddedTemporal } = await import('./embedded-temporal.ts');
    embedded = await startEmbeddedTemporal({
      bin: config.temporalBin,
      dataDir: config.dataDir,
      log,
    });
    temporalAddress = embedded.address;
    closers.push(() => embedded!.stop());
  }
  mkdirSync(config.dataDir, { recursive: true });
  // VIGIL_PROXY_WORKERS (default: one per core) proxy processes forked from this one; 1: the
  // proxy runs in this process.
  const proxyWorkers = roles.proxy ? workerCount(config.proxyWorkers) : 0;
  const demo = config.demo && roles.embedded;
  // The proxy port is served when there are routes to serve (a file, or the demo's): by worker
  // processes, or with VIGIL_PROXY_WORKERS=1 by this process.
  const proxyWanted = proxyWorkers > 0 && Boolean(config.routesFile || demo);
  let cluster: ClusterHandle | undefined;
  let inProcessListening = false;
  // In /readyz only where the proxy runs. A process that runs it is not ready while no worker
  // listens: a load balancer asking /readyz would send traffic to a port nobody serves (at
  // startup, or while every worker is crashing). Some of them listening is degraded, and ready.
  const workersHealth: HealthCheck = {
    name: 'proxy_workers',
    required: true,
    check: () => {
      const ws = cluster
        ? cluster.workers()
        : inProcessListening
          ? [{ pid: process.pid, state: 'listening' as const }]
          : [];
      const up = ws.filter((w) => w.state === 'listening').length;
      const list = ws.map((w) => `${w.pid} ${w.state}`).join(', ');
      return Promise.resolve({
        state: up === proxyWorkers ? 'up' : up > 0 ? 'degraded' : 'down',
        detail: `${up}/${proxyWorkers} listening; ${list}; ${cluster?.restarts() ?? 0} restarts`,
      });
    },
  };
  let workerChild: WorkerChild | undefined;
  const workerChildHealth: HealthCheck = {
    name: 'worker_process',
    required: false,
    check: () => {
      const pid = workerChild?.pid();
      return Promise.resolve({
        state: !workerChild ? 'disabled' : pid ? 'up' : 'degraded',
        detail: workerChild
          ? `${pid ? `pid ${pid}` : 'restarting'}; ${workerChild.restarts()} restarts`
          : 'not started',
      });
    },
  };
  let desk: { url: string; close(): Promise<void> } | undefined;
  if (demo) {
    // The demo's third party listens on loopback, which the egress guard refuses unless allowed.
    desk = await startDemoDesk();
    closers.push(() => desk!.close());
    config = { ...config, egressAllow: [...config.egressAllow, new URL(desk.url).host] };
  }
  // The routes the proxy serves (a file, or the demo's, whose origin starts here), known before
  // the API is built: /api/authz reads them too.
  let routes: string | object | undefined = roles.proxy ? config.routesFile : undefined;
  if (roles.proxy && !routes && demo) {
    const origin = await startDemoOrigin();
    closers.unshift(() => origin.close());
    routes = demoRoutes(origin.url);
    log(`demo origin 'shop' on ${origin.url}`);
  }
  // `vigil api` alone reads VIGIL_CONFIG for authz as well, watched and reloaded like the proxy's.
  const authzRoutesDoc = roles.api ? (routes ?? config.routesFile) : undefined;
  const authzSource = authzRoutesDoc
    ? openConfigSource({ config: authzRoutesDoc, log: stderrLogger })
    : undefined;
  if (authzSource) closers.push(() => Promise.resolve(authzSource.close()));
  const rt = await buildRuntime(config, {
    serveApi: roles.api,
    temporalAddress,
    temporalRequired: roles.worker && !roles.api && !roles.proxy,
    ...(authzSource ? { authzConfig: (): CompiledConfig => authzSource.current() } : {}),
    health: [
      ...(proxyWanted ? [workersHealth] : []),
      ...(roles.worker && roles.api ? [workerChildHealth] : []),
    ],
    ...(proxyWorkers > 1
      ? { metricsFrom: () => (cluster ? workerMetrics() : Promise.resolve([])) }
      : {}),
  });
  closers.unshift(() => rt.close());
  const root = path.resolve(import.meta.dirname, '..');
  if (demo) {
    await seedSamples(rt.store, rt.active, path.join(root, 'examples/rulesets'));
    await seedDemoDesk(rt, desk!.url, path.join(root, 'examples'));
  }

  await named(`API_PORT ${config.apiPort} on VIGIL_HOST ${config.host}`, () =>
    rt.app.listen({ port: config.apiPort, host: config.host }),
  );
  const bound = rt.app.server.address();
  const apiPort = bound && typeof bound === 'object' ? bound.port : config.apiPort;
  log(
    roles.api
      ? `API on http://${config.host}:${apiPort} (/api, /healthz, /readyz, /metrics, /openapi.json)`
      : `health and metrics on http://${config.host}:${apiPort} (/healthz, /readyz, /metrics)`,
  );

  if (roles.proxy) {
    if (routes && proxyWorkers > 1) {
      const counters = rt.decideDeps.counters;
      const init = { t: WORKER_INIT, routes, egressAllow: config.egressAllow };
      cluster = await runCluster({
        workers: proxyWorkers,
        exec: PROXY_WORKER_ENTRY,
        execArgv: [`--max-semi-space-size=${config.proxyWorkerYoungMb}`],
        // Only the primary runs here; the workers run PROXY_WORKER_ENTRY.
        worker: () => {},
        handleSignals: false,
        onMessage: (w, m) => {
          if (isWorkerHello(m)) w.send(init);
          // Without Redis the workers count here, in the store the API's decisions use too.
          else if (counters instanceof MemoryCounterStore) serveCount(counters, w, m);
        },
      });
      closers.unshift(() => cluster!.stop());
      log(
        `proxy on http://${config.host}:${config.proxyPort} (${proxyWorkers} worker processes, ` +
          `velocity counts ${counters instanceof MemoryCounterStore ? 'in this process over IPC' : 'in Redis'})`,
      );
    } else if (routes) {
      const proxy: InlineProxy = createInlineProxy({
        config: routes,
        trustedProxies: config.trustedProxies,
        registry: rt.metrics.registry,
        decide: (input: ExtractedInput) => decideExtracted(rt.decideDeps, input),
        onRequestEvent: (e) =>
          rt.decideDeps.events.publish('vigil.requests', requestKey(e), () => requestEvent(e)),
      });
      await named(`PORT ${config.proxyPort} on VIGIL_HOST ${config.host}`, () =>
        proxy.listen(config.proxyPort, config.host),
      );
      inProcessListening = true;
      closers.unshift(() => proxy.close(shutdownGraceMs(proxy)));
      log(`proxy on http://${config.host}:${config.proxyPort}`);
    } else {
      log('proxy not started: set VIGIL_CONFIG to a routes file');
    }
  }
  if (roles.worker && roles.api) {
    // `vigil start`: the worker role in a process of its own (cli/worker-child.ts), off the
    // event loop that answers decisions.
    if (temporalAddress) {
      const child = (workerChild = superviseWorkerRole({
        env: {
          TEMPORAL_ADDRESS: temporalAddress,
          VIGIL_EGRESS_ALLOW: config.egressAllow.join(','),
          // Its health endpoints on a port of its own choosing; nothing else listens there.
          API_PORT: '0',
          VIGIL_DEMO: '0',
          // Beside the API on one machine, cases take only CPU time the answers leave (the
          // handoff bench: 10 cases/s on a worker at nice 10 still showed in the decisions' p99).
          VIGIL_WORKER_PRIORITY: config.workerPriority ?? 'idle',
        },
        log,
      }));
      closers.unshift(() => child.stop());
      log(`worker role in process ${child.pid() ?? '?'} (Temporal ${temporalAddress})`);
    } else {
      log('worker not started: TEMPORAL_ADDRESS is unset (risky decisions wait in the outbox)');
    }
  } else if (roles.worker) {
    if (temporalAddress) {
      // The Temporal worker (its native core and bundler) loads only in a process that runs it.
      const { startWorkerRole } = await import('./worker-role.ts');
      let stopWorker: () => Promise<void>;
      try {
        stopWorker = await startWorkerRole(
          rt,
          { address: temporalAddress, namespace: config.temporal.namespace },
          log,
        );
      } catch (err) {
        // Exits (non-zero): its supervisor (systemd, `vigil start`) starts it again.
        throw new Error(
          `TEMPORAL_ADDRESS ${temporalAddress}: the worker cannot start (${err instanceof Error ? err.message : String(err)})`,
          { cause: err },
        );
      }
      closers.unshift(stopWorker);
    } else {
      log('worker not started: TEMPORAL_ADDRESS is unset (risky decisions wait in the outbox)');
    }
  }
  if (demo) {
    log(
      `try: curl -s -X POST http://${config.host}:${config.proxyPort}/checkout/cart -H 'content-type: application/json' -d '{"amount":150000,"currency":"EUR","card_token":"tok_1"}'`,
    );
    log(
      `then: the REVIEW opened a case (curl -s -H "authorization: Bearer $(cat ${path.join(config.dataDir, ADMIN_TOKEN_FILE)})" http://${config.host}:${config.apiPort}/api/cases) and a ticket (curl -s ${desk!.url}/tickets)`,
    );
  }

  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log(`${sig}: shutting down`);
      resolve();
    };
    if (config.supervised) {
      // Forked by `vigil start`: its parent stops it (SIGTERM) in order; a Ctrl-C to the
      // process group is the parent's to act on, and a parent that is gone ends it.
      process.on('SIGINT', () => {});
      if (!process.connected) stop('parent gone');
      else process.once('disconnect', () => stop('parent gone'));
    } else process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  for (const close of closers) {
    try {
      await close();
    } catch (err) {
      console.error('[vigil] close failed:', err);
    }
  }
  // The IPC channel to the parent would keep a supervised process alive after everything closed.
  if (config.supervised) {
    process.removeAllListeners('disconnect');
    process.disconnect?.();
  }
  return 0;
}
