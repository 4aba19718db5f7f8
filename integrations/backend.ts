// Backend calls (CONTRACT §3): the engine's BackendCaller port and the workflow's callBackend.
// Order of work for one call: find the backend; check required_fields (missing or null → no
// request at all); ask the breaker; build the body from the request template; send under
// min(rule timeout, backend timeout, what is left of the deadline); map the answer's
// outcome_path through `map`. The caller contract is to answer, never to throw.
import { Counter, Histogram, type Registry } from 'prom-client';
import type {
  BackendCallRequest,
  BackendCallResult,
  BackendCaller,
  Outcome,
} from '../rulesets/ports.ts';
import { IntegrationError, isIntegrationError } from './errors.ts';
import { parseJson, type HttpResponse } from './http.ts';
import {
  isBroken,
  type CompiledBackend,
  type IntegrationRegistry,
  type LoadedIntegration,
} from './registry.ts';

/**
 * The part of the decision's deadline a backend call leaves unused: the decision still has to map
 * the answer, run the later rules and send the response, and a timer here fires 1–5 ms late at
 * p99 (bench/backend.ts measures it). Without it a call that hangs is answered after the
 * deadline, not at it. Applies only when the deadline, not a timeout_ms, bounds the call.
 */
export const DEADLINE_RESERVE_MS = 3;

/** activities/deps.ts CallBackendRequest, declared here (integrations/ does not import activities/). */
export interface CallBackendRequest {
  integration: string;
  backend_id: string;
  context: Record<string, unknown>;
  signal?: AbortSignal;
}

export interface CallBackendResult {
  status: 'ok' | 'error' | 'insufficient_context' | 'circuit_open';
  outcome?: Outcome;
  response?: unknown;
  error?: string;
  missing?: string[];
}

export interface BackendMetrics {
  latency: Histogram<'integration' | 'backend' | 'status'>;
  errors: Counter<'integration' | 'backend' | 'code'>;
}

export function backendMetrics(registry: Registry): BackendMetrics {
  const latency =
    (registry.getSingleMetric('vigil_backend_call_duration_seconds') as
      Histogram<'integration' | 'backend' | 'status'> | undefined) ??
    new Histogram({
      name: 'vigil_backend_call_duration_seconds',
      help: 'Backend call latency (request sent to answer mapped), by integration, backend and status',
      labelNames: ['integration', 'backend', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
  const errors =
    (registry.getSingleMetric('vigil_backend_errors_total') as
      Counter<'integration' | 'backend' | 'code'> | undefined) ??
    new Counter({
      name: 'vigil_backend_errors_total',
      help: 'Backend calls without a mapped answer, by integration, backend and error code',
      labelNames: ['integration', 'backend', 'code'] as const,
      registers: [registry],
    });
  return { latency, errors };
}

const OUTCOMES = new Set(['ALLOW', 'REVIEW', 'BLOCK']);

/** The text a scalar answer is looked up under in `map`. */
function mapKey(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'boolean') return String(v);
  return undefined;
}

function withoutMetadata(ctx: unknown): unknown {
  if (ctx === null || typeof ctx !== 'object' || Array.isArray(ctx)) return ctx;
  if (!Object.hasOwn(ctx, 'metadata')) return ctx;
  const { metadata: _m, ...rest } = ctx as Record<string, unknown>;
  return rest;
}

export interface BackendCallerOptions {
  registry: IntegrationRegistry;
  metrics: BackendMetrics;
  /** Wall clock of the deadline (same as the engine's deps.now()). */
  now: () => number;
  /** Budget of a workflow's callBackend (no decision deadline there), ms. */
  workflowTimeoutMs?: number;
}

type Attempt =
  | { status: 'ok'; outcome: Outcome; response: unknown; latency_ms: number }
  | { status: 'insufficient_context'; missing: string[] }
  | { status: 'error'; error: string; latency_ms: number; cause?: IntegrationError }
  | { status: 'circuit_open' };

export const WORKFLOW_BACKEND_TIMEOUT_MS = 10_000;

export class Backends implements BackendCaller {
  readonly #o: BackendCallerOptions;

  constructor(opts: BackendCallerOptions) {
    this.#o = opts;
  }

  async call(req: BackendCallRequest): Promise<BackendCallResult> {
    const r = await this.#attempt(
      req.integration,
      req.backend_id,
      req.context,
      (b) => {
        const left = req.deadlineMs - this.#o.now() - DEADLINE_RESERVE_MS;
        return Math.min(req.timeoutMs ?? Infinity, b.doc.timeout_ms, left);
      },
      req.signal,
    );
    if (r.status === 'error') return { status: 'error', error: r.error, latency_ms: r.latency_ms };
    return r;
  }

  /** For workflow `enrich` steps and async backend rules: the workflow's own budget applies. */
  async callBackend(req: CallBackendRequest): Promise<CallBackendResult> {
    const budget = this.#o.workflowTimeoutMs ?? WORKFLOW_BACKEND_TIMEOUT_MS;
    const r = await this.#attempt(
      req.integration,
      req.backend_id,
      withoutMetadata(req.context),
      () => budget,
      req.signal,
    );
    switch (r.status) {
      case 'ok':
        return { status: 'ok', outcome: r.outcome, response: r.response };
      case 'error':
        return { status: 'error', error: r.error };
      case 'insufficient_context':
        return { status: 'insufficient_context', missing: r.missing };
      case 'circuit_open':
        return { status: 'circuit_open', error: 'circuit_open' };
    }
  }

  async #attempt(
    slug: string,
    backendId: string,
    context: unknown,
    budgetOf: (b: CompiledBackend) => number,
    signal: AbortSignal | undefined,
  ): Promise<Attempt> {
    const loaded = await this.#o.registry.get(slug);
    if (!loaded) return this.#fail(slug, backendId, 'unknown_backend', 0);
    if (isBroken(loaded)) return this.#fail(slug, backendId, loaded.error.code, 0);
    const b = loaded.backends.get(backendId);
    if (!b) return this.#fail(slug, backendId, 'unknown_backend', 0);

    const missing: string[] = [];
    for (const r of b.required) {
      const v = r.get(context);
      if (v === undefined || v === null) missing.push(r.path);
    }
    if (missing.length > 0) return { status: 'insufficient_context', missing };

    if (!b.breaker.tryAcquire()) {
      this.#o.metrics.errors.inc({ integration: slug, backend: backendId, code: 'circuit_open' });
      return { status: 'circuit_open' };
    }
    const budget = budgetOf(b);
    if (!(budget >= 1)) {
      b.breaker.release();
      return this.#fail(slug, backendId, 'timeout', 0);
    }
    const start = performance.now();
    try {
      const res = await this.#send(loaded, b, context, budget, signal);
      const outcome = this.#map(b, res.body);
      const latency_ms = round(performance.now() - start);
      b.breaker.success();
      this.#o.metrics.latency.observe(
        { integration: slug, backend: backendId, status: 'ok' },
        latency_ms / 1000,
      );
      return { status: 'ok', outcome: outcome.outcome, response: outcome.response, latency_ms };
    } catch (err) {
      const latency_ms = round(performance.now() - start);
      const e = isIntegrationError(err)
        ? err
        : new IntegrationError('connection', 'the call failed');
      // A call the caller abandoned says nothing about the backend's health.
      if (e.code === 'aborted') b.breaker.release();
      else b.breaker.failure();
      this.#o.metrics.latency.observe(
        { integration: slug, backend: backendId, status: 'error' },
        latency_ms / 1000,
      );
      // Abandoned calls are the engine's choice, not the backend's failure: not counted.
      if (e.code === 'aborted') return { status: 'error', error: e.code, latency_ms };
      return this.#fail(slug, backendId, e.code, latency_ms);
    }
  }

  async #send(
    loaded: LoadedIntegration,
    b: CompiledBackend,
    context: unknown,
    budget: number,
    signal: AbortSignal | undefined,
  ): Promise<{ status: number; body: unknown }> {
    const hasBody = b.doc.method !== 'GET' && b.doc.method !== 'DELETE';
    const body = hasBody ? JSON.stringify(b.render ? b.render(context) : {}) : undefined;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res: HttpResponse = await loaded.http.request({
      method: b.doc.method,
      path: b.doc.path,
      headers,
      ...(body !== undefined ? { body } : {}),
      timeoutMs: budget,
      signal,
    });
    if (res.status < 200 || res.status >= 300) {
      throw new IntegrationError('http_status', `answered HTTP ${res.status}`, {
        status: res.status,
      });
    }
    return { status: res.status, body: parseJson(res) };
  }

  #map(b: CompiledBackend, body: unknown): { outcome: Outcome; response: unknown } {
    const key = mapKey(b.outcome(body));
    const outcome = key === undefined ? undefined : b.map.get(key);
    if (outcome === undefined || !OUTCOMES.has(outcome)) {
      throw new IntegrationError('unmappable', 'the answer at outcome_path is not in map');
    }
    return { outcome, response: body };
  }

  #fail(slug: string, backendId: string, code: string, latency_ms: number): Attempt {
    this.#o.metrics.errors.inc({ integration: slug, backend: backendId, code });
    return { status: 'error', error: code, latency_ms };
  }
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;
