// The decide use-case: one deadline for the whole decision; counters in one round trip, the
// blacklist from memory, backends under what is left of the deadline; then the answer. What
// can happen after the answer does: the decision log is batched, events go to a bounded
// buffer. Only the handoff of a risky decision is awaited (the durable outbox), so an
// acknowledged REVIEW/BLOCK is never lost.
import { evaluate, type EvalResult } from '../rulesets/evaluate.ts';
import type {
  BackendCaller,
  BlacklistLookup,
  CountOptions,
  CounterStore,
  Counts,
  DecisionOutcome,
  DegradedReason,
  RuleTrace,
} from '../rulesets/ports.ts';
import { deadline } from './deadline.ts';
import { decisionEvent, decisionKey } from '../storage/events/schemas.ts';
import type { ActiveRulesets } from './active-rulesets.ts';
import { fingerprintCredential, type PciLevel } from './credential.ts';
import { idFromKey, newId } from './ids.ts';
import type {
  DecisionLogPort,
  DecisionRecord,
  DecisionResponse,
  EventPort,
  OutboxPort,
} from './ports.ts';
import type { DecisionRequest } from './request.ts';

export interface DecideDeps {
  rulesets: ActiveRulesets;
  counters: CounterStore;
  blacklist: BlacklistLookup;
  backends?: BackendCaller;
  log: DecisionLogPort;
  outbox: OutboxPort;
  events: EventPort;
  secretKey: Buffer;
  pciLevel: PciLevel;
  deadlineMs: number;
  now: () => number;
  /** High-resolution clock for elapsed_ms (performance.now()). */
  clock: () => number;
  /** PII paths hashed in published decision events. */
  eventRedact?: readonly string[];
  observe?: (o: {
    context: string;
    outcome: DecisionOutcome;
    engineMs: number;
    totalMs: number;
    counterFailed: boolean;
  }) => void;
}

export interface DecideOptions {
  dryRun?: boolean;
  /** The caller's Idempotency-Key: the same key is the same decision, counted once. */
  idempotencyKey?: string;
  /** Where the request came from, for events (`api`, `proxy`, `authz`). */
  source?: string;
  /** Reasons the caller adds to the decision's `degraded` (values it had to leave out). */
  degraded?: readonly DegradedReason[];
}

const NO_COUNTS: Counts = { get: () => undefined };
const RISKY: ReadonlySet<DecisionOutcome> = new Set(['REVIEW', 'BLOCK', 'PROVISIONAL']);

/** A counter store that does not answer within its share of the deadline is unavailable. */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  if (ms <= 0) return Promise.reject(new Error('deadline'));
  return new Promise<T>((resolve, reject) => {
    const timer = deadline(ms, () => reject(new Error('counter store timed out')));
    p.then(
      (v) => {
        timer.cancel();
        resolve(v);
      },
      (err: unknown) => {
        timer.cancel();
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** A store that answers without waiting (the in-process one) needs no timer and no promise. */
interface SyncCounterStore {
  countSync(
    decisionId: string,
    nowMs: number,
    requests: Parameters<CounterStore['count']>[2],
    opts: CountOptions,
  ): Counts;
}

function syncCounters(c: CounterStore): SyncCounterStore | undefined {
  return typeof (c as Partial<SyncCounterStore>).countSync === 'function'
    ? (c as unknown as SyncCounterStore)
    : undefined;
}

/**
 * What a PROVISIONAL decision's synchronous live rules decided: a terminal ALLOW ends it (a
 * BLOCK would have made the decision BLOCK), else REVIEW if one matched, else ALLOW.
 */
function syncDecision(rules: readonly RuleTrace[]): 'ALLOW' | 'REVIEW' {
  let review = false;
  for (const t of rules) {
    if (t.shadow || t.action === undefined) continue;
    if (t.result !== 'matched' && t.result !== 'error') continue;
    if (t.action === 'REVIEW') review = true;
    else if (t.action === 'ALLOW') return 'ALLOW';
  }
  return review ? 'REVIEW' : 'ALLOW';
}

export class IdempotencyKeyReused extends Error {
  readonly code = 'idempotency_key_reused';
  constructor() {
    super('this Idempotency-Key was used for a different request; use a new key for a new request');
  }
}

export function caseWorkflowId(session: string | undefined | null, decisionId: string): string {
  return session ? `session-${session}` : `decision-${decisionId}`;
}

// Decisions of one Idempotency-Key under way in this process, per set of deps: a second
// request with the key waits for the first, then finds its record (the same request: its
// answer; another: 409), instead of deciding beside it and storing a second answer.
const keyedInFlight = new WeakMap<DecideDeps, Map<string, Promise<unknown>>>();

export async function decide(
  deps: DecideDeps,
  request: DecisionRequest,
  opts: DecideOptions = {},
): Promise<DecisionResponse> {
  if (opts.idempotencyKey === undefined || opts.dryRun === true) {
    return decideOnce(deps, request, opts);
  }
  let inFlight = keyedInFlight.get(deps);
  if (!inFlight) keyedInFlight.set(deps, (inFlight = new Map<string, Promise<unknown>>()));
  const key = opts.idempotencyKey;
  for (let earlier = inFlight.get(key); earlier; earlier = inFlight.get(key)) {
    await earlier.catch(() => {});
  }
  const p = decideOnce(deps, request, opts);
  inFlight.set(key, p);
  try {
    return await p;
  } finally {
    if (inFlight.get(key) === p) inFlight.delete(key);
  }
}

async function decideOnce(
  deps: DecideDeps,
  request: DecisionRequest,
  opts: DecideOptions,
): Promise<DecisionResponse> {
  const t0 = deps.clock();
  const nowMs = deps.now();
  const deadline = nowMs + deps.deadlineMs;
  const dryRun = opts.dryRun === true;

  const credential = request.credential;
  const contextName = request.context;
  const fingerprint = credential
    ? fingerprintCredential(credential, deps.secretKey, deps.pciLevel)
    : (request.credential_fingerprint ?? null);

  const id = opts.idempotencyKey
    ? idFromKey('dec', opts.idempotencyKey, 'decision')
    : newId('dec', nowMs);
  // The decision context: the request minus the raw credential, plus its fingerprint. Copied
  // key by key: an object rest pattern here was a slow runtime path on every decision.
  const ctx: Record<string, unknown> = {};
  for (const k in request) {
    if (k === 'credential' || k === 'context' || !Object.hasOwn(request, k)) continue;
    const v = (request as Record<string, unknown>)[k];
    // An own `__proto__` key stays a plain key, as a spread would keep it.
    if (k === '__proto__')
      Object.defineProperty(ctx, k, {
        value: v,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    else ctx[k] = v;
  }
  ctx.context = contextName;
  if (fingerprint) ctx.credential_fingerprint = fingerprint;
  const session = request.device?.session ?? null;

  if (opts.idempotencyKey && !dryRun) {
    const earlier = await deps.log.get(id);
    if (earlier) {
      // The same key on another request is a client bug, not a retry: answering the first
      // decision would hand it to a request it was not made on.
      if (JSON.stringify(earlier.context) !== JSON.stringify(ctx)) throw new IdempotencyKeyReused();
      return earlier.response;
    }
  }

  const active = deps.rulesets.resolve(contextName);
  let result: EvalResult | undefined;
  let counterFailed = false;
  let engineMs = 0;
  // Counted on every field some ACTIVE ruleset counts, not only this context's, and whether or
  // not this context has a ruleset (CONTRACT §2: a velocity counts the decisions that carried
  // the value). No countable value: nothing to count, and nothing is unavailable.
  const requests = deps.rulesets.counterRequests(ctx);
  let counts: Counts | 'unavailable' = NO_COUNTS;
  if (requests.length > 0) {
    // A timer per decision for a store that cannot be late was ~1% of a decision's CPU.
    const sync = syncCounters(deps.counters);
    // Only an Idempotency-Key's id can be counted again (a retry); a fresh one cannot.
    const countOpts = { record: !dryRun, repeatable: opts.idempotencyKey !== undefined };
    try {
      counts = sync
        ? sync.countSync(id, nowMs, requests, countOpts)
        : await withTimeout(
            deps.counters.count(id, nowMs, requests, countOpts),
            deadline - deps.now(),
          );
    } catch {
      counts = 'unavailable';
      counterFailed = true;
    }
  }
  if (active) {
    const te = deps.clock();
    const evaluated = evaluate(active.compiled, ctx, {
      counts,
      blacklist: deps.blacklist,
      backends: deps.backends,
      now: deps.now,
      deadlineMs: deadline,
      // Split groups without a sticky key (no card, no customer) spread at random.
      random: Math.random,
    });
    // Without backend rules the engine answers at once: no await, no extra microtask turn.
    result = evaluated instanceof Promise ? await evaluated : evaluated;
    engineMs = deps.clock() - te;
  }

  const decision: DecisionOutcome = result?.decision ?? 'ALLOW';
  // A risky decision opens (or joins) its session's case; so does one with async rules left
  // pending beside it (shadow ones, or beside a synchronous BLOCK): they run in that case.
  const handOff = RISKY.has(decision) || (result !== undefined && result.pending.length > 0);
  const workflowId = handOff && !dryRun ? caseWorkflowId(session, id) : null;
  const response: DecisionResponse = {
    id,
    decision,
    context: contextName,
    ruleset_id: active?.id ?? null,
    credential_fingerprint: fingerprint,
    rules: result?.rules ?? [],
    backend_results: result?.backend_results ?? [],
    has_errors: result?.has_errors ?? false,
    degraded: opts.degraded
      ? [...(result?.degraded ?? []), ...opts.degraded]
      : (result?.degraded ?? []),
    evaluation_type: result?.evaluation_type ?? 'RULE_ENGINE',
    workflow_id: workflowId,
    elapsed_ms: 0,
  };
  if (dryRun) response.dry_run = true;
  const occurredAt = new Date(nowMs).toISOString();

  if (!dryRun) {
    const record: DecisionRecord = { response, context: ctx, session, created_at: occurredAt };
    if (workflowId) {
      // Both durable before the answer: the handoff (the case) and the record the case points
      // at. elapsed_ms is the time to the decision, before these writes.
      response.elapsed_ms = round(deps.clock() - t0);
      const { metadata: _metadata, ...contextData } = ctx;
      const item = {
        workflow_id: workflowId,
        decision_id: id,
        decision,
        context: contextName,
        ruleset_id: response.ruleset_id,
        session,
        credential_fingerprint: fingerprint,
        occurred_at: occurredAt,
        context_data: contextData,
        ...(result?.pending?.length ? { pending: result.pending } : {}),
        // What the synchronous rules decided, for the async rules' workflow to settle against.
        ...(decision === 'PROVISIONAL' ? { sync_decision: syncDecision(response.rules) } : {}),
      };
      if (!RISKY.has(decision)) {
        // Only async rules left beside an ALLOW (shadow ones): the answer does not depend on
        // them, so neither waits for nor fails with their handoff; a store outage must not turn
        // this ALLOW into a 503. Best effort: lost only if the store refuses it.
        deps.log.append(record);
        deps.outbox.enqueue(item).catch(() => {});
      } else if (deps.outbox.enqueueWithRecord) {
        // One transaction; a failure fails the answer (nothing acknowledged, nothing recorded).
        await deps.outbox.enqueueWithRecord(item, record);
      } else {
        // A failed handoff fails the answer (nothing acknowledged, nothing recorded).
        await deps.outbox.enqueue(item);
        if (deps.log.appendDurable) {
          // Failing now (after the handoff), the record stays with the batched writer and its
          // retries: the answer stands, since its case is already safe.
          await deps.log.appendDurable(record).catch(() => {});
        } else deps.log.append(record);
      }
    } else {
      response.elapsed_ms = round(deps.clock() - t0);
      deps.log.append(record);
    }
    // The documented vigil.decision/1 shape (docs/events.md): bounded, credential-free.
    // Built after the answer is written (the sink calls it on the next turn of the event loop):
    // sanitizing, redacting and serializing the event never delay the decision.
    const source = opts.source ?? 'api';
    deps.events.publish('vigil.decisions', decisionKey(record), () =>
      decisionEvent(record, { source, redact: deps.eventRedact }),
    );
  } else {
    response.elapsed_ms = round(deps.clock() - t0);
  }
  deps.observe?.({
    context: contextName,
    outcome: decision,
    engineMs,
    totalMs: response.elapsed_ms,
    counterFailed,
  });
  return response;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
