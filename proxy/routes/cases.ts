// CONTRACT §4: GET /api/cases and GET /api/cases/{workflow_id}. A case is a session's case
// workflow; its state comes from the workflow's own `case` query and the list from Temporal
// visibility, so the API shows what Temporal holds, never a copy that could drift.
//
// How the list maps to Temporal (docs/workflows.md says the same for users):
// - A case is addressed by its workflow id. A run that ended by continue-as-new is never
//   listed (its successor is the same case, or the session's next case), so no case appears
//   twice because it continued as new.
// - `status` comes from the `case_status` memo the workflow keeps current (open, escalated,
//   resolved, closed): a list needs no query per case and no worker. A running case whose
//   first workflow task has not run yet has no memo; it is open.
// - `status=open`: running and not resolved (escalated cases are open). `status=resolved`:
//   resolved, still running its on_resolution steps or completed. No status: every case.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { CASE_WORKFLOW, caseQuery, type CaseView } from '../../workflows/contracts.ts';
import { requireScope, type TokenVerifier } from '../auth.ts';
import { ApiError, notFound } from '../errors.ts';
import { TemporalUnavailable, type TemporalClients } from '../temporal-client.ts';

export type CaseListStatus = 'open' | 'resolved';

export interface CaseSummary {
  workflow_id: string;
  run_id: string;
  /** The case's own status (memo); `unknown` for a run that never recorded one. */
  status: 'open' | 'escalated' | 'resolved' | 'closed' | 'unknown';
  /** Temporal's status of the run: running, completed, failed, terminated, … */
  execution_status: string;
  started_at: string | null;
  closed_at: string | null;
}

export interface CaseListQuery {
  status?: CaseListStatus | undefined;
  limit: number;
  cursor?: string | undefined;
}

export interface CasesPort {
  list(q: CaseListQuery): Promise<{ cases: CaseSummary[]; next_cursor: string | null }>;
  /** The case's current state; undefined when no such workflow exists. */
  get(workflowId: string, runId?: string): Promise<CaseView | undefined>;
}

/** Visibility pages fetched for one API page at most: a filtered list stays bounded in time. */
const MAX_PAGES_PER_CALL = 5;

const EXECUTION_STATUS: Record<number, string> = {
  1: 'running',
  2: 'completed',
  3: 'failed',
  4: 'canceled',
  5: 'terminated',
  6: 'continued_as_new',
  7: 'timed_out',
};

const QUERIES: Record<CaseListStatus | 'all', string> = {
  open: `WorkflowType = '${CASE_WORKFLOW}' AND ExecutionStatus = 'Running'`,
  resolved: `WorkflowType = '${CASE_WORKFLOW}' AND ExecutionStatus IN ('Running', 'Completed')`,
  all: `WorkflowType = '${CASE_WORKFLOW}' AND ExecutionStatus != 'ContinuedAsNew'`,
};

const CASE_STATUSES = new Set(['open', 'escalated', 'resolved', 'closed']);

interface RawTimestamp {
  seconds?: number | { toNumber(): number } | null;
  nanos?: number | null;
}

function isoOf(ts: RawTimestamp | null | undefined): string | null {
  if (!ts?.seconds) return null;
  const seconds = typeof ts.seconds === 'number' ? ts.seconds : ts.seconds.toNumber();
  return new Date(seconds * 1000 + Math.floor((ts.nanos ?? 0) / 1e6)).toISOString();
}

/**
 * A memo value as the workflow wrote it: the SDK's default converter stores strings as
 * `json/plain` payloads (UTF-8 JSON). Decoded here rather than through the SDK's converter, which
 * would load the whole client (its protobuf classes) into every API process before the first
 * Temporal call; another encoding reads as undefined.
 */
function jsonPayload(payload: unknown): unknown {
  const p = payload as { metadata?: Record<string, Uint8Array> | null; data?: Uint8Array | null };
  const encoding = p.metadata?.encoding;
  if (!encoding || Buffer.from(encoding).toString('utf8') !== 'json/plain' || !p.data)
    return undefined;
  return JSON.parse(Buffer.from(p.data).toString('utf8')) as unknown;
}

function memoStatus(fields: Record<string, unknown> | null | undefined): CaseSummary['status'] {
  const payload = fields?.case_status;
  if (!payload) return 'unknown';
  try {
    const v = jsonPayload(payload);
    return typeof v === 'string' && CASE_STATUSES.has(v) ? (v as CaseSummary['status']) : 'unknown';
  } catch {
    return 'unknown';
  }
}

function keep(status: CaseListStatus | undefined, c: CaseSummary): boolean {
  if (status === 'open') return c.status === 'open' || c.status === 'escalated';
  if (status === 'resolved') return c.status === 'resolved';
  return true;
}

/**
 * gRPC codes with which Temporal says it could not answer now (UNKNOWN, RESOURCE_EXHAUSTED — a
 * case's query buffer is full while its worker is behind —, INTERNAL): the caller may retry, so
 * they are a 503 like an unreachable Temporal, not a 500 of ours.
 */
const TEMPORAL_COULD_NOT_ANSWER = new Set([2, 8, 13]);

function couldNotAnswer(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 8; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'number' && TEMPORAL_COULD_NOT_ANSWER.has(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

function isNotFound(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 8; depth++) {
    if ((e as { name?: unknown }).name === 'WorkflowNotFoundError') return true;
    // gRPC NOT_FOUND: a run id that does not exist.
    if ((e as { code?: unknown }).code === 5) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * Cursors are Temporal's page tokens, signed: Temporal answers a garbled token with UNKNOWN,
 * which its client retries until the deadline, so a bad cursor would cost seconds and a 503.
 * A signed cursor is checked here and refused at once.
 */
function cursorCodec(key: Buffer) {
  const mac = (token: Uint8Array) =>
    createHmac('sha256', key).update('vigil cases cursor\0').update(token).digest().subarray(0, 16);
  return {
    encode: (token: Uint8Array) =>
      `${Buffer.from(token).toString('base64url')}.${mac(token).toString('base64url')}`,
    decode(cursor: string): Uint8Array {
      const [body, sig] = cursor.split('.');
      const token = Buffer.from(body ?? '', 'base64url');
      const given = Buffer.from(sig ?? '', 'base64url');
      const want = mac(token);
      if (token.length === 0 || given.length !== want.length || !timingSafeEqual(given, want)) {
        throw new ApiError('invalid_request', 'cursor is not one this API returned', {
          issues: [{ path: 'querystring.cursor', message: 'unknown cursor' }],
        });
      }
      return token;
    },
  };
}

/** The cases port over the runtime's shared Temporal client; `cursorKey` signs list cursors. */
export function temporalCases(temporal: TemporalClients, opts: { cursorKey: Buffer }): CasesPort {
  const cursors = cursorCodec(opts.cursorKey);
  return {
    async list(q) {
      const cases: CaseSummary[] = [];
      let token: Uint8Array | undefined = q.cursor ? cursors.decode(q.cursor) : undefined;
      let pages = 0;
      // Each visibility page asks for no more rows than are still wanted, so every fetched row
      // fits this answer and the cursor never skips one.
      do {
        const want = q.limit - cases.length;
        const res = await temporal.call((client: Client) =>
          client.workflowService.listWorkflowExecutions({
            namespace: temporal.namespace,
            query: QUERIES[q.status ?? 'all'],
            pageSize: want,
            ...(token ? { nextPageToken: token } : {}),
          }),
        );
        pages += 1;
        const seen = new Set(cases.map((c) => c.workflow_id));
        for (const e of res.executions ?? []) {
          const execution = EXECUTION_STATUS[e.status ?? 0] ?? 'unknown';
          const memo = memoStatus(e.memo?.fields);
          const summary: CaseSummary = {
            workflow_id: e.execution?.workflowId ?? '',
            run_id: e.execution?.runId ?? '',
            // The memo is written by the case's first workflow task: a case the worker has not
            // reached yet (a backlog after an outage, a busy worker) is running and open.
            status: memo === 'unknown' && execution === 'running' ? 'open' : memo,
            execution_status: execution,
            started_at: isoOf(e.startTime),
            closed_at: isoOf(e.closeTime),
          };
          // A session whose case completed and then opened another (same workflow id, new
          // run) lists once, newest first as visibility orders them.
          if (seen.has(summary.workflow_id) || !keep(q.status, summary)) continue;
          seen.add(summary.workflow_id);
          cases.push(summary);
        }
        token = res.nextPageToken?.length ? res.nextPageToken : undefined;
      } while (token && cases.length < q.limit && pages < MAX_PAGES_PER_CALL);
      return {
        cases,
        next_cursor: token ? cursors.encode(token) : null,
      };
    },
    async get(workflowId, runId) {
      try {
        return await temporal.call((client: Client) =>
          client.workflow.getHandle(workflowId, runId).query(caseQuery),
        );
      } catch (err) {
        if (err instanceof TemporalUnavailable) throw err;
        if (isNotFound(err)) return undefined;
        if (couldNotAnswer(err)) {
          throw new TemporalUnavailable(`Temporal could not answer the case query`, { cause: err });
        }
        throw err;
      }
    },
  };
}

/** Without TEMPORAL_ADDRESS (an `api` alone, no embedded server) cases cannot be read. */
export function unavailableCases(reason: string): CasesPort {
  const fail = () => Promise.reject(new TemporalUnavailable(reason));
  return { list: fail, get: fail };
}

// ---- HTTP ----------------------------------------------------------------------------------------

const WORKFLOW_ID = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$/;

const ListQuery = z.strictObject({
  status: z.enum(['open', 'resolved']).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z
    .string()
    .max(4096)
    .regex(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'a cursor from a previous answer')
    .optional(),
});
const IdParams = z.object({
  workflow_id: z.string().regex(WORKFLOW_ID, 'a case workflow id (session-… or decision-…)'),
});
const DetailQuery = z.strictObject({
  run_id: z.uuid().optional(),
});

const CaseSummarySchema = z.object({
  workflow_id: z.string(),
  run_id: z.string(),
  status: z.enum(['open', 'escalated', 'resolved', 'closed', 'unknown']),
  execution_status: z.string(),
  started_at: z.string().nullable(),
  closed_at: z.string().nullable(),
});
const CaseListSchema = z.object({
  cases: z.array(CaseSummarySchema),
  next_cursor: z.string().nullable(),
});
const CaseDetailSchema = z.object({
  workflow_id: z.string(),
  status: z.enum(['open', 'escalated', 'resolved', 'closed']),
  opened_by: z.string().nullable(),
  opened_at: z.string().nullable(),
  decisions: z.array(
    z.looseObject({
      decision_id: z.string(),
      decision: z.string(),
      context: z.string(),
      ruleset_id: z.string().nullable(),
      occurred_at: z.string(),
      final: z.boolean().optional(),
      playbooks: z.array(z.string()),
    }),
  ),
  steps: z.array(
    z.looseObject({
      step: z.string(),
      status: z.string(),
      attempts: z.number(),
      result: z.unknown(),
      error: z.object({ type: z.string(), message: z.string() }).optional(),
      started_at: z.string(),
      finished_at: z.string().optional(),
    }),
  ),
  tickets: z.array(
    z.looseObject({
      step: z.string(),
      integration: z.string(),
      action_id: z.string(),
      ref: z.string().nullable(),
      status: z.number(),
    }),
  ),
  playbooks: z.array(z.object({ name: z.string(), version: z.number() })),
  resolution: z
    .looseObject({
      resolution: z.string(),
      decision_id: z.string().nullable(),
      note: z.string().nullable(),
      resolved_at: z.string(),
      by: z.string(),
    })
    .nullable(),
  events: z.array(z.looseObject({ id: z.string(), type: z.string() })),
  runs: z.number(),
});

export function caseRoutes(deps: { cases: CasesPort }) {
  return (app: FastifyInstance, verify: TokenVerifier) => {
    const read = requireScope(verify, 'cases:read');
    const tags = ['cases'];

    app.get(
      '/api/cases',
      {
        onRequest: read,
        schema: { tags, querystring: ListQuery, response: { 200: CaseListSchema } },
      },
      async (req) => {
        const q = req.query as z.infer<typeof ListQuery>;
        return deps.cases.list({ status: q.status, limit: q.limit, cursor: q.cursor });
      },
    );

    app.get(
      '/api/cases/:workflow_id',
      {
        onRequest: read,
        schema: {
          tags,
          params: IdParams,
          querystring: DetailQuery,
          response: { 200: CaseDetailSchema },
        },
      },
      async (req) => {
        const { workflow_id } = req.params as z.infer<typeof IdParams>;
        const { run_id } = req.query as z.infer<typeof DetailQuery>;
        const view = await deps.cases.get(workflow_id, run_id);
        if (!view) throw notFound('case', workflow_id);
        return view;
      },
    );
  };
}
