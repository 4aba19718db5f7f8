// The integrations room's one entry point (CONTRACT §3): admin operations on integration
// documents (validated, egress-checked, secrets encrypted, reads redacted), the engine's
// BackendCaller, the workflow's callBackend and invokeAction, lifecycle notifications.
// The composition root passes the store, the instance secret and the egress allow list.
import { Registry } from 'prom-client';
import type { BackendCaller } from '../rulesets/ports.ts';
import type { Issue } from '../rulesets/schema.ts';
import {
  createActionInvoker,
  type InvokeActionRequest,
  type InvokeActionResult,
} from './actions.ts';
import {
  backendMetrics,
  Backends,
  type CallBackendRequest,
  type CallBackendResult,
} from './backend.ts';
import { EgressPolicy, type Resolver } from './egress.ts';
import { IntegrationError, isIntegrationError } from './errors.ts';

import { kindOf, parseIntegration } from './schema.ts';
import {
  aadFor,
  getAt,
  hasEncMarker,
  isEncrypted,
  redact,
  REDACTED,
  SecretBox,
  secretPaths,
  setAt,
} from './secrets.ts';
import { isBroken, IntegrationRegistry, type IntegrationStorePort } from './registry.ts';

export type { IntegrationStorePort } from './registry.ts';
export type { CallBackendRequest, CallBackendResult } from './backend.ts';
export type { InvokeActionRequest, InvokeActionResult } from './actions.ts';
export { IntegrationError } from './errors.ts';
export { parseIntegration } from './schema.ts';

export type PutResult =
  | { ok: true; integration: unknown; created: boolean }
  | { ok: false; error: 'invalid_integration' | 'egress_refused'; issues: Issue[] };

export interface TestResult {
  ok: boolean;
  status?: number;
  latency_ms: number;
  error?: string;
}

/** decisions/lifecycle.ts BackendNotification, declared structurally. */
export interface BackendNotification {
  integration: string;
  backend_id: string;
  status: 'sent' | 'failed' | 'skipped';
  error?: string;
}

/** What notify reads from a decision record (decisions/ports.ts DecisionRecord fits). */
export interface NotifyRecord {
  response: {
    id: string;
    backend_results?: readonly { integration: string; backend_id: string; status?: string }[];
  };
}

export interface NotifyEvent {
  id?: string;
  type: string;
  decision_id: string;
  occurred_at: string;
  data: Record<string, unknown>;
}

export interface IntegrationsOptions {
  store: IntegrationStorePort;
  /** The 32-byte instance secret (cli/runtime.ts loadSecretKey). */
  secretKey: Uint8Array;
  /** VIGIL_EGRESS_ALLOW entries: `host` or `host:port`, exact. */
  egressAllow?: readonly string[];
  registry?: Registry;
  /** DNS for the egress guard; tests inject one. */
  resolver?: Resolver;
  now?: () => number;
  /** How long another process's edit may go unseen, ms (default 2000). */
  cacheTtlMs?: number;
  maxResponseBytes?: number;
  /**
   * VIGIL_EDITION. On `core` no backend is called: rulesets activated before a switch to Core
   * keep their backend rules, which then fail with `edition_required` (their on_error applies)
   * without a request. Default `connect`.
   */
  edition?: 'core' | 'connect';
  /** Budget of callBackend (workflow steps), ms. */
  workflowBackendTimeoutMs?: number;
  actionTimeoutMs?: number;
}

export const TEST_TIMEOUT_MS = 5_000;
export const NOTIFY_TIMEOUT_MS = 5_000;

export interface Integrations {
  put(slug: string, doc: unknown): Promise<PutResult>;
  get(slug: string): Promise<unknown>;
  list(): Promise<unknown[]>;
  delete(slug: string): Promise<boolean>;
  test(slug: string): Promise<TestResult>;
  backends: BackendCaller;
  callBackend(req: CallBackendRequest): Promise<CallBackendResult>;
  invokeAction(req: InvokeActionRequest): Promise<InvokeActionResult>;
  notify(record: NotifyRecord, event: NotifyEvent): Promise<BackendNotification[]>;
  close(): Promise<void>;
}

// A backend that took part: a request was made (answered or failed). One that lacked context,
// met an open circuit or was left pending never saw the decision.
const TOOK_PART = new Set(['ok', 'error', undefined]);

const EDITION = 'edition_required';

/** scheme://host:port of a base_url, to tell whether secrets would go elsewhere. */
function originOf(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  try {
    return new URL(v).origin;
  } catch {
    return undefined;
  }
}

export function createIntegrations(opts: IntegrationsOptions): Integrations {
  const now = opts.now ?? Date.now;
  const core = opts.edition === 'core';
  const box = new SecretBox(opts.secretKey);
  const egress = new EgressPolicy({ allow: opts.egressAllow ?? [], resolver: opts.resolver });
  const registry = new IntegrationRegistry({
    store: opts.store,
    box,
    egress,
    now,
    ...(opts.cacheTtlMs !== undefined ? { ttlMs: opts.cacheTtlMs } : {}),
    ...(opts.maxResponseBytes !== undefined ? { maxResponseBytes: opts.maxResponseBytes } : {}),
  });
  const backends = new Backends({
    registry,
    metrics: backendMetrics(opts.registry ?? new Registry()),
    now,
    ...(opts.workflowBackendTimeoutMs !== undefined
      ? { workflowTimeoutMs: opts.workflowBackendTimeoutMs }
      : {}),
  });
  const invokeAction = createActionInvoker({
    registry,
    now,
    ...(opts.actionTimeoutMs !== undefined ? { timeoutMs: opts.actionTimeoutMs } : {}),
  });

  async function put(slug: string, input: unknown): Promise<PutResult> {
    const invalid = (issues: Issue[]): PutResult => ({
      ok: false,
      error: 'invalid_integration',
      issues,
    });
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      return invalid([{ path: '', message: 'expected an integration document (an object)' }]);
    }
    if (hasEncMarker(input)) {
      return invalid([{ path: '', message: "'$enc' is reserved for stored secrets" }]);
    }
    const kind = kindOf(input);
    const paths = secretPaths(getAt(input, 'auth.type'), kind?.secretSettings ?? []);
    const existing = await opts.store.getIntegration(slug);

    // "***" means "keep what is stored": the GET-edit-PUT round trip. Substituted before parsing
    // so a secret setting with a format (a webhook URL) is checked as the value it stands for.
    const doc = structuredClone(input);
    const issues: Issue[] = [];
    // A kept secret goes only where it went before: else a token that may write but not read
    // could send every stored credential to a host of its own by changing base_url alone.
    const movedFrom = originOf(getAt(existing?.document, 'base_url'));
    const moved = movedFrom !== originOf(getAt(doc, 'base_url'));
    for (const p of paths) {
      if (getAt(doc, p) !== REDACTED) continue;
      const stored = getAt(existing?.document, p);
      if (isEncrypted(stored) && moved) {
        issues.push({
          path: p,
          message: `"***" keeps the stored secret only while base_url stays on ${movedFrom ?? 'its host'}: send the value again`,
        });
        continue;
      }
      if (!isEncrypted(stored)) {
        issues.push({
          path: p,
          message: `"***" keeps the stored secret, but none is stored here: send the value`,
        });
        continue;
      }
      try {
        setAt(doc, p, box.decrypt(stored, aadFor(slug, p)));
      } catch (err) {
        issues.push({
          path: p,
          message: `${isIntegrationError(err) ? err.code : 'secret_key_mismatch'}: the stored secret cannot be kept; send the value`,
        });
      }
    }
    const parsed = parseIntegration(doc, { slug });
    if (!parsed.ok) return invalid([...issues, ...parsed.issues]);
    if (issues.length) return invalid(issues);
    const value = parsed.value;

    try {
      await egress.checkUrl(new URL(value.base_url));
    } catch (err) {
      const e = isIntegrationError(err)
        ? err
        : new IntegrationError('connection', 'the host did not resolve');
      const message =
        e.code === 'egress_refused'
          ? e.message
          : `egress_refused: cannot check the host (${e.message})`;
      return { ok: false, error: 'egress_refused', issues: [{ path: 'base_url', message }] };
    }

    const stored = structuredClone(value) as unknown;
    for (const p of secretPaths(value.auth.type, kindOf(value)?.secretSettings ?? [])) {
      const v = getAt(stored, p);
      if (typeof v === 'string') setAt(stored, p, box.encrypt(v, aadFor(slug, p)));
    }
    await opts.store.putIntegration({ slug, kind: value.kind, document: stored });
    registry.invalidate(slug);
    return { ok: true, integration: redact(stored), created: !existing };
  }

  async function test(slug: string): Promise<TestResult> {
    const loaded = await registry.fresh(slug);
    if (!loaded) return { ok: false, latency_ms: 0, error: 'unknown_integration' };
    if (isBroken(loaded)) return { ok: false, latency_ms: 0, error: loaded.error.code };
    const req = loaded.kind.testCall(loaded.doc.settings, now());
    const start = performance.now();
    try {
      const res = await loaded.http.request({
        method: req.method,
        path: req.path,
        headers: req.headers,
        ...(req.body !== undefined ? { body: req.body } : {}),
        timeoutMs: TEST_TIMEOUT_MS,
      });
      const latency_ms = Math.round((performance.now() - start) * 1000) / 1000;
      // The generic kind's test is a reachability check: any answer short of a server error
      // shows the base URL is reachable with this auth; a built-in kind's test must succeed.
      const ok =
        loaded.kind.name === 'http' ? res.status < 500 : res.status >= 200 && res.status < 300;
      return ok
        ? { ok, status: res.status, latency_ms }
        : { ok, status: res.status, latency_ms, error: 'http_status' };
    } catch (err) {
      const latency_ms = Math.round((performance.now() - start) * 1000) / 1000;
      const code = isIntegrationError(err) ? err.code : 'connection';
      const out: TestResult = { ok: false, latency_ms, error: code };
      if (isIntegrationError(err) && err.status !== undefined) out.status = err.status;
      return out;
    }
  }

  async function notify(record: NotifyRecord, event: NotifyEvent): Promise<BackendNotification[]> {
    const seen = new Set<string>();
    const targets: { integration: string; backend_id: string }[] = [];
    for (const r of record.response.backend_results ?? []) {
      if (!TOOK_PART.has(r.status)) continue;
      const key = `${r.integration}\u0000${r.backend_id}`;
      if (seen.has(key)) continue;
      seen.add(key);
      targets.push({ integration: r.integration, backend_id: r.backend_id });
    }
    const out = await Promise.all(
      targets.map(async (t): Promise<BackendNotification | undefined> => {
        const loaded = await registry.get(t.integration);
        if (!loaded || isBroken(loaded)) return undefined;
        const b = loaded.backends.get(t.backend_id);
        if (!b || !b.doc.events.includes(event.type as never)) return undefined;
        try {
          const res = await loaded.http.request({
            method: 'POST',
            path: b.eventsPath,
            headers: {
              'content-type': 'application/json',
              accept: 'application/json',
              // The event's id: a receiver that sees the same event twice can tell.
              'idempotency-key':
                event.id ?? `${event.decision_id}:${event.type}:${event.occurred_at}`,
            },
            body: JSON.stringify({
              type: event.type,
              decision_id: event.decision_id,
              occurred_at: event.occurred_at,
              data: event.data,
            }),
            timeoutMs: NOTIFY_TIMEOUT_MS,
          });
          if (res.status < 200 || res.status >= 300) {
            return { ...t, status: 'failed', error: 'http_status' };
          }
          return { ...t, status: 'sent' };
        } catch (err) {
          return {
            ...t,
            status: 'failed',
            error: isIntegrationError(err) ? err.code : 'connection',
          };
        }
      }),
    );
    return out.filter((n): n is BackendNotification => n !== undefined);
  }

  return {
    put,
    async get(slug) {
      const row = await opts.store.getIntegration(slug);
      return row ? redact(row.document) : undefined;
    },
    async list() {
      const rows = await opts.store.listIntegrations();
      return rows.map((r) => redact(r.document));
    },
    async delete(slug) {
      const removed = await opts.store.deleteIntegration(slug);
      registry.invalidate(slug);
      return removed;
    },
    test,
    backends: core
      ? { call: () => Promise.resolve({ status: 'error', error: EDITION, latency_ms: 0 }) }
      : backends,
    callBackend: (req) =>
      core
        ? Promise.reject(
            new IntegrationError(EDITION, 'backend rules need the Connect edition', {
              retryable: false,
            }),
          )
        : backends.callBackend(req),
    invokeAction,
    notify,
    close: () => registry.close(),
  };
}
