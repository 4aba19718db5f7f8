// ActivityDeps for tests: actions and backends are real HTTP calls (fetch) to a local
// ThirdParty server; what the store would keep (blacklist, final outcomes, resolutions, events)
// is recorded for the assertions.
import type {
  ActionError,
  ActionEvent,
  ActivityDeps,
  BlacklistAddRequest,
  CallBackendResult,
  FinalOutcomeDetail,
  StoredPlaybook,
} from '../../../activities/deps.ts';
import type { Outcome } from '../../../rulesets/playbook.ts';

export interface Recorded {
  blacklist: BlacklistAddRequest[];
  finals: { decision_id: string; outcome: Outcome; detail: FinalOutcomeDetail }[];
  resolutions: { decision_id: string; resolution: string; note: string | null }[];
  events: ActionEvent[];
}

const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);
const VERDICTS: Record<string, Outcome> = { approve: 'ALLOW', review: 'REVIEW', decline: 'BLOCK' };

function actionError(status: number, retryAfter: string | null): ActionError {
  const err = new Error(`the third party answered ${status}`) as ActionError;
  err.retryable = RETRYABLE.has(status);
  err.status = status;
  err.code = 'http_status';
  if (retryAfter !== null && /^\d+$/.test(retryAfter)) err.retryAfterMs = Number(retryAfter) * 1000;
  return err;
}

export function httpDeps(
  baseUrl: string,
  playbooks: StoredPlaybook[] | (() => StoredPlaybook[]),
  opts: { settle?: (decisionId: string, proposed: Outcome) => Outcome | undefined } = {},
): { deps: ActivityDeps; recorded: Recorded } {
  const recorded: Recorded = { blacklist: [], finals: [], resolutions: [], events: [] };
  const deps: ActivityDeps = {
    async invokeAction(req) {
      const res = await fetch(`${baseUrl}/actions/${req.integration}/${req.action_id}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': req.idempotencyKey },
        body: JSON.stringify({ context: req.context }),
        signal: req.signal ?? null,
      });
      const body: unknown = await res.json().catch(() => null);
      if (!res.ok) throw actionError(res.status, res.headers.get('retry-after'));
      const ref = (body as { id?: unknown } | null)?.id;
      return { status: res.status, body, ...(typeof ref === 'string' ? { ref } : {}) };
    },
    async callBackend(req): Promise<CallBackendResult> {
      const res = await fetch(`${baseUrl}/backends/${req.integration}/${req.backend_id}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(req.context),
        signal: req.signal ?? null,
      });
      if (!res.ok) return { status: 'error', error: 'http_status' };
      const body = (await res.json()) as { verdict?: string };
      const outcome = body.verdict ? VERDICTS[body.verdict] : undefined;
      return outcome
        ? { status: 'ok', outcome, response: body }
        : { status: 'error', error: 'unmappable' };
    },
    blacklistAdd(req) {
      recorded.blacklist.push(req);
      return Promise.resolve({ id: `bl_${recorded.blacklist.length}` });
    },
    loadPlaybooks: () => Promise.resolve(typeof playbooks === 'function' ? playbooks() : playbooks),
    emitAction(event) {
      recorded.events.push(event);
    },
    setFinalOutcome(decision_id, proposed, detail) {
      const outcome = opts.settle?.(decision_id, proposed) ?? proposed;
      recorded.finals.push({ decision_id, outcome, detail });
      return Promise.resolve(outcome);
    },
    resolveDecisionRecord(decision_id, resolution, note) {
      recorded.resolutions.push({ decision_id, resolution, note });
      return Promise.resolve();
    },
  };
  return { deps, recorded };
}
