// CONTRACT §2: the ruleset lifecycle. Documents are validated by the engine's own parser (the
// one the compiler trusts), so what is stored always compiles; a bad document changes nothing.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { RulesetRepo, RulesetRow } from '../../decisions/ports.ts';
import { simulate, SimulateRequest, type SimulateDeps } from '../../decisions/simulate.ts';
import { parseRuleset } from '../../rulesets/schema.ts';
import { requireScope, type TokenVerifier } from '../auth.ts';
import { ApiError, notFound } from '../errors.ts';

export interface RulesetRouteDeps {
  repo: RulesetRepo;
  edition: 'core' | 'connect';
  /** Checks that backend rules name registered integrations/backends; returns issues. */
  checkReferences?: (doc: unknown) => Promise<{ path: string; message: string }[]>;
  /** Called after an activation or rollback so this instance swaps at once. */
  onActivated?: () => Promise<void>;
  simulate: SimulateDeps;
}

const IdParams = z.object({ id: z.string().regex(/^rs_[a-z0-9]{1,40}$/, 'a ruleset id (rs_…)') });
const ListQuery = z.object({ context: z.string().max(64).optional() });

function view(row: RulesetRow) {
  const doc = row.document as Record<string, unknown>;
  return {
    id: row.id,
    name: row.name,
    context: row.context,
    status: row.status,
    version: row.version,
    created_at: row.created_at,
    activated_at: row.activated_at,
    ...doc,
  };
}

export function rulesetRoutes(deps: RulesetRouteDeps) {
  /** `references`: also check backend rules against the registered integrations (/validate). */
  async function validate(body: unknown, references = false) {
    const parsed = parseRuleset(body, { edition: deps.edition });
    if (!parsed.ok) {
      const { error, issues, ...rest } = parsed;
      throw new ApiError(error, issues.map((i) => `${i.path}: ${i.message}`).join('; '), {
        issues,
        ...rest,
      });
    }
    // Not at create or edit: a draft may name an integration registered later.
    const refIssues =
      references && deps.checkReferences ? await deps.checkReferences(parsed.value) : [];
    if (refIssues.length > 0) {
      throw new ApiError(
        'invalid_ruleset',
        refIssues.map((i) => `${i.path}: ${i.message}`).join('; '),
        {
          issues: refIssues,
        },
      );
    }
    return parsed.value;
  }

  return (app: FastifyInstance, verify: TokenVerifier) => {
    const read = requireScope(verify, 'admin:rulesets:read');
    const write = requireScope(verify, 'admin:rulesets:write');
    const tags = ['rulesets'];

    app.post(
      '/api/admin/rulesets',
      { onRequest: write, schema: { tags, body: z.unknown() } },
      async (req, reply) => {
        const doc = await validate(req.body);
        const row = await deps.repo.create({ name: doc.name, context: doc.context, document: doc });
        return reply.code(201).send(view(row));
      },
    );

    app.get(
      '/api/admin/rulesets',
      { onRequest: read, schema: { tags, querystring: ListQuery } },
      async (req) => {
        const q = req.query as z.infer<typeof ListQuery>;
        const rows = await deps.repo.list(q.context ? { context: q.context } : {});
        return { rulesets: rows.map(view) };
      },
    );

    app.get(
      '/api/admin/rulesets/:id',
      { onRequest: read, schema: { tags, params: IdParams } },
      async (req) => {
        const { id } = req.params as z.infer<typeof IdParams>;
        const row = await deps.repo.get(id);
        if (!row) throw notFound('ruleset', id);
        return view(row);
      },
    );

    app.put(
      '/api/admin/rulesets/:id',
      { onRequest: write, schema: { tags, params: IdParams, body: z.unknown() } },
      async (req) => {
        const { id } = req.params as z.infer<typeof IdParams>;
        const existing = await deps.repo.get(id);
        if (!existing) throw notFound('ruleset', id);
        if (existing.status !== 'DRAFT') {
          throw new ApiError(
            'not_draft',
            `ruleset ${id} is ${existing.status}; only a DRAFT can be edited`,
          );
        }
        const doc = await validate(req.body);
        return view(
          await deps.repo.updateDraft(id, { name: doc.name, context: doc.context, document: doc }),
        );
      },
    );

    app.post(
      '/api/admin/rulesets/:id/validate',
      { onRequest: read, schema: { tags, params: IdParams } },
      async (req) => {
        const { id } = req.params as z.infer<typeof IdParams>;
        const row = await deps.repo.get(id);
        if (!row) throw notFound('ruleset', id);
        try {
          await validate(row.document, true);
          return { valid: true, issues: [] };
        } catch (err) {
          const issues = (err as ApiError).details?.issues ?? [
            { path: '', message: (err as Error).message },
          ];
          return { valid: false, issues };
        }
      },
    );

    for (const op of ['activate', 'rollback'] as const) {
      app.post(
        `/api/admin/rulesets/:id/${op}`,
        { onRequest: write, schema: { tags, params: IdParams } },
        async (req) => {
          const { id } = req.params as z.infer<typeof IdParams>;
          const row =
            op === 'activate' ? await deps.repo.activate(id) : await deps.repo.rollback(id);
          await deps.onActivated?.();
          return view(row);
        },
      );
    }

    app.post(
      '/api/admin/rulesets/:id/simulate',
      { onRequest: read, schema: { tags, params: IdParams, body: SimulateRequest } },
      async (req) => {
        const { id } = req.params as z.infer<typeof IdParams>;
        const row = await deps.repo.get(id);
        if (!row) throw notFound('ruleset', id);
        return simulate(deps.simulate, row, req.body as SimulateRequest);
      },
    );
  };
}
