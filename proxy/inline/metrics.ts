// Prometheus metrics of the inline proxy and the authz endpoint, registered on the registry
// the composition root passes (the one /metrics serves). Idempotent per registry: a second
// proxy in the same process (tests, a restart in place) reuses the metrics instead of throwing
// on a duplicate name.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface ProxyMetrics {
  requests: Counter<'route' | 'code'>;
  upstreamErrors: Counter<'origin' | 'kind'>;
  decisions: Counter<'context' | 'decision' | 'mode' | 'source'>;
  failOpen: Counter<'context' | 'reason' | 'source'>;
  overload: Counter<'policy'>;
  decisionSeconds: Histogram<'context' | 'source'>;
  inflight: Gauge;
  rejected: Counter<'reason'>;
  reloads: Counter<'result'>;
  configVersion: Gauge;
  /** One request answered on a route, by status class; children cached off the hot path. */
  countRequest(route: string, status: number): void;
}

function get<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

const cache = new WeakMap<Registry, ProxyMetrics>();

export function proxyMetrics(registry: Registry): ProxyMetrics {
  const known = cache.get(registry);
  if (known) return known;
  const registers = [registry];
  const requests = get(
    registry,
    'vigil_proxy_requests_total',
    () =>
      new Counter({
        name: 'vigil_proxy_requests_total',
        help: 'Requests answered by the inline proxy, by route and status class',
        labelNames: ['route', 'code'] as const,
        registers,
      }),
  );
  const children = new Map<string, { inc(): void }[]>();
  const classes = ['1xx', '2xx', '3xx', '4xx', '5xx'];
  const m: ProxyMetrics = {
    requests,
    upstreamErrors: get(
      registry,
      'vigil_proxy_upstream_errors_total',
      () =>
        new Counter({
          name: 'vigil_proxy_upstream_errors_total',
          help: 'Origin failures: connect (502), timeout (504), reset after the answer began',
          labelNames: ['origin', 'kind'] as const,
          registers,
        }),
    ),
    decisions: get(
      registry,
      'vigil_proxy_decisions_total',
      () =>
        new Counter({
          name: 'vigil_proxy_decisions_total',
          help: 'Decisions taken for monitored requests and authz checks',
          labelNames: ['context', 'decision', 'mode', 'source'] as const,
          registers,
        }),
    ),
    failOpen: get(
      registry,
      'vigil_proxy_fail_open_total',
      () =>
        new Counter({
          name: 'vigil_proxy_fail_open_total',
          help: 'Monitored requests let through undecided: engine error, deadline, overload',
          labelNames: ['context', 'reason', 'source'] as const,
          registers,
        }),
    ),
    overload: get(
      registry,
      'vigil_proxy_overload_total',
      () =>
        new Counter({
          name: 'vigil_proxy_overload_total',
          help: 'Monitored requests over max_inflight_decisions, by the policy applied',
          labelNames: ['policy'] as const,
          registers,
        }),
    ),
    decisionSeconds: get(
      registry,
      'vigil_proxy_decision_seconds',
      () =>
        new Histogram({
          name: 'vigil_proxy_decision_seconds',
          help: 'Time from the full request to the decision (extraction and engine)',
          labelNames: ['context', 'source'] as const,
          buckets: [1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.3, 1],
          registers,
        }),
    ),
    inflight: get(
      registry,
      'vigil_proxy_inflight_decisions',
      () =>
        new Gauge({
          name: 'vigil_proxy_inflight_decisions',
          help: 'Monitored requests being buffered or decided',
          registers,
        }),
    ),
    rejected: get(
      registry,
      'vigil_proxy_rejected_total',
      () =>
        new Counter({
          name: 'vigil_proxy_rejected_total',
          help: 'Requests the proxy refused itself (malformed, too large, no route, timeouts)',
          labelNames: ['reason'] as const,
          registers,
        }),
    ),
    reloads: get(
      registry,
      'vigil_proxy_config_reloads_total',
      () =>
        new Counter({
          name: 'vigil_proxy_config_reloads_total',
          help: 'Route file reloads by result (ok, unchanged, error)',
          labelNames: ['result'] as const,
          registers,
        }),
    ),
    configVersion: get(
      registry,
      'vigil_proxy_config_version',
      () =>
        new Gauge({
          name: 'vigil_proxy_config_version',
          help: 'Version of the route config in use (1 at start, +1 per successful reload)',
          registers,
        }),
    ),
    countRequest(route, status) {
      let row = children.get(route);
      if (!row) {
        row = [];
        children.set(route, row);
      }
      const k = status >= 100 && status < 600 ? Math.floor(status / 100) - 1 : 5;
      let child = row[k];
      if (!child) {
        child = requests.labels(route, classes[k] ?? 'other');
        row[k] = child;
      }
      child.inc();
    },
  };
  cache.set(registry, m);
  return m;
}

/**
 * Decision metrics through labelled children kept per label set, for one source (`proxy`,
 * `authz`): prom-client hashes a label object on every labelled call otherwise (some 4 µs per
 * monitored request). Contexts and modes come from routes or a checked name, decisions from a
 * closed set; each map is cleared past 1,000 entries all the same.
 */
/**
 * Label values taken from requests (a decision's `context`, an authz path) are any string a
 * caller sends: each new one is a series kept for the process's life, and a caller cycling
 * through names grew /metrics to tens of MB and the heap by hundreds, stalling the process on
 * every scrape. The first `max` values seen keep their own series; later ones share `_other`.
 */
export function boundedLabel(
  max: number,
  /** Values that always keep their own series (contexts with a ruleset): never crowded out. */
  known: (value: string) => boolean = () => false,
): (value: string) => string {
  const seen = new Set<string>();
  return (value) => {
    if (seen.has(value)) return value;
    if (seen.size >= max && !known(value)) return OTHER_LABEL;
    seen.add(value);
    return value;
  };
}
export const OTHER_LABEL = '_other';
/** Contexts with a series of their own per process (rulesets' contexts are far fewer). */
export const MAX_CONTEXT_LABELS = 200;

export function decisionMetrics(
  metrics: ProxyMetrics,
  source: string,
): {
  /** The context as a label value (bounded, see boundedLabel). */
  label(context: string): string;
  timer(context: string): { observe(seconds: number): void };
  counter(context: string, decision: string, mode: string): { inc(): void };
} {
  const timers = new Map<string, { observe(seconds: number): void }>();
  const counters = new Map<string, { inc(): void }>();
  const bound = boundedLabel(MAX_CONTEXT_LABELS);
  return {
    label: bound,
    timer(raw) {
      const context = bound(raw);
      let t = timers.get(context);
      if (!t) {
        if (timers.size >= 1_000) timers.clear();
        t = metrics.decisionSeconds.labels(context, source);
        timers.set(context, t);
      }
      return t;
    },
    counter(raw, decision, mode) {
      const context = bound(raw);
      const key = `${context}\u0000${decision}\u0000${mode}`;
      let c = counters.get(key);
      if (!c) {
        if (counters.size >= 1_000) counters.clear();
        c = metrics.decisions.labels({ context, decision, mode, source });
        counters.set(key, c);
      }
      return c;
    },
  };
}
