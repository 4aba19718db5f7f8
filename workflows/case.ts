// The session case (CONTRACT §4): one workflow per session, fed risky decisions by
// signal-with-start, running the matching playbooks' steps as activities and waiting for an
// analyst's resolution. Runs in Temporal's deterministic sandbox: time is the workflow clock,
// every side effect is an activity, and all state lives in one plain object that
// continue-as-new carries to the next run.
import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  executeChild,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  upsertMemo,
  workflowInfo,
} from '@temporalio/workflow';
import type { ActionEvent } from '../activities/deps.ts';
import type { VigilActivities } from '../activities/index.ts';
import {
  DEFAULT_RETRY,
  playbookMatches,
  stepKind,
  type LoadedPlaybook,
  type PlaybookStep,
  type Resolution,
} from '../rulesets/playbook-core.ts';
import { compact, decisionById, dedupeKey, durationMs, freshCase, openStep } from './case-state.ts';
import {
  ASYNC_BACKEND_WORKFLOW,
  RESOLVE_REFUSED,
  caseQuery,
  decisionSignal,
  lifecycleEventSignal,
  resolveUpdate,
  type AsyncBackendInput,
  type AsyncBackendResult,
  type CarriedCase,
  type CaseInput,
  type CaseResolution,
  type CaseResult,
  type CaseStatus,
  type CaseView,
  type DecisionSignal,
  type PlaybookRun,
  type ResolveArgs,
} from './contracts.ts';
import { closeStep, describeFailure, runStep, type StepContext } from './steps.ts';

const DEFAULT_CLOSE_AFTER = '24h';
const DEFAULT_START_TO_CLOSE = '2m';
const DEFAULT_HEARTBEAT = '20s';
const DEFAULT_DECISIONS_PER_RUN = 100;
const DEFAULT_EVENTS_PER_RUN = 500;
/** Lifecycle events kept for the query; all are counted. */
const MAX_EVENTS_KEPT = 50;
/** Patch id: playbooks are loaded by a local activity (2026-12-05); before, by an activity. */
const PLAYBOOKS_IN_FIRST_TASK = 'playbooks-in-first-task';
/** Patch id: async rules beside a decision that did not wait for them run too (2026-12-05). */
const ASYNC_BESIDE_DECISION = 'async-beside-decision';

export async function caseWorkflow(input: CaseInput = {}): Promise<CaseResult> {
  const workflowId = workflowInfo().workflowId;
  const state: CarriedCase = input.carried ?? freshCase(Date.now());
  const seen = new Set(state.seen);
  const inbox: DecisionSignal[] = [...state.inbox];
  state.inbox = [];
  /** Risky decisions that reached the case after its resolution: they open the next case. */
  const deferred: DecisionSignal[] = [];
  const closeAfterMs = durationMs(input.close_after, DEFAULT_CLOSE_AFTER);
  const decisionsPerRun = input.limits?.decisions_per_run ?? DEFAULT_DECISIONS_PER_RUN;
  const eventsPerRun = input.limits?.events_per_run ?? DEFAULT_EVENTS_PER_RUN;
  const startToClose = durationMs(input.step_timeouts?.start_to_close, DEFAULT_START_TO_CLOSE);
  const heartbeatTimeout = durationMs(input.step_timeouts?.heartbeat, DEFAULT_HEARTBEAT);
  let decisionsThisRun = 0;
  let eventsThisRun = 0;
  /** Background work under way (after_decision fan-outs, async rules, record writes). */
  let tasks = 0;
  let resolvingRecords = false;
  /** Set while a case without resolution publishes its close: a resolve now would be lost. */
  let closing = false;
  let fatal: { error: unknown } | undefined;
  let memoStatus: CaseStatus | undefined;

  const local = proxyLocalActivities<VigilActivities>({
    startToCloseTimeout: '10s',
    retry: { maximumAttempts: 3 },
  });
  const store = proxyActivities<VigilActivities>({
    startToCloseTimeout: '1m',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
  });
  /** The same retries, run by the worker inside the workflow task that asked. */
  const storeLocal = proxyLocalActivities<VigilActivities>({
    startToCloseTimeout: '30s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
  });
  const proxies = new Map<string, { acts: VigilActivities; maxAttempts: number }>();
  /** Publishing a step outcome never fails the case: the sink counts what it loses. */
  const emit = (event: ActionEvent): Promise<void> =>
    local.emit(event).catch((err: unknown) => {
      if (isCancellation(err)) throw err;
    });
  const ctx: StepContext = {
    workflowId,
    state,
    emit,
    activitiesFor(pb: LoadedPlaybook) {
      let p = proxies.get(pb.name);
      if (!p) {
        const r = { ...DEFAULT_RETRY, ...pb.document.retry };
        p = {
          maxAttempts: r.maximum_attempts,
          acts: proxyActivities<VigilActivities>({
            startToCloseTimeout: startToClose,
            heartbeatTimeout,
            retry: {
              initialInterval: durationMs(r.initial_interval, DEFAULT_RETRY.initial_interval),
              backoffCoefficient: r.backoff,
              maximumInterval: durationMs(r.maximum_interval, DEFAULT_RETRY.maximum_interval),
              maximumAttempts: r.maximum_attempts,
            },
          }),
        };
        proxies.set(pb.name, p);
      }
      return p;
    },
  };

  // ---- status and query ------------------------------------------------------------------------

  function status(): CaseStatus {
    if (state.resolution) return 'resolved';
    if (state.runs_of_playbooks.some((r) => r.escalated)) return 'escalated';
    return 'open';
  }

  /** The status is also kept in the memo, so a visibility list can show it without a query. */
  function publishStatus(s: CaseStatus = status()): void {
    if (s === memoStatus) return;
    memoStatus = s;
    upsertMemo({ case_status: s });
  }

  function view(): CaseView {
    return {
      workflow_id: workflowId,
      status: memoStatus ?? status(),
      opened_by: state.opened_by,
      opened_at: state.opened_at,
      decisions: state.decisions.map(
        ({ context_data: _c, session: _s, credential_fingerprint: _f, ...d }) => d,
      ),
      steps: state.steps,
      tickets: state.tickets,
      playbooks: (state.playbooks ?? []).map((p) => ({ name: p.name, version: p.version })),
      resolution: state.resolution,
      events: state.events,
      runs: state.runs,
    };
  }

  // ---- handlers --------------------------------------------------------------------------------

  setHandler(decisionSignal, (d) => {
    const key = dedupeKey(d);
    if (seen.has(key)) return;
    seen.add(key);
    inbox.push(d);
  });

  setHandler(lifecycleEventSignal, (e) => {
    state.events_total += 1;
    eventsThisRun += 1;
    state.events.push(e);
    if (state.events.length > MAX_EVENTS_KEPT) state.events.shift();
  });

  setHandler(caseQuery, view);

  setHandler(
    resolveUpdate,
    (args) => {
      setResolution({
        resolution: args.resolution,
        decision_id: args.decision_id ?? null,
        note: args.note ?? null,
        resolved_at: new Date().toISOString(),
        by: 'analyst',
      });
      return { workflow_id: workflowId, status: status() };
    },
    {
      // Refusals happen here, before anything reaches the history: a second resolve costs
      // nothing and the API turns `already_resolved` into its 409.
      validator: (args: ResolveArgs) => {
        if (args?.resolution !== 'accept' && args?.resolution !== 'reject') {
          throw ApplicationFailure.nonRetryable(
            'resolution must be accept or reject',
            RESOLVE_REFUSED.invalid,
          );
        }
        if (closing) {
          throw ApplicationFailure.nonRetryable(
            'the case is closing without a resolution',
            RESOLVE_REFUSED.closed,
          );
        }
        if (state.resolution) {
          throw ApplicationFailure.nonRetryable(
            `the case was already resolved (${state.resolution.resolution}) at ${state.resolution.resolved_at}`,
            RESOLVE_REFUSED.alreadyResolved,
          );
        }
        const id = args.decision_id;
        if (
          id !== undefined &&
          !decisionById(state, id) &&
          !inbox.some((d) => d.decision_id === id)
        ) {
          throw ApplicationFailure.nonRetryable(
            `decision ${id} is not part of this case`,
            RESOLVE_REFUSED.unknownDecision,
          );
        }
      },
    },
  );

  function setResolution(r: CaseResolution): void {
    if (state.resolution) return;
    state.resolution = r;
    publishStatus();
  }

  // ---- background work -------------------------------------------------------------------------

  /** Runs `fn` beside the main loop; a bug in it fails the workflow task, visibly. */
  function spawn(fn: () => Promise<void>): void {
    tasks += 1;
    fn().then(
      () => {
        tasks -= 1;
      },
      (error: unknown) => {
        tasks -= 1;
        fatal ??= { error };
      },
    );
  }

  /** Playbook runs are tracked by their phase, not as tasks: a run parked at its wait is idle. */
  function startRun(run: PlaybookRun, fn: (run: PlaybookRun) => Promise<void>): void {
    fn(run).catch((error: unknown) => {
      fatal ??= { error };
    });
  }

  // ---- playbook runs ---------------------------------------------------------------------------

  function playbookByName(name: string): LoadedPlaybook {
    const pb = (state.playbooks ?? []).find((p) => p.name === name);
    if (!pb) throw new Error(`playbook ${name} missing from the case's own copy`);
    return pb;
  }

  async function waitForResolution(
    run: PlaybookRun,
    spec: { timeout: string; on_timeout: 'escalate' | 'accept' | 'reject' },
    path: string,
  ): Promise<void> {
    run.phase = 'waiting';
    run.ready = true;
    // Absolute, so a continue-as-new in the middle of the wait does not restart it.
    run.wait_deadline ??= Date.now() + durationMs(spec.timeout, '72h');
    while (!state.resolution) {
      if (run.escalated) {
        // Escalated: a person was called; the case waits for them without a deadline.
        await condition(() => state.resolution !== null);
        break;
      }
      const left = run.wait_deadline - Date.now();
      if (left > 0 && (await condition(() => state.resolution !== null, left))) break;
      if (spec.on_timeout === 'escalate') {
        run.escalated = true;
        publishStatus();
        const rec = openStep(state, `${path}.escalate`);
        await closeStep(
          ctx,
          rec,
          {
            status: 'completed',
            attempts: 1,
            result: { on_timeout: 'escalate', timeout: spec.timeout },
          },
          { status: 'escalated' },
        );
      } else {
        setResolution({
          resolution: spec.on_timeout,
          decision_id: null,
          note: `no resolution within ${spec.timeout}`,
          resolved_at: new Date().toISOString(),
          by: 'timeout',
        });
      }
    }
    run.phase = 'running';
  }

  async function runOnResolution(run: PlaybookRun): Promise<void> {
    const resolution = state.resolution;
    if (run.on_resolution_done || !resolution) return;
    const pb = playbookByName(run.playbook);
    const res: Resolution = resolution.resolution;
    const steps = pb.document.on_resolution?.[res] ?? [];
    const subject =
      (resolution.decision_id ? decisionById(state, resolution.decision_id) : undefined) ??
      decisionById(state, run.trigger);
    for (const [i, step] of steps.entries()) {
      const path = `${pb.name}.on_resolution.${res}[${i}].${stepKind(step)}`;
      await runStep(ctx, pb, step, path, state.decisions, subject);
    }
    run.on_resolution_done = true;
  }

  async function runPlaybook(run: PlaybookRun): Promise<void> {
    const pb = playbookByName(run.playbook);
    const steps = pb.document.steps;
    run.phase = 'running';
    while (run.cursor < steps.length) {
      const step = steps[run.cursor] as PlaybookStep;
      const path = `${pb.name}.steps[${run.cursor}].${stepKind(step)}`;
      if ('wait_for_resolution' in step) {
        await waitForResolution(run, step.wait_for_resolution, path);
        await runOnResolution(run);
      } else {
        await runStep(ctx, pb, step, path, state.decisions, decisionById(state, run.trigger));
      }
      run.cursor += 1;
    }
    run.ready = true;
    run.wait_deadline = null;
    if (state.resolution) await runOnResolution(run);
    run.phase = run.on_resolution_done ? 'done' : 'steps_done';
  }

  /** A run without a wait step that finished before the resolution came. */
  async function finishRun(run: PlaybookRun): Promise<void> {
    run.phase = 'running';
    await runOnResolution(run);
    run.phase = 'done';
  }

  async function afterDecision(pb: LoadedPlaybook, decisionId: string): Promise<void> {
    const run = state.runs_of_playbooks.find((r) => r.playbook === pb.name);
    // after_decision actions see what the playbook's first steps produced (enrichment,
    // ticket refs), so they go once the run reached its wait or its end.
    if (run) await condition(() => run.ready);
    const steps = pb.document.after_decision ?? [];
    const subject = decisionById(state, decisionId);
    await Promise.all(
      steps.map((step, i) =>
        runStep(
          ctx,
          pb,
          step,
          `${pb.name}.after_decision[${i}].${stepKind(step)}@${decisionId}`,
          subject ? [subject] : [],
          subject,
        ),
      ),
    );
  }

  // ---- async backend rules ---------------------------------------------------------------------

  async function runAsyncRules(d: DecisionSignal): Promise<void> {
    const rec = openStep(state, `async_backend@${d.decision_id}`);
    const childInput: AsyncBackendInput = {
      case_workflow_id: workflowId,
      decision_id: d.decision_id,
      context_data: d.context_data,
      rules: d.pending ?? [],
      sync_decision: d.sync_decision ?? 'ALLOW',
    };
    let res: AsyncBackendResult;
    try {
      res = await executeChild<(i: AsyncBackendInput) => Promise<AsyncBackendResult>>(
        ASYNC_BACKEND_WORKFLOW,
        { args: [childInput], workflowId: `async-${d.decision_id}` },
      );
    } catch (err) {
      if (isCancellation(err)) throw err;
      const failure = describeFailure(err, 1);
      if (!failure) throw err;
      await closeStep(
        ctx,
        rec,
        {
          status: 'failed',
          attempts: 1,
          result: null,
          error: { type: failure.type, message: failure.message },
        },
        { decision_id: d.decision_id },
      );
      return;
    }
    // The child published the outcome itself (with the final decision): no second event.
    rec.status = 'completed';
    rec.attempts = Math.max(1, ...res.rules.map((r) => r.attempts));
    rec.result = {
      final_decision: res.final_decision,
      rules: res.rules.map(({ response: _r, ...r }) => r),
    };
    rec.finished_at = new Date().toISOString();
    // Only a PROVISIONAL decision waits for these answers to reach the playbooks.
    if (d.decision !== 'PROVISIONAL') return;
    if (res.final_decision === 'REVIEW' || res.final_decision === 'BLOCK') {
      // The final outcome reaches the playbooks exactly like a synchronous REVIEW/BLOCK.
      const final: DecisionSignal = { ...d, decision: res.final_decision, final: true };
      delete final.pending;
      const key = dedupeKey(final);
      if (!seen.has(key)) {
        seen.add(key);
        inbox.push(final);
      }
    } else {
      const known = decisionById(state, d.decision_id);
      if (known) {
        known.decision = res.final_decision;
        known.final = true;
      }
    }
  }

  // ---- decisions -------------------------------------------------------------------------------

  function handleDecision(d: DecisionSignal): void {
    decisionsThisRun += 1;
    state.last_activity_at = Date.now();
    if (state.resolution) {
      const known = d.final ? decisionById(state, d.decision_id) : undefined;
      if (known) {
        // The final outcome of a decision this case holds and an analyst already resolved:
        // recorded here, it does not open another case.
        known.decision = d.decision;
        known.final = true;
        return;
      }
      deferred.push(d);
      return;
    }
    if (!state.opened_by) {
      state.opened_by = d.decision_id;
      state.opened_at = d.occurred_at;
    }
    let rec = decisionById(state, d.decision_id);
    if (rec) {
      rec.decision = d.decision;
      if (d.final) rec.final = true;
    } else {
      rec = {
        decision_id: d.decision_id,
        decision: d.decision,
        context: d.context,
        ruleset_id: d.ruleset_id,
        occurred_at: d.occurred_at,
        ...(d.final ? { final: true } : {}),
        playbooks: [],
        context_data: d.context_data,
        session: d.session ?? null,
        credential_fingerprint: d.credential_fingerprint ?? null,
      };
      state.decisions.push(rec);
    }
    if (d.decision === 'PROVISIONAL') {
      if (d.pending?.length) spawn(() => runAsyncRules(d));
      return;
    }
    // Async rules the decision did not wait for (beside a synchronous BLOCK, or shadow ones)
    // still run and are reported; the outcome they settle to is the decision's own.
    if (d.pending?.length && !d.final && patched(ASYNC_BESIDE_DECISION)) {
      spawn(() => runAsyncRules(d));
    }
    if (d.decision !== 'REVIEW' && d.decision !== 'BLOCK') return;
    for (const pb of state.playbooks ?? []) {
      if (!playbookMatches(pb.document, d.decision, d.context)) continue;
      if (!rec.playbooks.includes(pb.name)) rec.playbooks.push(pb.name);
      if (!state.runs_of_playbooks.some((r) => r.playbook === pb.name)) {
        // One run per playbook per case: the session's later decisions join it, so the
        // session gets one ticket, not one per decision.
        const run: PlaybookRun = {
          playbook: pb.name,
          trigger: d.decision_id,
          cursor: 0,
          phase: 'running',
          ready: false,
          wait_deadline: null,
          escalated: false,
          on_resolution_done: false,
        };
        state.runs_of_playbooks.push(run);
        startRun(run, runPlaybook);
      }
      if (pb.document.after_decision?.length) {
        const decisionId = d.decision_id;
        spawn(() => afterDecision(pb, decisionId));
      }
    }
  }

  /** The case's resolution, written onto every decision record of the case. */
  async function resolveRecords(): Promise<void> {
    const r = state.resolution;
    if (!r) return;
    const rec = openStep(state, 'case.resolve');
    try {
      const res = await store.resolveDecisions({
        decision_ids: state.decisions.map((d) => d.decision_id),
        resolution: r.resolution,
        note: r.note,
      });
      await closeStep(ctx, rec, {
        status: 'completed',
        attempts: res.attempt,
        result: { resolution: r.resolution, by: r.by, decisions: res.resolved },
      });
    } catch (err) {
      if (isCancellation(err)) throw err;
      const failure = describeFailure(err, 1);
      if (!failure) throw err;
      await closeStep(ctx, rec, {
        status: 'failed',
        attempts: failure.attempts,
        result: null,
        error: { type: failure.type, message: failure.message },
      });
    }
    state.records_resolved = true;
  }

  // ---- the case's life -------------------------------------------------------------------------

  /** No step, fan-out or child is under way (runs parked at their wait are fine). */
  function quiescent(): boolean {
    return tasks === 0 && state.runs_of_playbooks.every((r) => r.phase !== 'running');
  }

  function resolutionWork(): boolean {
    if (!state.resolution) return false;
    if (!state.records_resolved && !resolvingRecords) return true;
    return state.runs_of_playbooks.some((r) => r.phase === 'steps_done' && !r.on_resolution_done);
  }

  function finished(): boolean {
    return (
      state.resolution !== null &&
      state.records_resolved &&
      quiescent() &&
      state.runs_of_playbooks.every((r) => r.phase === 'done')
    );
  }

  function wantsContinue(): boolean {
    return (
      workflowInfo().continueAsNewSuggested ||
      decisionsThisRun >= decisionsPerRun ||
      eventsThisRun >= eventsPerRun
    );
  }

  /** Nothing runs and nothing waits for a resolution: the case closes once it stayed quiet. */
  function idle(): boolean {
    return (
      state.resolution === null &&
      inbox.length === 0 &&
      quiescent() &&
      state.runs_of_playbooks.every((r) => r.phase === 'steps_done' || r.phase === 'done')
    );
  }

  const wake = (): boolean =>
    fatal !== undefined ||
    inbox.length > 0 ||
    resolutionWork() ||
    finished() ||
    (wantsContinue() && quiescent());

  async function end(final: CaseStatus): Promise<CaseResult> {
    publishStatus(final);
    await emit({
      workflow_id: workflowId,
      step: 'case',
      status: final === 'resolved' ? 'resolved' : 'closed',
      attempts: 1,
      occurred_at: new Date().toISOString(),
    });
    await condition(allHandlersFinished);
    return {
      workflow_id: workflowId,
      status: final,
      decisions: state.decisions.length,
      resolution: state.resolution,
    };
  }

  /**
   * The session's next case: same workflow id, fresh state, these decisions first. A fresh case
   * opens its own ticket (its idempotency keys carry its own opening decision).
   */
  function nextCase(decisions: DecisionSignal[]): Promise<never> {
    return continueAsNew<typeof caseWorkflow>({
      ...input,
      carried: { ...freshCase(Date.now()), inbox: decisions, seen: decisions.map(dedupeKey) },
    });
  }

  publishStatus();
  if (!state.playbooks) {
    // The case's own copy: later edits of a playbook apply to later cases, never half-way.
    const rec = openStep(state, 'case.load_playbooks');
    // A local activity, in the case's first workflow task: no activity task for the server to
    // match and no second workflow task (measured: a fifth less dev-server CPU per case, CPU a
    // co-located server takes from the answers). Cases opened before replay their activity.
    const res = await (patched(PLAYBOOKS_IN_FIRST_TASK) ? storeLocal : store).loadPlaybooks();
    state.playbooks = res.playbooks;
    await closeStep(ctx, rec, {
      status: 'completed',
      attempts: res.attempt,
      result: {
        playbooks: res.playbooks.map((p) => `${p.name}@${p.version}`),
        skipped: res.skipped,
      },
    });
  }
  // Resume what the previous run left parked (continue-as-new happens only when every run is
  // waiting or done, so nothing is half-way through a step).
  for (const run of state.runs_of_playbooks) {
    if (run.phase === 'waiting') startRun(run, runPlaybook);
  }

  for (;;) {
    if (fatal) throw fatal.error;
    while (inbox.length > 0) handleDecision(inbox.shift() as DecisionSignal);
    if (state.resolution && !state.records_resolved && !resolvingRecords) {
      resolvingRecords = true;
      spawn(resolveRecords);
    }
    if (state.resolution) {
      for (const run of state.runs_of_playbooks) {
        if (run.phase === 'steps_done' && !run.on_resolution_done) startRun(run, finishRun);
      }
    }
    if (finished()) {
      const result = await end('resolved');
      deferred.push(...inbox.splice(0));
      return deferred.length > 0 ? nextCase(deferred) : result;
    }
    if (wantsContinue() && quiescent()) {
      await condition(allHandlersFinished);
      if (inbox.length > 0) continue;
      return continueAsNew<typeof caseWorkflow>({
        ...input,
        carried: { ...compact(state), seen: [...seen], inbox: [], runs: state.runs + 1 },
      });
    }
    if (idle()) {
      const left = state.last_activity_at + closeAfterMs - Date.now();
      const woke = left > 0 ? await condition(() => wake() || !idle(), left) : false;
      if (!woke && idle()) {
        closing = true;
        const result = await end('closed');
        if (inbox.length === 0) return result;
        // A decision slipped in while the close was being published: it opens the next case.
        return nextCase(inbox.splice(0));
      }
    } else {
      await condition(() => wake() || idle());
    }
  }
}
