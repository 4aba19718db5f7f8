// The seams of the inline proxy: the decision engine and the event sink come in as functions,
// so the proxy never imports the decide use-case and tests can pass a real function.
import type { DecisionOutcome } from '../../rulesets/ports.ts';

export type { DecisionOutcome };

export interface ProxyDecision {
  id: string;
  decision: DecisionOutcome;
  /** Context paths left out before deciding: invalid (decisions/extracted.ts) or unreadable. */
  dropped?: string[] | undefined;
}

export type DecisionSource = 'proxy' | 'authz';

export interface DecideInput {
  context: string;
  /** The decision context built by the extractors (`transaction`, `customer`, `device`, …). */
  body: Record<string, unknown>;
  source: DecisionSource;
  /**
   * Context paths the extractors left out because the proxy could not see their value as the
   * origin would (an unreadable body, a repeated form field); absent when none. The decision
   * reports them with the ones it drops itself.
   */
  dropped?: readonly string[] | undefined;
}

export type DecideFn = (input: DecideInput) => Promise<ProxyDecision>;

/** Why a monitored request went through without a decision. */
export type FailOpenReason = 'error' | 'timeout' | 'overload';

/** One monitored request, published on `vigil.requests` by whoever receives it. */
export interface RequestEvent {
  method: string;
  path: string;
  /** The route's `match.path`. */
  route: string;
  context: string;
  mode: 'active' | 'passive';
  status: number;
  decision_id: string | null;
  decision: DecisionOutcome | null;
  fail_open: FailOpenReason | null;
  ip: string;
  elapsed_ms: number;
  session: string | null;
  /** Context paths left out (invalid, or not readable by the proxy) before deciding. */
  dropped?: readonly string[] | undefined;
}

export type OnRequestEvent = (e: RequestEvent) => void;

/** pino's argument order, so fastify's logger (or pino itself) can be passed straight in. */
export interface ProxyLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const line = (level: string) => (obj: object, msg: string) => {
  process.stderr.write(`${JSON.stringify({ level, msg, ...obj })}\n`);
};

export const stderrLogger: ProxyLogger = {
  info: line('info'),
  warn: line('warn'),
  error: line('error'),
};

export const silentLogger: ProxyLogger = { info() {}, warn() {}, error() {} };
