// The case workflow's side effects, as Temporal activities over injected dependencies. Each one
// is safe to run again: ticket/alert/action calls carry the idempotency key the workflow built
// from the workflow id and step, blacklist adds and decision-record writes are idempotent by
// their own keys. Failures leave as ApplicationFailure with a stable `type`, so the workflow's
// step records (and the API behind them) match on codes, not on messages.
import {
  ApplicationFailure,
  activityInfo,
  cancellationSignal,
  heartbeat,
  log,
} from '@temporalio/activity';
import { parsePlaybook, type LoadedPlaybook, type Outcome } from '../rulesets/playbook.ts';
import type { ActionEvent, ActivityDeps, FinalOutcomeDetail, InvokeActionResult } from './deps.ts';

export interface ActionStepInput {
  step: string;
  integration: string;
  action_id: string;
  context: Record<string, unknown>;
  idempotency_key: string;
}

export interface ActionStepResult {
  attempt: number;
  status: number;
  ref: string | null;
  body?: unknown;
}

export interface EnrichInput {
  step: string;
  integration: string;
  backend_id: string;
  context: Record<string, unknown>;
}

export interface EnrichResult {
  attempt: number;
  status: 'ok';
  outcome: Outcome | null;
  response: unknown;
}

export interface BlacklistAddInput {
  step: string;
  field_path: string;
  ttl_seconds?: number;
  entries: { value: string; source_decision_id: string | null }[];
}

export interface BlacklistAddResult {
  attempt: number;
  added: number;
}

export interface LoadPlaybooksResult {
  attempt: number;
  playbooks: LoadedPlaybook[];
  /** Stored documents that no longer parse: left out of the case, named here and in the log. */
  skipped: { name: string; version: number; issues: number }[];
}

export interface CallBackendInput {
  rule_id: string;
  integration: string;
  backend_id: string;
  context: Record<string, unknown>;
}

export interface CallBackendActivityResult {
  attempt: number;
  outcome: Outcome;
  response: unknown;
}

export interface ResolveDecisionsInput {
  decision_ids: string[];
  resolution: 'accept' | 'reject';
  note: string | null;
}

/** `details[0]` of every failure these activities raise: how many attempts it took. */
export interface FailureDetail {
  attempt: number;
}

/** Stable `ApplicationFailure.type` codes of this room. */
export const ACTIVITY_ERRORS = {
  actionFailed: 'action_failed',
  actionRejected: 'action_rejected',
  httpStatus: 'http_status',
  rateLimited: 'rate_limited',
  backendError: 'backend_error',
  insufficientContext: 'insufficient_context',
  circuitOpen: 'circuit_open',
  storeFailed: 'store_failed',
} as const;

const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);
/** Ceiling on the heartbeat period: a call shorter than this never heartbeats at all. */
const MAX_HEARTBEAT_EVERY_MS = 5_000;

function errorFields(err: unknown): {
  message: string;
  retryable: boolean | undefined;
  retryAfterMs: number | undefined;
  code: string | undefined;
  status: number | undefined;
} {
  const e = (typeof err === 'object' && err !== null ? err : {}) as Record<string, unknown>;
  return {
    message: err instanceof Error ? err.message : String(err),
    retryable: typeof e.retryable === 'boolean' ? e.retryable : undefined,
    retryAfterMs:
      typeof e.retryAfterMs === 'number' && Number.isFinite(e.retryAfterMs) && e.retryAfterMs >= 0
        ? e.retryAfterMs
        : undefined,
    code: typeof e.code === 'string' && e.code !== '' ? e.code : undefined,
    status: typeof e.status === 'number' ? e.status : undefined,
  };
}

/**
 * An adapter's error as an ApplicationFailure. Errors that say nothing about retrying are
 * retried: a transient fault wrongly retried costs one idempotent call, a lasting one wrongly
 * given up loses the step.
 */
export function toFailure(err: unknown, fallbackType: string): ApplicationFailure {
  if (err instanceof ApplicationFailure) return err;
  const f = errorFields(err);
  const attempt = currentAttempt();
  const details: FailureDetail[] = [{ attempt }];
  if (f.retryable === false) {
    return ApplicationFailure.create({
      message: f.message,
      type: f.code ?? ACTIVITY_ERRORS.actionRejected,
      nonRetryable: true,
      details,
    });
  }
  return ApplicationFailure.create({
    message: f.message,
    type: f.code ?? (f.retryAfterMs !== undefined ? ACTIVITY_ERRORS.rateLimited : fallbackType),
    details,
    // The third party said when to come back (429/503 Retry-After): that beats our backoff.
    ...(f.retryAfterMs !== undefined ? { nextRetryDelay: Math.max(1, f.retryAfterMs) } : {}),
  });
}

function currentAttempt(): number {
  try {
    return activityInfo().attempt;
  } catch {
    return 1;
  }
}

/** A non-2xx answer an adapter returned instead of throwing, classified like a thrown one. */
function checkStatus(res: InvokeActionResult): void {
  if (res.status >= 200 && res.status < 300) return;
  const retryable = RETRYABLE_STATUS.has(res.status);
  throw ApplicationFailure.create({
    message: `the third party answered ${res.status}`,
    type: ACTIVITY_ERRORS.httpStatus,
    nonRetryable: !retryable,
    details: [{ attempt: currentAttempt() }],
  });
}

/**
 * Runs `fn` while heartbeating, so a worker that dies mid-call is noticed after the heartbeat
 * timeout rather than the (much longer) start-to-close timeout, and a cancelled step aborts
 * its HTTP call through the signal.
 */
async function withHeartbeat<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const info = activityInfo();
  const every = Math.min(
    MAX_HEARTBEAT_EVERY_MS,
    Math.max(200, Math.floor((info.heartbeatTimeoutMs || 3 * MAX_HEARTBEAT_EVERY_MS) / 3)),
  );
  heartbeat();
  const timer = setInterval(() => heartbeat(), every);
  try {
    return await fn(cancellationSignal());
  } finally {
    clearInterval(timer);
  }
}

export function createActivities(deps: ActivityDeps) {
  async function invoke(kind: string, input: ActionStepInput): Promise<ActionStepResult> {
    const attempt = activityInfo().attempt;
    let res: InvokeActionResult;
    try {
      res = await withHeartbeat((signal) =>
        deps.invokeAction({
          integration: input.integration,
          action_id: input.action_id,
          context: input.context,
          idempotencyKey: input.idempotency_key,
          signal,
        }),
      );
    } catch (err) {
      throw toFailure(err, ACTIVITY_ERRORS.actionFailed);
    }
    checkStatus(res);
    log.debug(`${kind} step done`, { step: input.step, status: res.status });
    return {
      attempt,
      status: res.status,
      ref: res.ref ?? null,
      ...(res.body !== undefined ? { body: res.body } : {}),
    };
  }

  async function enrich(input: EnrichInput): Promise<EnrichResult> {
    const attempt = activityInfo().attempt;
    let res;
    try {
      res = await withHeartbeat((signal) =>
        deps.callBackend({
          integration: input.integration,
          backend_id: input.backend_id,
          context: input.context,
          signal,
        }),
      );
    } catch (err) {
      throw toFailure(err, ACTIVITY_ERRORS.backendError);
    }
    if (res.status === 'insufficient_context') {
      // No request was made and none will be: the context will not grow on a retry.
      throw ApplicationFailure.create({
        message: `missing ${(res.missing ?? []).join(', ') || 'required fields'}`,
        type: ACTIVITY_ERRORS.insufficientContext,
        nonRetryable: true,
        details: [{ attempt }],
      });
    }
    if (res.status !== 'ok') {
      throw ApplicationFailure.create({
        message: res.error ?? res.status,
        type:
          res.status === 'circuit_open'
            ? ACTIVITY_ERRORS.circuitOpen
            : ACTIVITY_ERRORS.backendError,
        details: [{ attempt }],
      });
    }
    return {
      attempt,
      status: 'ok',
      outcome: res.outcome ?? null,
      response: res.response ?? null,
    };
  }

  const ticket = (input: ActionStepInput): Promise<ActionStepResult> => invoke('ticket', input);
  const alert = (input: ActionStepInput): Promise<ActionStepResult> => invoke('alert', input);
  const action = (input: ActionStepInput): Promise<ActionStepResult> => invoke('action', input);

  async function blacklistAdd(input: BlacklistAddInput): Promise<BlacklistAddResult> {
    const attempt = activityInfo().attempt;
    try {
      for (const e of input.entries) {
        await deps.blacklistAdd({
          field_path: input.field_path,
          value: e.value,
          source_decision_id: e.source_decision_id,
          ...(input.ttl_seconds !== undefined ? { ttl_seconds: input.ttl_seconds } : {}),
        });
        heartbeat();
      }
    } catch (err) {
      throw toFailure(err, ACTIVITY_ERRORS.storeFailed);
    }
    return { attempt, added: input.entries.length };
  }

  async function loadPlaybooks(): Promise<LoadPlaybooksResult> {
    const attempt = activityInfo().attempt;
    let stored;
    try {
      stored = await deps.loadPlaybooks();
    } catch (err) {
      throw toFailure(err, ACTIVITY_ERRORS.storeFailed);
    }
    const playbooks: LoadedPlaybook[] = [];
    const skipped: LoadPlaybooksResult['skipped'] = [];
    for (const s of stored) {
      const parsed = parsePlaybook(s.document);
      if (parsed.ok) {
        playbooks.push({ name: s.name, version: s.version, document: parsed.playbook });
      } else {
        // Validated at upload; a stored document that fails now was written by an older
        // schema. Running half of it would be worse than not running it.
        log.warn('stored playbook no longer valid; left out of the case', {
          playbook: s.name,
          version: s.version,
          issues: parsed.error.issues,
        });
        skipped.push({ name: s.name, version: s.version, issues: parsed.error.issues.length });
      }
    }
    playbooks.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { attempt, playbooks, skipped };
  }

  async function emit(event: ActionEvent): Promise<void> {
    try {
      await deps.emitAction(event);
    } catch (err) {
      // The sink is a bounded buffer that counts its own drops; an event is never worth
      // failing or stalling a case for.
      log.warn('action event not emitted', { step: event.step, error: String(err) });
    }
  }

  async function callBackend(input: CallBackendInput): Promise<CallBackendActivityResult> {
    const attempt = activityInfo().attempt;
    let res;
    try {
      res = await withHeartbeat((signal) =>
        deps.callBackend({
          integration: input.integration,
          backend_id: input.backend_id,
          context: input.context,
          signal,
        }),
      );
    } catch (err) {
      throw toFailure(err, ACTIVITY_ERRORS.backendError);
    }
    if (res.status === 'ok' && res.outcome) {
      return { attempt, outcome: res.outcome, response: res.response ?? null };
    }
    throw ApplicationFailure.create({
      message: res.error ?? (res.status === 'ok' ? 'unmappable answer' : res.status),
      type:
        res.status === 'insufficient_context'
          ? ACTIVITY_ERRORS.insufficientContext
          : res.status === 'circuit_open'
            ? ACTIVITY_ERRORS.circuitOpen
            : ACTIVITY_ERRORS.backendError,
      nonRetryable: res.status === 'insufficient_context',
      details: [{ attempt }],
    });
  }

  async function setFinalOutcome(input: {
    decision_id: string;
    outcome: Outcome;
    detail: FinalOutcomeDetail;
  }): Promise<{ outcome: Outcome }> {
    try {
      const settled = await deps.setFinalOutcome(input.decision_id, input.outcome, input.detail);
      return { outcome: settled ?? input.outcome };
    } catch (err) {
      throw toFailure(err, ACTIVITY_ERRORS.storeFailed);
    }
  }

  async function resolveDecisions(
    input: ResolveDecisionsInput,
  ): Promise<{ attempt: number; resolved: number }> {
    const attempt = activityInfo().attempt;
    try {
      for (const id of input.decision_ids) {
        await deps.resolveDecisionRecord(id, input.resolution, input.note);
      }
    } catch (err) {
      throw toFailure(err, ACTIVITY_ERRORS.storeFailed);
    }
    return { attempt, resolved: input.decision_ids.length };
  }

  // Plain functions, not methods: the worker calls each one on its own.
  return {
    enrich,
    ticket,
    alert,
    action,
    blacklistAdd,
    loadPlaybooks,
    emit,
    callBackend,
    setFinalOutcome,
    resolveDecisions,
  };
}

export type VigilActivities = ReturnType<typeof createActivities>;
