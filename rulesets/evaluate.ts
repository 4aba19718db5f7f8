// The evaluator: CONTRACT §1 semantics 1–10 over a compiled ruleset. Pure: counts, the blacklist
// and backends come in through ports, time through deps.now(). A ruleset without (enabled)
// backend rules evaluates synchronously and returns the result itself; with them it returns a
// Promise, since only backend calls ever wait.
//
// Choices where the contract is silent:
// - Rules after a terminal match are `not_evaluated`, disabled and shadow ones included.
// - A velocity term whose field has no countable value in the context needs no count: it is false
//   (like any missing path), even while the store is down, and `not` negates it as usual. Only a
//   term with a value to count and no count makes its rule `skipped`.
// - `degraded` and `has_errors` report what the evaluation met, shadow rules included: they say
//   a capability failed, not that the failure changed the decision. `has_errors` is true when a
//   backend call failed (`backend_results` holds an error or circuit_open entry).
// - `insufficient_context` is not an error: no request was made and on_error does not apply.
// - A backend answer is placed at `$.backends.{integration}.{backend_id}` for later rules only
//   when it comes from a live rule or member: a shadow answer must not steer live rules. A
//   `backends` member sent by the caller is never visible to rules.
// - `async: true` rules do not end evaluation and are listed in `pending`. A live pending rule
//   makes the decision PROVISIONAL unless a synchronous live rule decided BLOCK; REVIEW, a
//   terminal ALLOW and the default ALLOW all become PROVISIONAL (see settlePending for the final
//   outcome). A shadow pending rule changes nothing.
// - Group `first_answer`: the first live member to answer decides; calls still in flight are
//   aborted and listed as `error: "abandoned"`, which is not counted as a failure.
import { scalarKey } from './jsonpath.ts';
import type {
  CompiledBackendRule,
  CompiledGroupRule,
  CompiledLocalRule,
  CompiledRule,
  CompiledRuleset,
  CondScope,
} from './compile.ts';
import type {
  BackendCallResult,
  BackendCaller,
  BackendResultTrace,
  BlacklistLookup,
  Counts,
  DecisionOutcome,
  DegradedReason,
  EvaluationType,
  Outcome,
  PendingBackend,
  RuleTrace,
} from './ports.ts';
import type { GroupMember, OnError } from './schema.ts';

export interface EvalDeps {
  counts: Counts | 'unavailable';
  blacklist: BlacklistLookup | 'unavailable';
  backends?: BackendCaller | undefined;
  now(): number;
  /** Absolute deadline of the decision, on deps.now()'s clock. */
  deadlineMs: number;
  /** For split groups when the context has neither credential_fingerprint nor customer.id;
   *  without it such requests all go to the first bucket. */
  random?: (() => number) | undefined;
}

export interface EvalResult {
  decision: DecisionOutcome;
  rules: RuleTrace[];
  backend_results: BackendResultTrace[];
  has_errors: boolean;
  degraded: DegradedReason[];
  evaluation_type: EvaluationType;
  pending: PendingBackend[];
}

const SEVERITY: Record<Outcome, number> = { ALLOW: 0, REVIEW: 1, BLOCK: 2 };
const ON_ERROR_ACTION: Record<OnError, Outcome | undefined> = {
  allow: undefined,
  block: 'BLOCK',
  review: 'REVIEW',
};
/** Our own cancellation of a call nobody waits for any more: not the backend's failure. */
const ABANDONED = 'abandoned';

class Run implements CondScope {
  counts: Counts | 'unavailable';
  countMissing = false;
  rules: RuleTrace[] = [];
  backendResults: BackendResultTrace[] = [];
  pending: PendingBackend[] = [];
  degraded: DegradedReason[] = [];
  review = false;
  terminal: Outcome | undefined = undefined;
  livePending = false;
  localMatched = false;
  backendTookPart = false;
  hasErrors = false;
  /** The context as rules see it; replaced (never mutated) when a backend answer is added. */
  ctx: unknown;
  #backendView: unknown = undefined;

  constructor(ctx: unknown, counts: Counts | 'unavailable') {
    this.counts = counts;
    this.ctx =
      ctx !== null && typeof ctx === 'object' && Object.hasOwn(ctx, 'backends')
        ? without(ctx as Record<string, unknown>, 'backends')
        : ctx;
  }

  degrade(reason: DegradedReason): void {
    if (!this.degraded.includes(reason)) this.degraded.push(reason);
  }

  /** A rule's action takes effect: REVIEW accumulates, BLOCK and ALLOW end evaluation. */
  act(live: boolean, action: Outcome): void {
    if (!live) return;
    if (action === 'REVIEW') this.review = true;
    else this.terminal = action;
  }

  /** What backends receive: the current context without `metadata` (CONTRACT §1). */
  backendView(): unknown {
    if (this.#backendView === undefined) {
      const c = this.ctx;
      this.#backendView =
        c !== null && typeof c === 'object' && Object.hasOwn(c, 'metadata')
          ? without(c as Record<string, unknown>, 'metadata')
          : c;
    }
    return this.#backendView;
  }

  placeAnswer(integration: string, backendId: string, outcome: Outcome, response: unknown): void {
    const c = this.ctx;
    if (c === null || typeof c !== 'object' || Array.isArray(c)) return;
    const prev = (c as Record<string, unknown>).backends as Record<string, unknown> | undefined;
    const mine = prev?.[integration] as Record<string, unknown> | undefined;
    // Slugs cannot be `__proto__` (schema), and computed keys in literals define own properties.
    this.ctx = {
      ...c,
      backends: { ...prev, [integration]: { ...mine, [backendId]: { outcome, response } } },
    };
    this.#backendView = undefined;
  }

  result(): EvalResult {
    let decision: DecisionOutcome = this.terminal ?? (this.review ? 'REVIEW' : 'ALLOW');
    if (this.livePending && decision !== 'BLOCK') decision = 'PROVISIONAL';
    return {
      decision,
      rules: this.rules,
      backend_results: this.backendResults,
      has_errors: this.hasErrors,
      degraded: this.degraded,
      evaluation_type: this.backendTookPart
        ? this.localMatched
          ? 'COMBINED'
          : 'BACKEND'
        : 'RULE_ENGINE',
      pending: this.pending,
    };
  }
}

function without(o: Record<string, unknown>, key: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o)) if (k !== key) out[k] = o[k];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Condition and blacklist rules: synchronous

function evalLocal(run: Run, rule: CompiledLocalRule, deps: EvalDeps): void {
  if (rule.kind === 'condition') {
    if (run.counts === 'unavailable' && rule.probes.length > 0) {
      for (const p of rule.probes) {
        if (scalarKey(p.field.one(run.ctx)) !== undefined) {
          run.degrade('counter_unavailable');
          run.rules.push(rule.skippedCounter);
          return;
        }
      }
    }
    run.countMissing = false;
    const hit = rule.test(run.ctx, run);
    if (run.countMissing) {
      run.degrade('counter_unavailable');
      run.rules.push(rule.skippedCounter);
      return;
    }
    matchOrNot(run, rule, hit);
    return;
  }
  const bl = deps.blacklist;
  if (bl === 'unavailable') {
    run.degrade('blacklist_unavailable');
    run.rules.push(rule.skippedBlacklist);
    return;
  }
  const now = deps.now();
  let hit = false;
  for (const f of rule.fields) {
    const key = f.key;
    if (
      f.path.some(run.ctx, (v) => {
        const s = scalarKey(v);
        return s !== undefined && bl.has(key, s, now);
      })
    ) {
      hit = true;
      break;
    }
  }
  matchOrNot(run, rule, hit);
}

function matchOrNot(run: Run, rule: CompiledLocalRule, hit: boolean): void {
  if (!hit) {
    run.rules.push(rule.notMatched);
    return;
  }
  run.rules.push(rule.matched);
  if (rule.live) run.localMatched = true;
  run.act(rule.live, rule.action);
}

function notEvaluatedFrom(run: Run, rules: readonly CompiledRule[], from: number): void {
  for (let j = from; j < rules.length; j++) run.rules.push(rules[j]!.notEvaluated);
}

/** Runs local rules from `i` up to the next enabled backend rule; returns its index (or the end). */
function runLocal(run: Run, rules: readonly CompiledRule[], i: number, deps: EvalDeps): number {
  for (; i < rules.length; i++) {
    const rule = rules[i]!;
    if (!rule.enabled) {
      run.rules.push(rule.disabled);
      continue;
    }
    if (rule.kind !== 'condition' && rule.kind !== 'blacklist') return i;
    evalLocal(run, rule, deps);
    if (run.terminal !== undefined) {
      notEvaluatedFrom(run, rules, i + 1);
      return rules.length;
    }
  }
  return i;
}

// ---------------------------------------------------------------------------------------------
// Backend rules

const NO_CALLER: BackendCallResult = { status: 'error', error: 'no_backend_caller', latency_ms: 0 };
const OUTCOMES = new Set<unknown>(['ALLOW', 'REVIEW', 'BLOCK']);

async function callBackend(
  run: Run,
  deps: EvalDeps,
  member: { integration: string; backend_id: string },
  deadlineMs: number,
  timeoutMs: number | undefined,
  signal?: AbortSignal,
): Promise<BackendCallResult> {
  const caller = deps.backends;
  if (!caller) return NO_CALLER;
  const start = deps.now();
  // Past the deadline a call could only make the answer later: it counts as timed out.
  if (start >= deadlineMs) return { status: 'error', error: 'timeout', latency_ms: 0 };
  try {
    const r = await caller.call({
      integration: member.integration,
      backend_id: member.backend_id,
      context: run.backendView(),
      deadlineMs,
      timeoutMs,
      ...(signal ? { signal } : {}),
    });
    if (r.status === 'ok' && !OUTCOMES.has(r.outcome)) {
      return { status: 'error', error: 'unmappable', latency_ms: r.latency_ms };
    }
    return r;
  } catch {
    // The caller's contract is to answer, not throw; if it throws, the rule fails like a call.
    return { status: 'error', error: 'exception', latency_ms: Math.max(0, deps.now() - start) };
  }
}

function degradedOf(
  r: { status: 'error'; error: string } | { status: 'circuit_open' },
): DegradedReason {
  if (r.status === 'circuit_open') return 'backend_circuit_open';
  return r.error === 'timeout' ? 'backend_timeout' : 'backend_error';
}

function traceCall(
  ruleId: string,
  member: { integration: string; backend_id: string },
  r: BackendCallResult,
  onError: OnError,
  shadow: boolean,
): BackendResultTrace {
  const t: BackendResultTrace = {
    rule_id: ruleId,
    integration: member.integration,
    backend_id: member.backend_id,
    status: r.status,
  };
  switch (r.status) {
    case 'ok':
      t.outcome = r.outcome;
      t.latency_ms = r.latency_ms;
      break;
    case 'insufficient_context':
      t.missing = r.missing;
      break;
    case 'error':
      t.error = r.error;
      t.on_error = onError;
      t.latency_ms = r.latency_ms;
      break;
    case 'circuit_open':
      t.error = 'circuit_open';
      t.on_error = onError;
      break;
  }
  if (shadow) t.shadow = true;
  return t;
}

/** Records a call's trace; a failure marks the evaluation degraded. */
function record(run: Run, t: BackendResultTrace, r: BackendCallResult): void {
  run.backendResults.push(t);
  if ((r.status === 'error' && r.error !== ABANDONED) || r.status === 'circuit_open') {
    run.hasErrors = true;
    run.degrade(degradedOf(r));
  }
}

/** What a backend rule or group came to, before the semantics apply. */
type Verdict =
  | { kind: 'answer'; outcome: Outcome }
  | { kind: 'failed'; error: string }
  | { kind: 'insufficient' };

function applyVerdict(run: Run, rule: CompiledBackendRule | CompiledGroupRule, v: Verdict): void {
  const shadow = rule.live ? {} : { shadow: true as const };
  if (v.kind === 'insufficient') {
    run.rules.push({ rule_id: rule.id, result: 'insufficient_context', ...shadow });
    return;
  }
  if (rule.live) run.backendTookPart = true;
  if (v.kind === 'answer') {
    run.rules.push({ rule_id: rule.id, result: 'matched', action: v.outcome, ...shadow });
    run.act(rule.live, v.outcome);
    return;
  }
  const action = ON_ERROR_ACTION[rule.on_error];
  run.rules.push({
    rule_id: rule.id,
    result: 'error',
    ...(action ? { action } : {}),
    reason: v.error,
    ...shadow,
  });
  if (action) run.act(rule.live, action);
}

async function evalBackend(run: Run, rule: CompiledBackendRule, deps: EvalDeps): Promise<void> {
  if (rule.async) {
    const shadow = rule.live ? {} : { shadow: true as const };
    run.rules.push({ rule_id: rule.id, result: 'pending', ...shadow });
    run.backendResults.push({
      rule_id: rule.id,
      integration: rule.integration,
      backend_id: rule.backend_id,
      status: 'pending',
      ...shadow,
    });
    run.pending.push({
      rule_id: rule.id,
      integration: rule.integration,
      backend_id: rule.backend_id,
      on_error: rule.on_error,
      ...(rule.timeout_ms !== undefined ? { timeout_ms: rule.timeout_ms } : {}),
      ...shadow,
    });
    if (rule.live) {
      run.livePending = true;
      run.backendTookPart = true;
    }
    return;
  }
  const r = await callBackend(run, deps, rule, deps.deadlineMs, rule.timeout_ms);
  record(run, traceCall(rule.id, rule, r, rule.on_error, !rule.live), r);
  if (r.status === 'ok') {
    if (rule.live) run.placeAnswer(rule.integration, rule.backend_id, r.outcome, r.response);
    applyVerdict(run, rule, { kind: 'answer', outcome: r.outcome });
  } else if (r.status === 'insufficient_context') {
    applyVerdict(run, rule, { kind: 'insufficient' });
  } else {
    applyVerdict(run, rule, {
      kind: 'failed',
      error: r.status === 'error' ? r.error : 'circuit_open',
    });
  }
}

// FNV-1a over UTF-16 code units, then murmur3's finalizer: FNV's low bits alone split poorly
// under a modulo, and the bucket must be stable across processes and releases.
export function stableHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function stickyKey(ctx: unknown): string | undefined {
  if (ctx === null || typeof ctx !== 'object') return undefined;
  const c = ctx as Record<string, unknown>;
  const fp = Object.hasOwn(c, 'credential_fingerprint')
    ? scalarKey(c.credential_fingerprint)
    : undefined;
  if (fp !== undefined) return `c:${fp}`;
  const customer = Object.hasOwn(c, 'customer') ? c.customer : undefined;
  if (customer !== null && typeof customer === 'object' && Object.hasOwn(customer, 'id')) {
    const id = scalarKey((customer as Record<string, unknown>).id);
    if (id !== undefined) return `u:${id}`;
  }
  return undefined;
}

function pickSplit(run: Run, rule: CompiledGroupRule, deps: EvalDeps): GroupMember {
  const live = rule.members.filter((m) => m.live);
  const total = rule.totalWeight;
  const key = stickyKey(run.ctx);
  let point: number;
  if (key !== undefined) point = stableHash(`${rule.id}\u0000${key}`) % total;
  else {
    const r = deps.random?.() ?? 0;
    point = Math.min(total - 1, Math.max(0, Math.floor((Number.isFinite(r) ? r : 0) * total)));
  }
  for (const m of live) {
    point -= m.weight;
    if (point < 0) return m;
  }
  return live[live.length - 1]!;
}

async function evalGroup(run: Run, rule: CompiledGroupRule, deps: EvalDeps): Promise<void> {
  // One budget for the whole group: a fallback chain or a parallel fan-out never outlives it.
  const deadline =
    rule.timeout_ms === undefined
      ? deps.deadlineMs
      : Math.min(deps.deadlineMs, deps.now() + rule.timeout_ms);
  const members = rule.members;
  const results: (BackendCallResult | undefined)[] = members.map(() => undefined);
  const call = (k: number, signal?: AbortSignal) =>
    callBackend(run, deps, members[k]!, deadline, rule.timeout_ms, signal).then((r) => {
      results[k] = r;
      return r;
    });

  let winners: number[] = [];
  const shadowCalls: Promise<BackendCallResult>[] = [];
  let stoppedByDeadline = false;

  if (rule.strategy === 'parallel' && rule.merge === 'first_answer') {
    const start = deps.now();
    winners = await firstAnswer(members, call);
    const latency = Math.max(0, deps.now() - start);
    members.forEach((_, k) => {
      results[k] ??= { status: 'error', error: ABANDONED, latency_ms: latency };
    });
  } else {
    // Shadow members never decide, so their order does not matter: they run alongside.
    members.forEach((m, k) => {
      if (!m.live) shadowCalls.push(call(k));
    });
    if (rule.strategy === 'fallback') {
      let tried = false;
      for (let k = 0; k < members.length; k++) {
        if (!members[k]!.live) continue;
        // Out of time after a failed member: the rest are not asked (and not listed).
        if (tried && deps.now() >= deadline) {
          stoppedByDeadline = true;
          break;
        }
        tried = true;
        const r = await call(k);
        if (r.status === 'ok') {
          winners = [k];
          break;
        }
      }
    } else if (rule.strategy === 'split') {
      const k = members.indexOf(pickSplit(run, rule, deps));
      const r = await call(k);
      if (r.status === 'ok') winners = [k];
    } else {
      const live = members.flatMap((m, k) => (m.live ? [k] : []));
      const rs = await Promise.all(live.map((k) => call(k)));
      winners = live.filter((_, j) => rs[j]!.status === 'ok');
    }
    await Promise.all(shadowCalls);
  }

  // Traces in document order, whatever order the answers came in.
  members.forEach((m, k) => {
    const r = results[k];
    if (r) record(run, traceCall(rule.id, m, r, rule.on_error, !m.live), r);
  });

  if (winners.length > 0) {
    let outcome: Outcome | undefined;
    for (const k of winners) {
      const r = results[k];
      if (r?.status !== 'ok') continue;
      if (rule.live)
        run.placeAnswer(members[k]!.integration, members[k]!.backend_id, r.outcome, r.response);
      if (outcome === undefined || SEVERITY[r.outcome] > SEVERITY[outcome]) outcome = r.outcome;
    }
    if (outcome !== undefined) {
      applyVerdict(run, rule, { kind: 'answer', outcome });
      return;
    }
  }
  // No live member answered: an error if any live member failed (or time ran out before one
  // could be asked), insufficient_context if every one asked lacked context.
  let error: string | undefined = stoppedByDeadline ? 'timeout' : undefined;
  let insufficient = false;
  members.forEach((m, k) => {
    const r = results[k];
    if (!m.live || !r) return;
    if (r.status === 'insufficient_context') insufficient = true;
    else if (r.status === 'circuit_open') error ??= 'circuit_open';
    else if (r.status === 'error') error ??= r.error;
  });
  if (error === undefined && insufficient) applyVerdict(run, rule, { kind: 'insufficient' });
  else applyVerdict(run, rule, { kind: 'failed', error: error ?? 'timeout' });
}

/**
 * Calls every member at once; resolves with the first live member that answers, or with none
 * once every live member has failed. Calls still in flight are aborted and marked abandoned.
 */
async function firstAnswer(
  members: GroupMember[],
  call: (k: number, signal?: AbortSignal) => Promise<BackendCallResult>,
): Promise<number[]> {
  const abort = new AbortController();
  let liveLeft = members.filter((m) => m.live).length;
  let winner = -1;
  await new Promise<void>((resolve) => {
    members.forEach((m, k) => {
      void call(k, abort.signal).then((r) => {
        if (!m.live) return;
        if (winner < 0 && r.status === 'ok') {
          winner = k;
          resolve();
        } else if (--liveLeft === 0) resolve();
      });
    });
  });
  abort.abort();
  return winner >= 0 ? [winner] : [];
}

// ---------------------------------------------------------------------------------------------
// Entry points

async function runWithBackends(
  compiled: CompiledRuleset,
  run: Run,
  deps: EvalDeps,
): Promise<EvalResult> {
  const rules = compiled.rules;
  let i = 0;
  for (;;) {
    i = runLocal(run, rules, i, deps);
    if (i >= rules.length) break;
    const rule = rules[i] as CompiledBackendRule | CompiledGroupRule;
    if (rule.kind === 'backend') await evalBackend(run, rule, deps);
    else await evalGroup(run, rule, deps);
    i++;
    if (run.terminal !== undefined) {
      notEvaluatedFrom(run, rules, i);
      break;
    }
  }
  return run.result();
}

/**
 * Evaluates `ctx` against a compiled ruleset. Synchronous (returns the result) when the ruleset
 * has no enabled backend rule; otherwise a Promise. `await` works on both.
 */
export function evaluate(
  compiled: CompiledRuleset,
  ctx: unknown,
  deps: EvalDeps,
): EvalResult | Promise<EvalResult> {
  const run = new Run(ctx, deps.counts);
  if (!compiled.hasBackends) {
    runLocal(run, compiled.rules, 0, deps);
    return run.result();
  }
  return runWithBackends(compiled, run, deps);
}

/** The synchronous path only: throws if the ruleset calls backends. */
export function evaluateSync(compiled: CompiledRuleset, ctx: unknown, deps: EvalDeps): EvalResult {
  if (compiled.hasBackends) throw new Error('this ruleset calls backends: use evaluate()');
  return evaluate(compiled, ctx, deps) as EvalResult;
}

/**
 * The final outcome of a PROVISIONAL decision once its `async: true` rules have answered (the
 * decision's workflow calls this with what each pending rule's backend returned). Each answer
 * takes effect at its rule's place in the order, exactly as a synchronous answer would have:
 * BLOCK and ALLOW end evaluation there, REVIEW accumulates, on_error applies to a failure. The
 * rules after it had already run and keep their traces, but a terminal answer before them
 * means their actions no longer count. They ran without the async answer in `$.backends`.
 * A decision that was not PROVISIONAL (a synchronous BLOCK, already enforced) keeps its
 * outcome; its pending traces are still filled in. A rule without an answer counts as failed
 * with `no_answer`.
 */
export function settlePending(
  result: EvalResult,
  answers: Readonly<Record<string, BackendCallResult | undefined>>,
): EvalResult {
  const pending = new Map(result.pending.map((p) => [p.rule_id, p]));
  if (pending.size === 0) return result;
  const degraded = [...result.degraded];
  let hasErrors = result.has_errors;
  let review = false;
  let terminal: Outcome | undefined;
  const take = (t: RuleTrace) => {
    if (t.shadow || terminal !== undefined || t.action === undefined) return;
    if (t.result !== 'matched' && t.result !== 'error') return;
    if (t.action === 'REVIEW') review = true;
    else terminal = t.action;
  };
  const settled = new Map<string, BackendResultTrace>();
  const rules = result.rules.map((t): RuleTrace => {
    const p = t.result === 'pending' ? pending.get(t.rule_id) : undefined;
    if (!p) {
      take(t);
      return t;
    }
    const shadow = p.shadow ? { shadow: true as const } : {};
    const answer: BackendCallResult = answers[p.rule_id] ?? {
      status: 'error',
      error: 'no_answer',
      latency_ms: 0,
    };
    const bt = traceCall(p.rule_id, p, answer, p.on_error, p.shadow === true);
    settled.set(p.rule_id, bt);
    let next: RuleTrace;
    if (answer.status === 'ok') {
      next = { rule_id: p.rule_id, result: 'matched', action: answer.outcome, ...shadow };
    } else if (answer.status === 'insufficient_context') {
      next = { rule_id: p.rule_id, result: 'insufficient_context', ...shadow };
    } else {
      hasErrors = true;
      const reason = degradedOf(answer);
      if (!degraded.includes(reason)) degraded.push(reason);
      const action = ON_ERROR_ACTION[p.on_error];
      next = {
        rule_id: p.rule_id,
        result: 'error',
        ...(action ? { action } : {}),
        reason: answer.status === 'error' ? answer.error : 'circuit_open',
        ...shadow,
      };
    }
    take(next);
    return next;
  });
  const backend_results = result.backend_results.map((b) =>
    b.status === 'pending' ? (settled.get(b.rule_id) ?? b) : b,
  );
  const decision: DecisionOutcome =
    result.decision === 'PROVISIONAL'
      ? (terminal ?? (review ? 'REVIEW' : 'ALLOW'))
      : result.decision;
  return {
    ...result,
    decision,
    rules,
    backend_results,
    has_errors: hasErrors,
    degraded,
    pending: [],
  };
}
