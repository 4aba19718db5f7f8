// CONTRACT §2 blacklist: entries by field path and value, with TTL and provenance.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { BlacklistRepo } from '../../decisions/ports.ts';
import { looksLikePan } from '../../decisions/request.ts';
import { parsePath } from '../../rulesets/jsonpath.ts';
import { requireScope, type TokenVerifier } from '../auth.ts';
import { ApiError, notFound } from '../errors.ts';

const MAX_TTL_SECONDS = 10 * 365 * 24 * 3600;

const AddBody = z
  .object({
    field_path: z.string().min(2).max(256),
    value: z.union([z.string().min(1).max(512), z.number()]).transform(String),
    ttl_seconds: z.number().int().min(1).max(MAX_TTL_SECONDS).optional(),
  })
  .strict();
const IdParams = z.object({
  id: z.string().regex(/^bl_[a-z0-9]{1,40}$/, 'a blacklist entry id (bl_…)'),
});
const ListQuery = z.object({ field_path: z.string().max(256).optional() });

export function blacklistRoutes(repo: BlacklistRepo, onChange?: () => Promise<void>) {
  return (app: FastifyInstance, verify: TokenVerifier) => {
    const read = requireScope(verify, 'admin:blacklist:read');
    const write = requireScope(verify, 'admin:blacklist:write');
    const tags = ['blacklist'];

    app.post(
      '/api/admin/blacklist',
      { onRequest: write, schema: { tags, body: AddBody } },
      async (req, reply) => {
        const body = req.body as z.infer<typeof AddBody>;
        const path = parsePath(body.field_path);
        if (!path.ok) {
          throw new ApiError('invalid_request', `field_path: ${path.message}`, {
            issues: [{ path: 'field_path', message: path.message }],
          });
        }
        if (path.canonical === '$.credential_fingerprint' && looksLikePan(body.value)) {
          // No fingerprint is ever a card number (decisions refuse one), so such an entry
          // could never match; it would only keep a PAN in clear.
          const message =
            'looks like a card number: blacklist its crd_ fingerprint (from a decision) instead';
          throw new ApiError('invalid_request', `value: ${message}`, {
            issues: [{ path: 'value', message }],
          });
        }
        const entry = await repo.add({
          field_path: body.field_path,
          value: body.value,
          ttl_seconds: body.ttl_seconds,
        });
        await onChange?.();
        return reply.code(201).send(entry);
      },
    );

    app.get(
      '/api/admin/blacklist',
      { onRequest: read, schema: { tags, querystring: ListQuery } },
      async (req) => {
        const q = req.query as z.infer<typeof ListQuery>;
        return { entries: await repo.list(q.field_path ? { field_path: q.field_path } : {}) };
      },
    );

    app.get(
      '/api/admin/blacklist/:id',
      { onRequest: read, schema: { tags, params: IdParams } },
      async (req) => {
        const { id } = req.params as z.infer<typeof IdParams>;
        const entry = await repo.get(id);
        if (!entry) throw notFound('blacklist entry', id);
        return entry;
      },
    );

    app.delete(
      '/api/admin/blacklist/:id',
      { onRequest: write, schema: { tags, params: IdParams } },
      async (req, reply) => {
        const { id } = req.params as z.infer<typeof IdParams>;
        if (!(await repo.delete(id))) throw notFound('blacklist entry', id);
        await onChange?.();
        return reply.code(204).send();
      },
    );
  };
}
