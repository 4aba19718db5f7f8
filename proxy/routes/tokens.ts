// CONTRACT §7: API tokens. The plaintext is shown once, at creation; only its hash is stored.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { SCOPES, requireScope, type TokenVerifier } from '../auth.ts';
import { ApiError, notFound } from '../errors.ts';

export interface TokenRepo {
  create(t: {
    name: string;
    scopes: string[];
  }): Promise<{ id: string; name: string; scopes: string[]; token: string }>;
  revoke(id: string): Promise<boolean>;
  /** The token's scopes (undefined if unknown), to hold a revocation to the same rule as a grant. */
  scopesOf?(id: string): Promise<string[] | undefined>;
}

const CreateBody = z
  .object({
    name: z.string().min(1).max(128),
    scopes: z
      .array(z.enum(SCOPES))
      .min(1)
      .max(SCOPES.length)
      .refine((s) => new Set(s).size === s.length, 'scopes must not repeat'),
  })
  .strict();
const IdParams = z.object({ id: z.string().regex(/^tok_[a-z0-9]{1,40}$/, 'a token id (tok_…)') });

export function tokenRoutes(repo: TokenRepo, onRevoked?: (id: string) => void) {
  return (app: FastifyInstance, verify: TokenVerifier) => {
    const write = requireScope(verify, 'admin:tokens:write');
    app.post(
      '/api/admin/tokens',
      { onRequest: write, schema: { tags: ['tokens'], body: CreateBody } },
      async (req, reply) => {
        const body = req.body as z.infer<typeof CreateBody>;
        // A token grants at most what it holds: else `admin:tokens:write` alone would mint
        // itself every other scope.
        const held = req.principal?.scopes ?? [];
        const beyond = body.scopes.filter((sc) => !held.includes(sc));
        if (beyond.length > 0) {
          throw new ApiError(
            'forbidden',
            `a token can only grant scopes it holds itself; this one lacks ${beyond.join(', ')}`,
            { scopes: beyond },
          );
        }
        return reply.code(201).send(await repo.create({ name: body.name, scopes: body.scopes }));
      },
    );
    app.delete(
      '/api/admin/tokens/:id',
      { onRequest: write, schema: { tags: ['tokens'], params: IdParams } },
      async (req, reply) => {
        const { id } = req.params as z.infer<typeof IdParams>;
        // As for a grant: a token revokes only tokens whose scopes it holds all of, or a
        // token with admin:tokens:write alone could lock the admin out.
        const target = await repo.scopesOf?.(id);
        const held = req.principal?.scopes ?? [];
        const beyond = (target ?? []).filter((sc) => !held.includes(sc));
        if (beyond.length > 0) {
          throw new ApiError(
            'forbidden',
            `a token can only revoke tokens whose scopes it holds; this one lacks ${beyond.join(', ')}`,
            { scopes: beyond },
          );
        }
        if (!(await repo.revoke(id))) throw notFound('token', id);
        onRevoked?.(id);
        return reply.code(204).send();
      },
    );
  };
}
