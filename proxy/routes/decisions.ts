// CONTRACT §1: POST /api/decisions, GET /api/decisions/{id}, POST /api/decisions/{id}/resolve.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { decide, type DecideDeps } from '../../decisions/decide.ts';
import type { DecisionLogPort } from '../../decisions/ports.ts';
import { issuesOf, parseDecisionRequest } from '../../decisions/request.ts';
import { requireScope, type TokenVerifier } from '../auth.ts';
import { ApiError, notFound } from '../errors.ts';
import { writeBurst } from '../flush.ts';

export interface ResolvePort {
  /** Resolves once: 'already_resolved' on a second call. Signals the case workflow if any. */
  resolve(
    id: string,
    resolution: 'accept' | 'reject',
    note: string | undefined,
  ): Promise<'ok' | 'already_resolved' | 'not_found'>;
}

export interface DecisionRouteDeps {
  decide: DecideDeps;
  log: DecisionLogPort;
  resolver: ResolvePort;
}

const IdParams = z.object({
  id: z.string().regex(/^dec_[a-z0-9]{1,40}$/, 'a decision id (dec_…)'),
});
const DecideQuery = z.object({ dry_run: z.enum(['true', 'false']).optional() });
const ResolveBody = z.object({
  resolution: z.enum(['accept', 'reject']),
  note: z.string().max(4_000).optional(),
});

export function decisionRoutes(deps: DecisionRouteDeps) {
  return (app: FastifyInstance, verify: TokenVerifier) => {
    app.post(
      '/api/decisions',
      {
        onRequest: requireScope(verify, 'decisions:write'),
        schema: {
          tags: ['decisions'],
          summary:
            'Evaluate the active ruleset of a context and answer ALLOW / REVIEW / BLOCK / PROVISIONAL',
          querystring: DecideQuery,
          body: z.unknown(),
        },
      },
      async (req) => {
        // Parsed here rather than by the route schema so issue paths read `credential.bin`.
        // No body at all is the empty context; a JSON `null` is not a context (400, as `[]` is).
        const parsed = parseDecisionRequest(req.body === undefined ? {} : req.body);
        if (!parsed.success) {
          const issues = issuesOf(parsed.error);
          throw new ApiError(
            'invalid_request',
            issues.map((i) => `${i.path}: ${i.message}`).join('; '),
            { issues },
          );
        }
        const query = req.query as z.infer<typeof DecideQuery>;
        const key = req.headers['idempotency-key'];
        if (key !== undefined && (typeof key !== 'string' || key.length < 1 || key.length > 200)) {
          // Ignored, a retry would be a second decision, counted twice.
          const message = 'one header of 1 to 200 characters';
          throw new ApiError('invalid_request', `Idempotency-Key: ${message}`, {
            issues: [{ path: 'Idempotency-Key', message }],
          });
        }
        const answer = await decide(deps.decide, parsed.data, {
          dryRun: query.dry_run === 'true',
          // Keys are the token's own: another client's key never finds this one's decision.
          idempotencyKey:
            key === undefined ? undefined : `${req.principal?.token_id ?? ''}\u0000${key}`,
          source: 'api',
        });
        await writeBurst();
        return answer;
      },
    );

    app.get(
      '/api/decisions/:id',
      {
        onRequest: requireScope(verify, 'decisions:read'),
        schema: { tags: ['decisions'], params: IdParams },
      },
      async (req) => {
        const { id } = req.params as z.infer<typeof IdParams>;
        const record = await deps.log.get(id);
        if (!record) throw notFound('decision', id);
        return record.response;
      },
    );

    app.post(
      '/api/decisions/:id/resolve',
      {
        onRequest: requireScope(verify, 'cases:write'),
        schema: { tags: ['decisions'], params: IdParams, body: ResolveBody },
      },
      async (req) => {
        const { id } = req.params as z.infer<typeof IdParams>;
        const body = req.body as z.infer<typeof ResolveBody>;
        const outcome = await deps.resolver.resolve(id, body.resolution, body.note);
        if (outcome === 'not_found') throw notFound('decision', id);
        if (outcome === 'already_resolved') {
          throw new ApiError('already_resolved', `decision ${id} is already resolved`);
        }
        return { id, resolution: body.resolution, status: 'resolved' };
      },
    );
  };
}
