// One playbook step as its activity (or child workflow), recorded on the case and published on
// `vigil.actions`. A step that still fails after its retries is recorded `failed` and the
// playbook goes on: an unreachable chat tool must not keep the case from its ticket, its wait
// or its resolution.
import {
  ActivityFailure,
  ApplicationFailure,
  ChildWorkflowFailure,
  TimeoutFailure,
  executeChild,
  isCancellation,
} from '@temporalio/workflow';
import type { ActionEvent } from '../activities/deps.ts';
import type { FailureDetail, VigilActivities } from '../activities/index.ts';
import {
  evaluateCondition,
  valueAt,
  type Condition,
  type LoadedPlaybook,
  type PlaybookStep,
} from '../rulesets/playbook-core.ts';
import { caseData, openStep, stepKey } from './case-state.ts';
import type { CarriedCase, CaseDecisionState, CaseStep, UserWorkflowInput } from './contracts.ts';
import * as userWorkflows from './user/index.ts';

/** What a step needs from its case. */
export interface StepContext {
  workflowId: string;
  state: CarriedCase;
  /** The playbook's activities, with its retry policy, and that policy's attempt bound. */
  activitiesFor(pb: LoadedPlaybook): { acts: VigilActivities; maxAttempts: number };
  emit(event: ActionEvent): Promise<void>;
}

export interface StepFailure {
  type: string;
  message: string;
  attempts: number;
}

/** What a failed step reports: the activity's own code and attempt count when it gave them. */
export function describeFailure(err: unknown, maxAttempts: number): StepFailure | undefined {
  if (err instanceof ActivityFailure || err instanceof ChildWorkflowFailure) {
    const cause = err.cause;
    if (cause instanceof ApplicationFailure) {
      const detail = cause.details?.[0] as FailureDetail | undefined;
      return {
        type: cause.type ?? 'error',
        message: cause.message,
        attempts: typeof detail?.attempt === 'number' ? detail.attempt : maxAttempts,
      };
    }
    if (cause instanceof TimeoutFailure) {
      return { type: 'timeout', message: cause.message, attempts: maxAttempts };
    }
    return { type: 'error', message: cause?.message ?? err.message, attempts: maxAttempts };
  }
  return undefined;
}

/** Closes a step record and publishes its outcome. */
export async function closeStep(
  ctx: StepContext,
  rec: CaseStep,
  outcome: Pick<CaseStep, 'status' | 'attempts' | 'result'> & { error?: CaseStep['error'] },
  event: Partial<ActionEvent> = {},
): Promise<void> {
  rec.status = outcome.status;
  rec.attempts = outcome.attempts;
  rec.result = outcome.result;
  if (outcome.error) rec.error = outcome.error;
  rec.finished_at = new Date().toISOString();
  await ctx.emit({
    workflow_id: ctx.workflowId,
    step: rec.step,
    status: outcome.status === 'running' ? 'failed' : outcome.status,
    attempts: outcome.attempts,
    ...(outcome.error ? { error: outcome.error } : {}),
    ...event,
    occurred_at: rec.finished_at,
  });
}

function target(step: PlaybookStep): { integration?: string; action_id?: string } {
  const spec =
    'ticket' in step
      ? step.ticket
      : 'alert' in step
        ? step.alert
        : 'action' in step
          ? step.action
          : undefined;
  if (spec) return { integration: spec.integration, action_id: spec.action_id };
  if ('enrich' in step) return { integration: step.enrich.integration };
  return {};
}

/** `blacklist_add`'s values: the field of every decision in scope, once each. */
function blacklistEntries(
  ctx: StepContext,
  fieldPath: string,
  scope: CaseDecisionState[],
): { value: string; source_decision_id: string | null }[] {
  const entries: { value: string; source_decision_id: string | null }[] = [];
  const values = new Set<string>();
  for (const d of scope) {
    const v = valueAt(caseData(ctx.workflowId, ctx.state, d), fieldPath);
    if (typeof v !== 'string' && typeof v !== 'number') continue;
    const value = String(v);
    if (value === '' || values.has(value)) continue;
    values.add(value);
    entries.push({ value, source_decision_id: d.decision_id });
  }
  return entries;
}

/**
 * Runs `step` (at `path` in playbook `pb`) for `subject`, the decision whose context it reads;
 * `scope` is the set of decisions a blacklist_add covers (the whole case, or one decision for
 * after_decision).
 */
export async function runStep(
  ctx: StepContext,
  pb: LoadedPlaybook,
  step: PlaybookStep,
  path: string,
  scope: CaseDecisionState[],
  subject: CaseDecisionState | undefined,
): Promise<void> {
  const { state, workflowId } = ctx;
  const { acts, maxAttempts } = ctx.activitiesFor(pb);
  const data = caseData(workflowId, state, subject);
  const rec = openStep(state, path);
  const event = { ...target(step), ...(subject ? { decision_id: subject.decision_id } : {}) };
  const done = (result: unknown, attempts: number) =>
    closeStep(ctx, rec, { status: 'completed', attempts, result }, event);
  const skip = (result: unknown) =>
    closeStep(ctx, rec, { status: 'skipped', attempts: 0, result }, event);
  try {
    if ('enrich' in step) {
      const { integration, backend_id } = step.enrich;
      const res = await acts.enrich({ step: path, integration, backend_id, context: data });
      state.enrichment[integration] ??= {};
      state.enrichment[integration][backend_id] = {
        status: res.status,
        outcome: res.outcome,
        response: res.response,
      };
      await done({ outcome: res.outcome }, res.attempt);
    } else if ('ticket' in step || 'alert' in step || 'action' in step) {
      const kind = 'ticket' in step ? 'ticket' : 'alert' in step ? 'alert' : 'action';
      const spec: { integration: string; action_id: string; condition?: Condition } =
        'ticket' in step ? step.ticket : 'alert' in step ? step.alert : step.action;
      if (spec.condition && !evaluateCondition(spec.condition, data)) {
        await skip({ condition: false });
        return;
      }
      const res = await acts[kind]({
        step: path,
        integration: spec.integration,
        action_id: spec.action_id,
        context: data,
        idempotency_key: stepKey(workflowId, state, path),
      });
      if (kind === 'ticket') {
        state.tickets.push({
          step: path,
          integration: spec.integration,
          action_id: spec.action_id,
          ref: res.ref,
          status: res.status,
        });
      }
      await done({ status: res.status, ref: res.ref }, res.attempt);
    } else if ('blacklist_add' in step) {
      const { field_path, ttl_seconds } = step.blacklist_add;
      const entries = blacklistEntries(ctx, field_path, scope);
      if (entries.length === 0) {
        await skip({ reason: 'no_value' });
        return;
      }
      const res = await acts.blacklistAdd({
        step: path,
        field_path,
        entries,
        ...(ttl_seconds !== undefined ? { ttl_seconds } : {}),
      });
      await done({ field_path, added: res.added }, res.attempt);
    } else if ('workflow' in step) {
      const name = step.workflow;
      if (!Object.hasOwn(userWorkflows, name)) {
        // Starting an unregistered type would leave the child's task failing forever.
        const error = { type: 'unknown_workflow', message: `no user workflow named ${name}` };
        await closeStep(ctx, rec, { status: 'failed', attempts: 0, result: null, error }, event);
        return;
      }
      const input: UserWorkflowInput = {
        case_workflow_id: workflowId,
        step: path,
        idempotency_key: stepKey(workflowId, state, path),
        context: data,
      };
      const result: unknown = await executeChild<(i: UserWorkflowInput) => Promise<unknown>>(name, {
        args: [input],
        workflowId: stepKey(workflowId, state, path),
      });
      await done(result ?? null, 1);
    } else {
      // wait_for_resolution is the playbook runner's; the schema keeps it out of the lists
      // that come here.
      await skip({ reason: 'not_here' });
    }
  } catch (err) {
    if (isCancellation(err)) throw err;
    const failure = describeFailure(err, 'workflow' in step ? 1 : maxAttempts);
    if (!failure) throw err;
    await closeStep(
      ctx,
      rec,
      {
        status: 'failed',
        attempts: failure.attempts,
        result: null,
        error: { type: failure.type, message: failure.message },
      },
      event,
    );
  }
}
