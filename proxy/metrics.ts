// Prometheus metrics of the API and decision path. One registry per process, passed to every
// room that records something, served at /metrics.
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { MAX_CONTEXT_LABELS, boundedLabel } from './inline/metrics.ts';

export interface ApiMetrics {
  registry: Registry;
  decisions: Counter<'context' | 'outcome'>;
  engineSeconds: Histogram<'context'>;
  decisionSeconds: Histogram<'context'>;
  counterErrors: Counter;
  failOpen: Counter<'reason'>;
  httpErrors: Counter<'code'>;
}

export function createMetrics(registry = new Registry()): ApiMetrics {
  collectDefaultMetrics({ register: registry, prefix: 'vigil_process_' });
  return {
    registry,
    decisions: new Counter({
      name: 'vigil_decisions_total',
      help: 'Decisions answered, by context and outcome',
      labelNames: ['context', 'outcome'],
      registers: [registry],
    }),
    engineSeconds: new Histogram({
      name: 'vigil_engine_seconds',
      help: 'Pure rule evaluation time per decision',
      labelNames: ['context'],
      buckets: [5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3],
      registers: [registry],
    }),
    decisionSeconds: new Histogram({
      name: 'vigil_decision_seconds',
      help: 'Whole decision time (counters, backends, engine) per decision',
      labelNames: ['context'],
      buckets: [1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.3, 1],
      registers: [registry],
    }),
    counterErrors: new Counter({
      name: 'vigil_counter_errors_total',
      help: 'Decisions whose velocity counts were unavailable (rules skipped, fail open)',
      registers: [registry],
    }),
    failOpen: new Counter({
      name: 'vigil_fail_open_total',
      help: 'Decisions or requests let through because a dependency failed',
      labelNames: ['reason'],
      registers: [registry],
    }),
    httpErrors: new Counter({
      name: 'vigil_api_errors_total',
      help: 'API error answers by code',
      labelNames: ['code'],
      registers: [registry],
    }),
  };
}

/**
 * The decide path's `observe`: metrics per decision through labelled children kept per context
 * (and outcome), because prom-client hashes the label object on every labelled call, which was
 * a visible share of a decision's CPU.
 */
export function decisionObserver(
  metrics: ApiMetrics,
  /** Contexts that keep their own series whatever callers send (those with a ruleset). */
  knownContext?: (context: string) => boolean,
): (o: {
  context: string;
  outcome: string;
  engineMs: number;
  totalMs: number;
  counterFailed: boolean;
}) => void {
  type Children = {
    context: string;
    engine: ReturnType<ApiMetrics['engineSeconds']['labels']>;
    total: ReturnType<ApiMetrics['decisionSeconds']['labels']>;
    byOutcome: Map<string, ReturnType<ApiMetrics['decisions']['labels']>>;
  };
  const byContext = new Map<string, Children>();
  // A decision's context is whatever its caller sends: bounded as a label (boundedLabel).
  const bound = boundedLabel(MAX_CONTEXT_LABELS, knownContext);
  let counterUnavailable: ReturnType<ApiMetrics['failOpen']['labels']> | undefined;
  return (o) => {
    let c = byContext.get(o.context);
    if (!c) {
      const context = bound(o.context);
      if (byContext.size >= 2 * MAX_CONTEXT_LABELS) byContext.clear();
      c = byContext.get(context) ?? {
        context,
        engine: metrics.engineSeconds.labels({ context }),
        total: metrics.decisionSeconds.labels({ context }),
        byOutcome: new Map(),
      };
      byContext.set(o.context, c);
    }
    let d = c.byOutcome.get(o.outcome);
    if (!d) {
      d = metrics.decisions.labels({ context: c.context, outcome: o.outcome });
      c.byOutcome.set(o.outcome, d);
    }
    d.inc();
    c.engine.observe(o.engineMs / 1000);
    c.total.observe(o.totalMs / 1000);
    if (o.counterFailed) {
      metrics.counterErrors.inc();
      // Made on first use, so /metrics shows no fail-open line before one happened.
      (counterUnavailable ??= metrics.failOpen.labels({ reason: 'counter_unavailable' })).inc();
    }
  };
}
