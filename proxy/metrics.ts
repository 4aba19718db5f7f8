// Prometheus metrics of the API and decision path. One registry per process, passed to every
// room that records something, served at /metrics.
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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
