// The handoff relay: moves risky decisions from the durable outbox into their session cases
// with signal-with-start. A decision is marked delivered only after Temporal accepted the
// signal, so nothing is dropped; a delivery repeated after a crash is harmless because the case
// dedupes decisions by id. While Temporal is unreachable the relay backs off (capped,
// exponential) and keeps the items in the outbox.
import type { Client } from '@temporalio/client';
import {
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  isGrpcServiceError,
} from '@temporalio/client';
import { z } from 'zod';
import {
  CASE_WORKFLOW,
  DEFAULT_TASK_QUEUE,
  caseWorkflowId,
  decisionSignal,
  resolveUpdate,
  type CaseInput,
  type DecisionSignal,
} from '../workflows/contracts.ts';

/** The outbox as the relay sees it; storage/'s outbox implements it through a thin adapter. */
export interface RelayOutbox {
  /** Leases up to `batch` due items for `leaseMs`; a concurrent claimer never gets the same. */
  claim(batch: number, leaseMs: number): Promise<RelayItem[]>;
  markDelivered(ids: string[]): Promise<void>;
  /** Leaves the item in the outbox, due again at `nextAttemptAt` (epoch ms). */
  markFailed(id: string, error: string, nextAttemptAt: number): Promise<void>;
  stats(): Promise<{ size: number; oldestAgeMs: number }>;
}

export interface RelayItem {
  id: string;
  /** The business key: the case workflow id. */
  key: string;
  payload: unknown;
  /** Claims so far, this one included (when the outbox counts them). */
  attempts?: number;
}

export interface RelayOptions {
  client: Client;
  outbox: RelayOutbox;
  taskQueue?: string;
  /** The case's start argument when a signal starts it. */
  caseInput?: CaseInput;
  batchSize?: number;
  leaseMs?: number;
  /** Sleep when the outbox is empty. */
  idleMs?: number;
  /** Sessions delivered at once within a batch (a session's own items go in order). */
  concurrency?: number;
  /** Deadline of one signal-with-start call. */
  deliverTimeoutMs?: number;
  backoff?: { initialMs?: number; maxMs?: number };
  now?: () => number;
  onError?: (err: unknown, item?: RelayItem) => void;
}

export interface RelayMetrics {
  state: 'idle' | 'running' | 'backing_off' | 'stopped';
  delivered_total: number;
  /** Item delivery attempts that failed (each item is retried; none is dropped). */
  failed_total: number;
  /** Items whose payload is not a handoff: kept, retried at the maximum backoff. */
  invalid_total: number;
  consecutive_failures: number;
  backoff_ms: number;
  last_error: string | null;
  last_delivery_at: number | null;
}

export interface RelayStats extends RelayMetrics {
  /** Undelivered items; null while the outbox itself does not answer. */
  outbox: { size: number; oldestAgeMs: number } | null;
}

export interface Relay {
  start(): void;
  /** Finishes the deliveries under way, then resolves; undelivered items stay in the outbox. */
  stop(): Promise<void>;
  /** One claim-and-deliver pass; the number of items delivered. */
  runOnce(): Promise<number>;
  metrics(): RelayMetrics;
  stats(): Promise<RelayStats>;
}

const PendingRule = z.looseObject({
  rule_id: z.string().min(1),
  integration: z.string().min(1),
  backend_id: z.string().min(1),
  on_error: z.enum(['allow', 'block', 'review']).optional().catch(undefined),
  timeout_ms: z.number().int().positive().optional().catch(undefined),
  shadow: z.literal(true).optional().catch(undefined),
});

/** decisions/ports.ts HandoffItem, parsed at this boundary (it crossed a database). */
export const HandoffPayload = z.looseObject({
  workflow_id: z.string().min(1),
  decision_id: z.string().min(1),
  decision: z.enum(['ALLOW', 'REVIEW', 'BLOCK', 'PROVISIONAL']),
  context: z.string(),
  ruleset_id: z.string().nullable().default(null),
  session: z.string().nullable().optional(),
  credential_fingerprint: z.string().nullable().optional(),
  occurred_at: z.string().min(1),
  context_data: z.record(z.string(), z.unknown()),
  pending: z.array(PendingRule).optional(),
  sync_decision: z.enum(['ALLOW', 'REVIEW']).optional(),
  final: z.boolean().optional(),
});

export function toDecisionSignal(p: z.infer<typeof HandoffPayload>): DecisionSignal {
  return {
    decision_id: p.decision_id,
    decision: p.decision,
    context: p.context,
    ruleset_id: p.ruleset_id,
    occurred_at: p.occurred_at,
    session: p.session ?? null,
    credential_fingerprint: p.credential_fingerprint ?? null,
    context_data: p.context_data,
    ...(p.final ? { final: true } : {}),
    ...(p.pending?.length
      ? {
          pending: p.pending.map((r) => ({
            rule_id: r.rule_id,
            integration: r.integration,
            backend_id: r.backend_id,
            ...(r.on_error ? { on_error: r.on_error } : {}),
            ...(r.timeout_ms ? { timeout_ms: r.timeout_ms } : {}),
            ...(r.shadow ? { shadow: true as const } : {}),
          })),
        }
      : {}),
    ...(p.sync_decision ? { sync_decision: p.sync_decision } : {}),
  };
}

// gRPC codes that mean "this request is wrong", not "Temporal is not there": the item is
// retried on its own schedule while the relay goes on with the others.
const ITEM_LEVEL_CODES = new Set([3 /* INVALID_ARGUMENT */, 8 /* RESOURCE_EXHAUSTED */]);

function isItemLevel(err: unknown): boolean {
  const grpc = isGrpcServiceError(err)
    ? err
    : err instanceof Error && isGrpcServiceError(err.cause)
      ? err.cause
      : undefined;
  return grpc !== undefined && ITEM_LEVEL_CODES.has(grpc.code);
}

function message(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 500);
}

/**
 * Signal-with-start of one decision into its session case: what the relay does per outbox item,
 * exported for callers that hold a decision already (tests, tools). A session whose case already
 * ended gets a new case under the same id (ALLOW_DUPLICATE): the ended run stays in the history,
 * the new run starts with this decision.
 */
export async function handOffDecision(
  client: Client,
  signal: DecisionSignal,
  opts: { workflowId?: string; taskQueue?: string; caseInput?: CaseInput } = {},
): Promise<string> {
  const workflowId = opts.workflowId ?? caseWorkflowId(signal.session, signal.decision_id);
  const handle = await client.workflow.signalWithStart(CASE_WORKFLOW, {
    workflowId,
    taskQueue: opts.taskQueue ?? DEFAULT_TASK_QUEUE,
    args: [opts.caseInput ?? {}],
    signal: decisionSignal,
    signalArgs: [signal],
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
  });
  return handle.signaledRunId;
}

class InvalidPayload extends Error {}
/** Claims of a resolution whose case is not found before it is dropped (~20 min at the cap). */
const RESOLVE_NOT_FOUND_TRIES = 50;
/** This item could not go now (its case's worker did not take it in time); the rest goes on. */
class RetryItem extends Error {}

/**
 * An analyst's resolution the API could not hand to the case (Temporal was unreachable): kept
 * in the outbox beside the session's decisions, delivered as the case's `resolve` update.
 */
export const ResolvePayload = z.object({
  workflow_id: z.string().min(1),
  resolve: z.object({
    decision_id: z.string().min(1),
    resolution: z.enum(['accept', 'reject']),
    note: z.string().optional(),
  }),
});
export type ResolvePayload = z.infer<typeof ResolvePayload>;

/** Temporal did not take a signal: the relay backs off as a whole. */
export class TemporalUnreachable extends Error {}

export function createRelay(opts: RelayOptions): Relay {
  const taskQueue = opts.taskQueue ?? DEFAULT_TASK_QUEUE;
  const batchSize = opts.batchSize ?? 100;
  const leaseMs = opts.leaseMs ?? 30_000;
  const idleMs = opts.idleMs ?? 250;
  const concurrency = Math.max(1, opts.concurrency ?? 16);
  const deliverTimeoutMs = opts.deliverTimeoutMs ?? 10_000;
  const initialBackoff = opts.backoff?.initialMs ?? 250;
  const maxBackoff = opts.backoff?.maxMs ?? 30_000;
  const now = opts.now ?? Date.now;
  const m: RelayMetrics = {
    state: 'idle',
    delivered_total: 0,
    failed_total: 0,
    invalid_total: 0,
    consecutive_failures: 0,
    backoff_ms: 0,
    last_error: null,
    last_delivery_at: null,
  };
  let loop: Promise<void> | undefined;
  let stopping = false;
  let wake: (() => void) | undefined;

  function backoffFor(failures: number): number {
    return Math.min(maxBackoff, initialBackoff * 2 ** Math.max(0, Math.min(failures - 1, 30)));
  }

  async function deliverResolve(item: RelayItem, p: ResolvePayload): Promise<void> {
    const workflowId = item.key || p.workflow_id;
    try {
      await opts.client.connection.withDeadline(now() + deliverTimeoutMs, () =>
        opts.client.workflow.getHandle(workflowId).executeUpdate(resolveUpdate, {
          args: [p.resolve],
        }),
      );
    } catch (err) {
      // The case said no (resolved meanwhile, closed, not its decision): the decision record
      // holds the resolution, and there is nothing left to deliver.
      if (err instanceof WorkflowUpdateFailedError) return;
      // No such case yet: its decision's handoff may still be in the outbox (items are claimed
      // by due time, not per key). Tried again later; given up after RESOLVE_NOT_FOUND_TRIES
      // (a case long gone from Temporal's retention never comes back).
      if (err instanceof WorkflowNotFoundError) {
        if ((item.attempts ?? 1) >= RESOLVE_NOT_FOUND_TRIES) return;
        throw new RetryItem(message(err));
      }
      // Temporal answered but the case did not take the update in time (its worker is down):
      // this item waits, the decisions behind other keys do not.
      if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError)
        throw new RetryItem(message(err));
      throw err;
    }
  }

  async function deliver(item: RelayItem): Promise<void> {
    const resolve = ResolvePayload.safeParse(item.payload);
    if (resolve.success) return deliverResolve(item, resolve.data);
    const parsed = HandoffPayload.safeParse(item.payload);
    if (!parsed.success) throw new InvalidPayload(`not a handoff: ${parsed.error.message}`);
    const signal = toDecisionSignal(parsed.data);
    const workflowId = item.key || parsed.data.workflow_id;
    await opts.client.connection.withDeadline(now() + deliverTimeoutMs, () =>
      handOffDecision(opts.client, signal, {
        workflowId,
        taskQueue,
        ...(opts.caseInput ? { caseInput: opts.caseInput } : {}),
      }),
    );
  }

  async function runOnce(): Promise<number> {
    const items = await opts.outbox.claim(batchSize, leaseMs);
    if (items.length === 0) return 0;
    // One session's items in claim order; sessions side by side.
    const groups = new Map<string, RelayItem[]>();
    for (const item of items) {
      const g = groups.get(item.key);
      if (g) g.push(item);
      else groups.set(item.key, [item]);
    }
    const delivered: string[] = [];
    const retryLater: { item: RelayItem; error: string; at: number | null }[] = [];
    let unreachable: unknown;
    const queue = [...groups.values()];

    async function lane(): Promise<void> {
      for (let group = queue.shift(); group; group = queue.shift()) {
        for (const item of group) {
          if (unreachable !== undefined || stopping) {
            retryLater.push({ item, error: 'not attempted', at: null });
            continue;
          }
          try {
            await deliver(item);
            delivered.push(item.id);
          } catch (err) {
            m.failed_total += 1;
            opts.onError?.(err, item);
            if (err instanceof InvalidPayload) {
              m.invalid_total += 1;
              retryLater.push({ item, error: message(err), at: now() + maxBackoff });
            } else if (isItemLevel(err) || err instanceof RetryItem) {
              retryLater.push({
                item,
                error: message(err),
                at: now() + backoffFor(item.attempts ?? 1),
              });
            } else {
              unreachable ??= err;
              retryLater.push({ item, error: message(err), at: null });
            }
          }
        }
      }
    }

    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, lane));
    if (delivered.length > 0) {
      await opts.outbox.markDelivered(delivered);
      m.delivered_total += delivered.length;
      m.last_delivery_at = now();
    }
    // Items held back by an outage come due when the relay's next backoff ends.
    const outageRetryAt = now() + backoffFor(m.consecutive_failures + 1);
    for (const r of retryLater) {
      await opts.outbox.markFailed(r.item.id, r.error, r.at ?? outageRetryAt);
    }
    if (unreachable !== undefined) {
      throw new TemporalUnreachable(message(unreachable), { cause: unreachable });
    }
    return delivered.length;
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  }

  async function run(): Promise<void> {
    while (!stopping) {
      try {
        m.state = 'running';
        const n = await runOnce();
        m.consecutive_failures = 0;
        m.backoff_ms = 0;
        if (n === 0 && !stopping) {
          m.state = 'idle';
          await sleep(idleMs);
        }
      } catch (err) {
        // Temporal or the outbox did not answer: wait, then try the same items again.
        m.consecutive_failures += 1;
        m.backoff_ms = backoffFor(m.consecutive_failures);
        m.last_error = message(err);
        opts.onError?.(err);
        if (!stopping) {
          m.state = 'backing_off';
          await sleep(m.backoff_ms);
        }
      }
    }
    m.state = 'stopped';
  }

  return {
    start() {
      if (loop) return;
      stopping = false;
      loop = run();
    },
    async stop() {
      stopping = true;
      wake?.();
      await loop;
      loop = undefined;
      m.state = 'stopped';
    },
    runOnce,
    metrics: () => ({ ...m }),
    async stats() {
      const outbox = await opts.outbox.stats().catch(() => null);
      return { ...m, outbox };
    },
  };
}
