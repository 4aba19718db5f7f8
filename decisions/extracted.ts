// The decision behind the inline proxy and /api/authz: the context comes from what a client
// sent, through the route's extractors, not from a caller of the decision API. Values the
// decision request refuses are left out (decisions/request.ts parseExtractedContext) and the
// rest is decided, so one bad value cannot turn the rules off for its request; the decision
// lists `context_values_dropped` in `degraded`, and the caller learns which paths went.
import { decide, type DecideDeps } from './decide.ts';
import type { DecisionOutcome } from '../rulesets/ports.ts';
import { LIMITS, parseExtractedContext } from './request.ts';

export interface ExtractedInput {
  context: string;
  body: Record<string, unknown>;
  source: string;
  /** Paths the extractor already left out (an unreadable body): reported like the others. */
  dropped?: readonly string[] | undefined;
}

export interface ExtractedDecision {
  id: string;
  decision: DecisionOutcome;
  /** Context paths left out, invalid or unreadable (`transaction.amount`); absent when none. */
  dropped?: string[];
}

export async function decideExtracted(
  deps: DecideDeps,
  input: ExtractedInput,
): Promise<ExtractedDecision> {
  const parsed = parseExtractedContext({ ...input.body, context: input.context });
  if (!parsed) throw new Error('the extracted context is not a valid decision request');
  // Disjoint: what the extractor left out is not in the context to be dropped again.
  const dropped = input.dropped?.length ? [...input.dropped, ...parsed.dropped] : parsed.dropped;
  if (dropped.length === 0) {
    const r = await decide(deps, parsed.data, { source: input.source });
    return { id: r.id, decision: r.decision };
  }
  // Rules can see it too: a client that sends an invalid amount evades the rules on the amount,
  // and `{"neq": {"path": "$.metadata.dropped", "value": ""}}` catches that.
  const meta = parsed.data.metadata ?? {};
  if (Object.keys(meta).length < LIMITS.metadataKeys) {
    parsed.data.metadata = {
      ...meta,
      dropped: dropped.join(',').slice(0, LIMITS.metadataValue),
    };
  }
  const r = await decide(deps, parsed.data, {
    source: input.source,
    degraded: ['context_values_dropped'],
  });
  return { id: r.id, decision: r.decision, dropped };
}
