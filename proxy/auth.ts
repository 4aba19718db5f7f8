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

export interface CachedVerifierOptions {
  /**
   * How long a verified token is trusted without asking the store again, ms. This is the bound
   * on how late a revocation made by another process takes effect here; one made through this
   * process takes effect at once (invalidate). Default 1,000.
   */
  ttlMs?: number;
  /** Tokens remembered at most; the oldest is forgotten first. Default 1,000. */
  max?: number;
  /**
   * How long a token verified earlier is still taken while the store cannot be asked (it
   * fails), ms. A store outage then stops only what needs the store (a REVIEW's outbox, the
   * admin API), not every decision a second later. A token revoked by another process during
   * that time stays usable here until the store answers again or this runs out. 0: never.
   * Default 60,000.
   */
  staleIfErrorMs?: number;
  now?: () => number;
}

export interface CachedVerifier {
  verify: TokenVerifier;
  /** Forgets a revoked token (by id), or every token without an id. */
  invalidate(tokenId?: string): void;
}

/**
 * A store lookup per request (hash, query, JSON parse of the scopes) was ~5% of a decision's CPU
 * in a profile. Valid tokens are remembered for `ttlMs`; unknown or revoked ones are never
 * remembered, so a token created a moment ago (possibly by another process) works at once.
 * Concurrent first uses of a token share one lookup.
 */
/** After a store failure, how long stale entries answer before the store is asked again, ms. */
const STORE_RETRY_MS = 1_000;

export function cachedTokenVerifier(
  verify: TokenVerifier,
  opts: CachedVerifierOptions = {},
): CachedVerifier {
  const ttlMs = Math.max(0, opts.ttlMs ?? 1_000);
  const max = Math.max(1, opts.max ?? 1_000);
  const staleMs = Math.max(0, opts.staleIfErrorMs ?? 60_000);
  // When the store failed a moment ago, a stale entry answers at once: asking a store that is
  // unreachable (not refusing) would hold every request for its connect timeout.
  let failedAt = Number.NEGATIVE_INFINITY;
  const now = opts.now ?? Date.now;
  // Keyed by the presented token: hashing it again per request is the cost being saved. Entries
  // are fresh for ttlMs, then kept (bounded, like the request headers that carried them) only
  // as the answer to give while the store fails.
  const known = new Map<string, { principal: Principal; until: number; staleUntil: number }>();
  const inflight = new Map<string, Promise<Principal | undefined>>();
  // Bumped by invalidate: a lookup that started before a revocation must not be remembered.
  let epoch = 0;

  const lookup = (plaintext: string): Promise<Principal | undefined> => {
    const started = epoch;
    const p = verify(plaintext)
      .then(
        (principal) => {
          if (!principal) known.delete(plaintext);
          else if (started === epoch && ttlMs > 0) {
            known.delete(plaintext);
            if (known.size >= max) known.delete(known.keys().next().value!);
            const t = now();
            known.set(plaintext, { principal, until: t + ttlMs, staleUntil: t + staleMs });
          }
          return principal;
        },
        (err: unknown) => {
          failedAt = now();
          // The store failed, not the token: one verified lately still opens its scopes.
          const last = started === epoch ? known.get(plaintext) : undefined;
          if (last && last.staleUntil > now()) return last.principal;
          throw err;
        },
      )
      .finally(() => {
        if (inflight.get(plaintext) === p) inflight.delete(plaintext);
      });
    inflight.set(plaintext, p);
    return p;
  };

  return {
    verify: (plaintext) => {
      const hit = known.get(plaintext);
      const t = now();
      if (hit && (hit.until > t || (t - failedAt < STORE_RETRY_MS && hit.staleUntil > t))) {
        return Promise.resolve(hit.principal);
      }
      return inflight.get(plaintext) ?? lookup(plaintext);
    },
    invalidate: (tokenId) => {
      epoch++;
      inflight.clear();
      if (tokenId === undefined) {
        known.clear();
        return;
      }
      for (const [k, v] of known) if (v.principal.token_id === tokenId) known.delete(k);
    },
  };
}
