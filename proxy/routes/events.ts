// CONTRACT §2 lifecycle events: POST /api/events.
import type { FastifyInstance } from 'fastify';
import {
  LifecycleEventRequest,
  recordLifecycleEvent,
  type LifecycleDeps,
} from '../../decisions/lifecycle.ts';
import { requireScope, type TokenVerifier } from '../auth.ts';

export function eventRoutes(deps: LifecycleDeps) {
  return (app: FastifyInstance, verify: TokenVerifier) => {
    app.post(
      '/api/events',
      {
        onRequest: requireScope(verify, 'events:write'),
        schema: { tags: ['events'], body: LifecycleEventRequest },
      },
      async (req, reply) => {
        const result = await recordLifecycleEvent(deps, req.body as LifecycleEventRequest);
        return reply.code(201).send(result);
      },
    );
  };
}
