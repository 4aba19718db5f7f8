// Bearer tokens with scopes on every /api route. Tokens are stored hashed (storage/); the
// verifier is injected so the app can be built without a store in tests of the HTTP layer.
import type { FastifyRequest } from 'fastify';
import { ApiError } from './errors.ts';

export const SCOPES = [
  'decisions:write',
  'decisions:read',
  'events:write',
  'cases:read',
  'cases:write',
  'admin:rulesets:read',
  'admin:rulesets:write',
  'admin:blacklist:read',
  'admin:blacklist:write',
  'admin:integrations:read',
  'admin:integrations:write',
  'admin:playbooks:read',
  'admin:playbooks:write',
  'admin:tokens:write',
] as const;
export type Scope = (typeof SCOPES)[number];

export interface Principal {
  token_id: string;
  name: string;
  scopes: readonly string[];
}

export type TokenVerifier = (plaintext: string) => Promise<Principal | undefined>;

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

const BEARER = /^Bearer\s+(\S{1,512})$/i;

/** An onRequest hook (before body parsing and validation, so an unauthorized caller learns nothing about the body) that needs a valid token carrying `scope`: 401 without one, 403 without the scope. */
export function requireScope(verify: TokenVerifier, scope: Scope) {
  return async (req: FastifyRequest): Promise<void> => {
    const header = req.headers.authorization;
    const m = typeof header === 'string' ? BEARER.exec(header) : null;
    if (!m?.[1]) throw new ApiError('unauthorized', 'a bearer token is required');
    const principal = await verify(m[1]);
    if (!principal) throw new ApiError('unauthorized', 'the token is invalid or revoked');
    if (!principal.scopes.includes(scope)) {
      throw new ApiError('forbidden', `the token lacks the scope ${scope}`, { scope });
    }
    req.principal = principal;
  };
}
