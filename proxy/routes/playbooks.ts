// CONTRACT §4: PUT/GET/DELETE /api/admin/playbooks[/{name}]. Documents are validated by the
// schema the worker re-checks at case start (rulesets/playbook.ts), so what is stored always
// loads; a bad document stores nothing. Every put is a new version: a case keeps the version it
// loaded when it opened, later cases take the newest.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  parsePlaybook,
  stepKind,
  type Playbook,
  type PlaybookIssue,
  type PlaybookStep,
} from '../../rulesets/playbook.ts';
import { requireScope, type TokenVerifier } from '../auth.ts';
import { ApiError, notFound } from '../errors.ts';

export interface PlaybookRecord {
  name: string;
  version: number;
  document: unknown;
  updated_at: string;
}

export interface PlaybookRepo {
  put(input: { name: string; document: Playbook }): Promise<PlaybookRecord>;
  get(name: string, version?: number): Promise<PlaybookRecord | undefined>;
  list(): Promise<PlaybookRecord[]>;
  delete(name: string): Promise<boolean>;
}

/** What a playbook step may name: an integration's backends and actions, by id. */
export interface IntegrationRef {
  backends?: readonly { backend_id: string }[];
  actions?: readonly { action_id: string }[];
}

export interface PlaybookRouteDeps {
  repo: PlaybookRepo;
  /**
   * Registered integrations, when this build has them. A step naming one that is missing is
   * accepted with a warning: integrations may well be registered after the playbook.
   */
  integrations?: { get(slug: string): Promise<IntegrationRef | undefined> };
  /**
   * The user workflows the workers can run (workflows/user/index.ts exports). A `workflow` step
   * naming another is accepted with a warning: the case would fail that step.
   */
  userWorkflows?: () => Promise<readonly string[]>;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const NameParams = z.object({
  name: z.string().regex(NAME, 'letters, digits, dot, dash or underscore (at most 100)'),
});
const GetQuery = z.strictObject({ version: z.coerce.number().int().min(1).optional() });

const Issue = z.object({ path: z.string(), message: z.string() });
const PlaybookView = z.object({
  name: z.string(),
  version: z.number().int(),
  document: z.unknown(),
  updated_at: z.string(),
});
const PutAnswer = PlaybookView.extend({ warnings: z.array(Issue) });
const ListAnswer = z.object({ playbooks: z.array(PlaybookView) });

function invalid(issues: PlaybookIssue[]): ApiError {
  return new ApiError('invalid_playbook', issues.map((i) => `${i.path}: ${i.message}`).join('; '), {
    issues,
  });
}

/** Every step of the document with its issue path prefix (`steps[1].ticket`). */
function stepsOf(pb: Playbook): { path: string; step: PlaybookStep }[] {
  const out: { path: string; step: PlaybookStep }[] = [];
  const add = (prefix: string, steps: PlaybookStep[] | undefined) =>
    steps?.forEach((step, i) => out.push({ path: `${prefix}[${i}].${stepKind(step)}`, step }));
  add('steps', pb.steps);
  add('on_resolution.reject', pb.on_resolution?.reject);
  add('on_resolution.accept', pb.on_resolution?.accept);
  add('after_decision', pb.after_decision);
  return out;
}

async function referenceWarnings(
  pb: Playbook,
  integrations: NonNullable<PlaybookRouteDeps['integrations']>,
): Promise<PlaybookIssue[]> {
  const warnings: PlaybookIssue[] = [];
  const cache = new Map<string, Promise<IntegrationRef | undefined>>();
  for (const { path, step } of stepsOf(pb)) {
    let ref: { integration: string; id: string; field: 'backend_id' | 'action_id' } | undefined;
    if ('enrich' in step) {
      ref = {
        integration: step.enrich.integration,
        id: step.enrich.backend_id,
        field: 'backend_id',
      };
    } else {
      const body = 'ticket' in step ? step.ticket : 'alert' in step ? step.alert : undefined;
      const call = body ?? ('action' in step ? step.action : undefined);
      if (call) ref = { integration: call.integration, id: call.action_id, field: 'action_id' };
    }
    if (!ref) continue;
    let pending = cache.get(ref.integration);
    if (!pending) {
      pending = integrations.get(ref.integration);
      cache.set(ref.integration, pending);
    }
    const integration = await pending;
    if (!integration) {
      warnings.push({
        path: `${path}.integration`,
        message: `integration ${ref.integration} is not registered (yet): the step fails until it is`,
      });
      continue;
    }
    const known =
      ref.field === 'backend_id'
        ? (integration.backends ?? []).some((b) => b.backend_id === ref.id)
        : (integration.actions ?? []).some((a) => a.action_id === ref.id);
    if (!known) {
      warnings.push({
        path: `${path}.${ref.field}`,
        message: `integration ${ref.integration} has no ${ref.field === 'backend_id' ? 'backend' : 'action'} ${ref.id}`,
      });
    }
  }
  return warnings;
}

function view(row: PlaybookRecord): z.infer<typeof PlaybookView> {
  return {
    name: row.name,
    version: row.version,
    document: row.document,
    updated_at: row.updated_at,
  };
}

export function playbookRoutes(deps: PlaybookRouteDeps) {
  return (app: FastifyInstance, verify: TokenVerifier) => {
    const read = requireScope(verify, 'admin:playbooks:read');
    const write = requireScope(verify, 'admin:playbooks:write');
    const tags = ['playbooks'];

    app.put(
      '/api/admin/playbooks/:name',
      {
        onRequest: write,
        schema: {
          tags,
          params: NameParams,
          // The document is checked by parsePlaybook below: its issues carry document paths
          // (`steps[2].ticket.action_id`) and the contract's `invalid_playbook` code.
          body: z.unknown(),
          response: { 200: PutAnswer, 201: PutAnswer },
        },
      },
      async (req, reply) => {
        const { name } = req.params as z.infer<typeof NameParams>;
        const body = req.body;
        if (body === null || typeof body !== 'object' || Array.isArray(body)) {
          throw invalid([{ path: '', message: 'a playbook document (a JSON object)' }]);
        }
        const given = (body as { name?: unknown }).name;
        if (given !== undefined && given !== name) {
          throw invalid([
            { path: 'name', message: `must equal the name in the URL (${name}) or be left out` },
          ]);
        }
        const parsed = parsePlaybook({ ...body, name });
        if (!parsed.ok) throw invalid(parsed.error.issues);
        const warnings = deps.integrations
          ? await referenceWarnings(parsed.playbook, deps.integrations)
          : [];
        const named = stepsOf(parsed.playbook).filter(({ step }) => 'workflow' in step);
        if (named.length > 0 && deps.userWorkflows) {
          const known = await deps.userWorkflows();
          for (const { path, step } of named) {
            const wf = (step as { workflow: string }).workflow;
            if (!known.includes(wf)) {
              warnings.push({
                path,
                message: `no user workflow ${wf} is exported from workflows/user/index.ts: the step fails`,
              });
            }
          }
        }
        const existed = (await deps.repo.get(name)) !== undefined;
        const row = await deps.repo.put({ name, document: parsed.playbook });
        return reply.code(existed ? 200 : 201).send({ ...view(row), warnings });
      },
    );

    app.get(
      '/api/admin/playbooks',
      { onRequest: read, schema: { tags, response: { 200: ListAnswer } } },
      async () => ({ playbooks: (await deps.repo.list()).map(view) }),
    );

    app.get(
      '/api/admin/playbooks/:name',
      {
        onRequest: read,
        schema: {
          tags,
          params: NameParams,
          querystring: GetQuery,
          response: { 200: PlaybookView },
        },
      },
      async (req) => {
        const { name } = req.params as z.infer<typeof NameParams>;
        const { version } = req.query as z.infer<typeof GetQuery>;
        const row = await deps.repo.get(name, version);
        if (!row) throw notFound('playbook', version ? `${name} version ${version}` : name);
        return view(row);
      },
    );

    app.delete(
      '/api/admin/playbooks/:name',
      { onRequest: write, schema: { tags, params: NameParams } },
      async (req, reply) => {
        const { name } = req.params as z.infer<typeof NameParams>;
        if (!(await deps.repo.delete(name))) throw notFound('playbook', name);
        return reply.code(204).send();
      },
    );
  };
}
