// Simulation (CONTRACT §2): a ruleset's decisions beside the active one's, on given contexts
// or on the decisions logged between two times. Nothing is counted, stored, emitted or handed
// off. Velocity is replayed: inputs run in order through a fresh in-process counter store, so
// a velocity rule sees the counts the replayed traffic itself produces. Backends are not
// called (a simulation over a month of traffic must not hit a paid API): a logged decision
// reuses the outcome its backend gave then; a given context gets `not_called`, and the rule's
// on_error applies.
import { z } from 'zod';
import { compileRuleset } from '../rulesets/compile.ts';
import { evaluate } from '../rulesets/evaluate.ts';
import type {
  BackendCaller,
  BlacklistLookup,
  CounterStore,
  Counts,
  DecisionOutcome,
} from '../rulesets/ports.ts';
import type { ActiveRulesets } from './active-rulesets.ts';
import { fingerprintCredential, type PciLevel } from './credential.ts';
import type { DecisionRecord, RulesetRow } from './ports.ts';
import { issuesOf, parseDecisionRequest } from './request.ts';

export const SIMULATE_MAX = 10_000;

export const SimulateRequest = z.union([
  z
    .object({ decisions: z.array(z.record(z.string(), z.unknown())).min(1).max(SIMULATE_MAX) })
    .strict(),
  z
    .object({ since: z.iso.datetime({ offset: true }), until: z.iso.datetime({ offset: true }) })
    .strict()
    .refine((r) => Date.parse(r.since) <= Date.parse(r.until), {
      message: 'since is after until',
      path: ['until'],
    }),
]);
export type SimulateRequest = z.infer<typeof SimulateRequest>;

export interface SimulateDeps {
  active: ActiveRulesets;
  blacklist: BlacklistLookup;
  newCounterStore: () => CounterStore;
  listDecisions: (q: {
    since: string;
    until: string;
    context: string;
    limit: number;
  }) => Promise<DecisionRecord[]>;
  now: () => number;
  /** Given contexts are decision requests: their credential is fingerprinted as decide does. */
  secretKey: Buffer;
  pciLevel: PciLevel;
}

/** A given context that `POST /api/decisions` would refuse; paths name the input. */
export class SimulateInputError extends Error {
  readonly code = 'invalid_request';
  readonly details: { issues: { path: string; message: string }[] };
  constructor(issues: { path: string; message: string }[]) {
    super(issues.map((i) => `${i.path}: ${i.message}`).join('; '));
    this.details = { issues };
  }
}

/**
 * A given context as a decision would see it: validated like `POST /api/decisions`, its
 * credential turned into the same `credential_fingerprint` (a raw PAN refused at the same PCI
 * levels), so blacklist and velocity rules see what they would in production.
 */
function contextOf(
  deps: Pick<SimulateDeps, 'secretKey' | 'pciLevel'>,
  raw: Record<string, unknown>,
  context: string,
  i: number,
): Record<string, unknown> {
  const parsed = parseDecisionRequest({ context, ...raw });
  if (!parsed.success) {
    throw new SimulateInputError(
      issuesOf(parsed.error).map((x) => ({
        path: `decisions[${i}]${x.path ? `.${x.path}` : ''}`,
        message: x.message,
      })),
    );
  }
  const { credential, ...rest } = parsed.data;
  const fingerprint = credential
    ? fingerprintCredential(credential, deps.secretKey, deps.pciLevel)
    : rest.credential_fingerprint;
  return fingerprint ? { ...rest, credential_fingerprint: fingerprint } : rest;
}

interface Row {
  input: number | string;
  decision: DecisionOutcome;
  active_decision: DecisionOutcome | null;
  changed: boolean;
  matched: string[];
  active_matched: string[];
}

const NO_COUNTS: Counts = { get: () => undefined };

function backendsFrom(record: DecisionRecord | undefined): BackendCaller {
  return {
    call: (req) => {
      const earlier = record?.response.backend_results.find(
        (b) =>
          b.integration === req.integration &&
          b.backend_id === req.backend_id &&
          b.status === 'ok' &&
          b.outcome,
      );
      return Promise.resolve(
        earlier?.outcome
          ? { status: 'ok', outcome: earlier.outcome, response: null, latency_ms: 0 }
          : { status: 'error', error: 'not_called', latency_ms: 0 },
      );
    },
  };
}

export async function simulate(deps: SimulateDeps, candidate: RulesetRow, req: SimulateRequest) {
  const compiled = compileRuleset(candidate.document);
  const active = deps.active.resolve(candidate.context);
  const inputs: {
    key: number | string;
    ctx: Record<string, unknown>;
    at: number;
    record?: DecisionRecord;
  }[] =
    'decisions' in req
      ? req.decisions.map((ctx, i) => ({
          key: i,
          ctx: contextOf(deps, ctx, candidate.context, i),
          at: deps.now(),
        }))
      : (
          await deps.listDecisions({
            since: req.since,
            until: req.until,
            context: candidate.context,
            limit: SIMULATE_MAX,
          })
        ).map((r) => ({
          key: r.response.id,
          ctx: r.context,
          at: Date.parse(r.created_at),
          record: r,
        }));

  const counters = deps.newCounterStore();
  const rows: Row[] = [];
  try {
    for (const [i, input] of inputs.entries()) {
      const id = typeof input.key === 'string' ? input.key : `sim_${i}`;
      const run = async (c: typeof compiled | undefined) => {
        if (!c) return undefined;
        const requests = c.counterRequests(input.ctx);
        const counts = requests.length
          ? await counters.count(id, input.at, requests, { record: true })
          : NO_COUNTS;
        return evaluate(c, input.ctx, {
          counts,
          blacklist: deps.blacklist,
          backends: backendsFrom(input.record),
          now: () => input.at,
          deadlineMs: Number.POSITIVE_INFINITY,
        });
      };
      const mine = await run(compiled);
      const theirs = await run(active?.compiled);
      const matched = (r: typeof mine) =>
        (r?.rules ?? []).filter((t) => t.result === 'matched' && !t.shadow).map((t) => t.rule_id);
      const decision = mine?.decision ?? 'ALLOW';
      const activeDecision = theirs ? theirs.decision : null;
      rows.push({
        input: input.key,
        decision,
        active_decision: activeDecision,
        changed: activeDecision !== null && activeDecision !== decision,
        matched: matched(mine),
        active_matched: matched(theirs),
      });
    }
  } finally {
    await counters.close();
  }

  const tally = (pick: (r: Row) => DecisionOutcome | null) => {
    const out: Record<string, number> = {};
    for (const r of rows) {
      const d = pick(r);
      if (d) out[d] = (out[d] ?? 0) + 1;
    }
    return out;
  };
  return {
    ruleset_id: candidate.id,
    active_ruleset_id: active?.id ?? null,
    context: candidate.context,
    summary: {
      total: rows.length,
      changed: rows.filter((r) => r.changed).length,
      decisions: tally((r) => r.decision),
      active_decisions: tally((r) => r.active_decision),
    },
    results: rows,
  };
}
