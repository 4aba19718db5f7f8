// CONTRACT §3 Link integrations: register third-party systems once, name them in rulesets and
// playbooks. The document is validated, egress-checked and its secrets encrypted by
// integrations/ (the port below); this file maps that to HTTP. Secrets come back as "***".
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { requireScope, type TokenVerifier } from '../auth.ts';
import { ApiError, notFound } from '../errors.ts';

type Issue = { path: string; message: string };

/** What the routes need from integrations/ (createIntegrations' object satisfies it). */
export interface IntegrationsPort {
  put(
    slug: string,
    doc: unknown,
  ): Promise<
    | { ok: true; integration: unknown; created: boolean }
    | { ok: false; error: 'invalid_integration' | 'egress_refused'; issues: Issue[] }
  >;
  get(slug: string): Promise<unknown>;
  list(): Promise<unknown[]>;
  delete(slug: string): Promise<boolean>;
  test(slug: string): Promise<unknown>;
}

const SlugParams = z.object({
  slug: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'a lowercase slug: letters, digits, - and _ (≤ 63)'),
});
// The document's shape is integrations/'s to check (it knows the kinds); here only "an object".
const Document = z.record(z.string(), z.unknown());

export function integrationRoutes(port: IntegrationsPort) {
  return (app: FastifyInstance, verify: TokenVerifier) => {
    const read = requireScope(verify, 'admin:integrations:read');
    const write = requireScope(verify, 'admin:integrations:write');
    const tags = ['integrations'];

    app.put(
      '/api/admin/integrations/:slug',
      { onRequest: write, schema: { tags, params: SlugParams, body: Document } },
      async (req, reply) => {
        const { slug } = req.params as z.infer<typeof SlugParams>;
        const body = req.body as Record<string, unknown>;
        // The slug comes from the URL; a body that names another one is a mistake, not a rename.
        if (body.slug !== undefined && body.slug !== slug) {
          throw new ApiError(
            'invalid_integration',
            `slug: the body names '${JSON.stringify(body.slug)}'`,
            {
              issues: [{ path: 'slug', message: `must equal the URL's slug '${slug}'` }],
            },
          );
        }
        const r = await port.put(slug, { ...body, slug });
        if (!r.ok) {
          const first = r.issues[0];
          throw new ApiError(
            r.error,
            first ? `${first.path}: ${first.message}` : 'the integration document is invalid',
            { issues: r.issues },
          );
        }
        return reply.code(r.created ? 201 : 200).send(r.integration);
      },
    );

    app.get('/api/admin/integrations', { onRequest: read, schema: { tags } }, async () => ({
      integrations: await port.list(),
    }));

    app.get(
      '/api/admin/integrations/:slug',
      { onRequest: read, schema: { tags, params: SlugParams } },
      async (req) => {
        const { slug } = req.params as z.infer<typeof SlugParams>;
        const doc = await port.get(slug);
        if (doc === undefined) throw notFound('integration', slug);
        return doc;
      },
    );

    app.delete(
      '/api/admin/integrations/:slug',
      { onRequest: write, schema: { tags, params: SlugParams } },
      async (req, reply) => {
        const { slug } = req.params as z.infer<typeof SlugParams>;
        if (!(await port.delete(slug))) throw notFound('integration', slug);
        return reply.code(204).send();
      },
    );

    // Sends a request to the third party: a write, since some kinds create something (a test
    // message, a test event) on the other side.
    app.post(
      '/api/admin/integrations/:slug/test',
      { onRequest: write, schema: { tags, params: SlugParams } },
      async (req) => {
        const { slug } = req.params as z.infer<typeof SlugParams>;
        if ((await port.get(slug)) === undefined) throw notFound('integration', slug);
        return port.test(slug);
      },
    );
  };
}
