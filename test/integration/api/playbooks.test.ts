// CONTRACT §4 playbook API on the real runtime (embedded store): scopes before validation,
// invalid documents store nothing, every put is a new version, unknown integrations warn.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, auth, injectJson, startRuntime, type Method } from './helpers.ts';

type Rt = Awaited<ReturnType<typeof startRuntime>>;
let rt: Rt;
let readOnly: string;
let writeOnly: string;
let other: string;

const call = (method: Method, url: string, body?: unknown, token: string | null = ADMIN) =>
  injectJson(rt, method, url, body, token);

const PLAYBOOK = {
  name: 'review-default',
  on: { decision: ['REVIEW'], contexts: ['checkout'] },
  steps: [
    { enrich: { integration: 'ipcheck', backend_id: 'ip' } },
    { ticket: { integration: 'jira', action_id: 'create-issue' } },
    { wait_for_resolution: { timeout: '72h', on_timeout: 'escalate' } },
  ],
  on_resolution: {
    reject: [{ blacklist_add: { field_path: '$.credential_fingerprint', ttl_seconds: 3600 } }],
  },
};

async function token(scopes: string[]): Promise<string> {
  const created = await rt.app.inject({
    method: 'POST',
    url: '/api/admin/tokens',
    headers: auth(),
    payload: { name: `t-${scopes.join('-')}`, scopes },
  });
  expect(created.statusCode).toBe(201);
  return (JSON.parse(created.body) as { token: string }).token;
}

beforeAll(async () => {
  rt = await startRuntime();
  readOnly = await token(['admin:playbooks:read']);
  writeOnly = await token(['admin:playbooks:write']);
  other = await token(['admin:rulesets:write', 'admin:rulesets:read', 'cases:read']);
});
afterAll(async () => {
  await rt?.close();
});

describe('scopes', () => {
  const invalidBody = { name: 'x', steps: 'not an array' };
  it.each([
    ['PUT', '/api/admin/playbooks/scoped', PLAYBOOK, 'admin:playbooks:write'],
    ['PUT', '/api/admin/playbooks/scoped', invalidBody, 'admin:playbooks:write'],
    ['PUT', '/api/admin/playbooks/bad%20name!', invalidBody, 'admin:playbooks:write'],
    ['GET', '/api/admin/playbooks', undefined, 'admin:playbooks:read'],
    ['GET', '/api/admin/playbooks/scoped', undefined, 'admin:playbooks:read'],
    ['GET', '/api/admin/playbooks/scoped?version=zero', undefined, 'admin:playbooks:read'],
    ['DELETE', '/api/admin/playbooks/scoped', undefined, 'admin:playbooks:write'],
  ] as const)('%s %s: 401 without a token, 403 without %s', async (method, url, body, scope) => {
    const none = await call(method, url, body, null);
    expect(none.status).toBe(401);
    expect(none.body.error).toBe('unauthorized');
    const bad = await call(method, url, body, 'vgl_not_a_real_token_00000000000000000');
    expect(bad.status).toBe(401);
    const wrongScopeToken = scope === 'admin:playbooks:write' ? readOnly : writeOnly;
    for (const t of [other, wrongScopeToken]) {
      const r = await call(method, url, body, t);
      expect(r.status).toBe(403);
      expect(r.body).toMatchObject({ error: 'forbidden', scope });
      // The body was never looked at: no validation detail leaks to a caller without the scope.
      expect(r.body.issues).toBeUndefined();
    }
    expect((await call('GET', '/api/admin/playbooks/scoped')).status).toBe(404);
  });

  it('a read token reads, a write token writes', async () => {
    const put = await call('PUT', '/api/admin/playbooks/scope-ok', PLAYBOOK, writeOnly);
    expect(put.status).toBe(400); // the body's name differs from the URL's
    const put2 = await call(
      'PUT',
      '/api/admin/playbooks/scope-ok',
      { ...PLAYBOOK, name: undefined },
      writeOnly,
    );
    expect(put2.status).toBe(201);
    expect((await call('GET', '/api/admin/playbooks/scope-ok', undefined, readOnly)).status).toBe(
      200,
    );
    expect(
      (await call('DELETE', '/api/admin/playbooks/scope-ok', undefined, writeOnly)).status,
    ).toBe(204);
  });
});

describe('validation', () => {
  it.each([
    [
      'a ticket without action_id',
      { ...PLAYBOOK, steps: [{ ticket: { integration: 'jira' } }] },
      'steps[0].ticket.action_id',
    ],
    [
      'an unknown step kind',
      { ...PLAYBOOK, steps: [{ launch: { integration: 'x' } }] },
      'steps[0].launch',
    ],
    [
      'a bad duration',
      { ...PLAYBOOK, steps: [{ wait_for_resolution: { timeout: '3 days' } }] },
      'steps[0].wait_for_resolution.timeout',
    ],
    [
      'a velocity condition',
      {
        ...PLAYBOOK,
        steps: [
          {
            alert: {
              integration: 'slack',
              action_id: 'post',
              condition: { velocity: { field: '$.device.ip', window: '1h', gt: 1 } },
            },
          },
        ],
      },
      'steps[0].alert.condition.velocity',
    ],
    ['a decision ALLOW', { ...PLAYBOOK, on: { decision: ['ALLOW'] } }, 'on.decision[0]'],
    ['a name that differs from the URL', { ...PLAYBOOK, name: 'other' }, 'name'],
    ['an unknown top-level field', { ...PLAYBOOK, owner: 'me' }, 'owner'],
    [
      'an unknown field in a step',
      { ...PLAYBOOK, steps: [{ ticket: { integration: 'jira', action_id: 'x', bogus: 1 } }] },
      'steps[0].ticket.bogus',
    ],
  ])('%s: 400 invalid_playbook with its path, nothing stored', async (_what, doc, path) => {
    const r = await call('PUT', '/api/admin/playbooks/review-default', doc);
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_playbook');
    expect(typeof r.body.message).toBe('string');
    expect(r.body.issues.map((i: { path: string }) => i.path)).toContain(path);
    expect((await call('GET', '/api/admin/playbooks/review-default')).status).toBe(404);
    expect(
      (await call('GET', '/api/admin/playbooks')).body.playbooks.map(
        (p: { name: string }) => p.name,
      ),
    ).not.toContain('review-default');
  });

  it('a body that is not an object is refused', async () => {
    const r = await call('PUT', '/api/admin/playbooks/arr', [PLAYBOOK]);
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_playbook');
  });

  it('an invalid name in the URL is refused before anything else', async () => {
    const r = await call('PUT', '/api/admin/playbooks/-bad', PLAYBOOK);
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_request');
  });
});

describe('versions', () => {
  it('create is 201, replace is 200, every put is a new version, old versions stay readable', async () => {
    const first = await call('PUT', '/api/admin/playbooks/versioned', {
      ...PLAYBOOK,
      name: 'versioned',
    });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ name: 'versioned', version: 1 });
    expect(first.body.document.steps).toHaveLength(3);
    expect(Date.parse(first.body.updated_at)).not.toBeNaN();

    const changed = { ...PLAYBOOK, name: 'versioned', steps: PLAYBOOK.steps.slice(1) };
    const second = await call('PUT', '/api/admin/playbooks/versioned', changed);
    expect(second.status).toBe(200);
    expect(second.body.version).toBe(2);
    const third = await call('PUT', '/api/admin/playbooks/versioned', changed);
    expect(third.body.version).toBe(3);

    const current = await call('GET', '/api/admin/playbooks/versioned');
    expect(current.body).toMatchObject({ name: 'versioned', version: 3 });
    expect(current.body.document.steps).toHaveLength(2);
    const v1 = await call('GET', '/api/admin/playbooks/versioned?version=1');
    expect(v1.body.version).toBe(1);
    expect(v1.body.document.steps).toHaveLength(3);
    expect((await call('GET', '/api/admin/playbooks/versioned?version=9')).status).toBe(404);

    const list = await call('GET', '/api/admin/playbooks');
    expect(list.status).toBe(200);
    const row = list.body.playbooks.find((p: { name: string }) => p.name === 'versioned');
    expect(row).toMatchObject({ version: 3 });

    // The defaults the schema fills are what is stored (on_timeout defaults to escalate).
    const noTimeout = await call('PUT', '/api/admin/playbooks/defaults', {
      on: { decision: ['BLOCK'] },
      steps: [{ wait_for_resolution: { timeout: '1h' } }],
    });
    expect(noTimeout.status).toBe(201);
    expect(noTimeout.body.document).toMatchObject({
      name: 'defaults',
      steps: [{ wait_for_resolution: { timeout: '1h', on_timeout: 'escalate' } }],
    });
  });

  it('delete is 204 then 404; a put after a delete creates again and continues the numbering', async () => {
    await call('PUT', '/api/admin/playbooks/gone', { ...PLAYBOOK, name: 'gone' });
    expect((await call('DELETE', '/api/admin/playbooks/gone')).status).toBe(204);
    const again = await call('DELETE', '/api/admin/playbooks/gone');
    expect(again.status).toBe(404);
    expect(again.body.error).toBe('not_found');
    expect((await call('GET', '/api/admin/playbooks/gone')).status).toBe(404);
    expect(
      (await call('GET', '/api/admin/playbooks')).body.playbooks.map(
        (p: { name: string }) => p.name,
      ),
    ).not.toContain('gone');
    const back = await call('PUT', '/api/admin/playbooks/gone', { ...PLAYBOOK, name: 'gone' });
    expect(back.status).toBe(201);
    expect(back.body.version).toBe(2);
    expect((await call('DELETE', '/api/admin/playbooks/never-was')).status).toBe(404);
  });
});

describe('integration references', () => {
  it('steps naming unregistered integrations or ids are accepted with warnings', async () => {
    const r = await call('PUT', '/api/admin/playbooks/warned', { ...PLAYBOOK, name: 'warned' });
    expect(r.status).toBe(201);
    const paths = r.body.warnings.map((w: { path: string }) => w.path);
    expect(paths).toEqual(['steps[0].enrich.integration', 'steps[1].ticket.integration']);

    await rt.store.putIntegration({
      slug: 'jira',
      kind: 'jira',
      document: { slug: 'jira', actions: [{ action_id: 'create-issue' }], backends: [] },
    });
    await rt.store.putIntegration({
      slug: 'ipcheck',
      kind: 'http',
      document: { slug: 'ipcheck', backends: [{ backend_id: 'score' }] },
    });
    const again = await call('PUT', '/api/admin/playbooks/warned', { ...PLAYBOOK, name: 'warned' });
    expect(again.status).toBe(200);
    expect(again.body.warnings).toEqual([
      { path: 'steps[0].enrich.backend_id', message: expect.stringContaining('no backend ip') },
    ]);
  });

  it('a step naming a user workflow no worker has is accepted with a warning', async () => {
    const doc = (workflow: string) => ({
      on: { decision: ['REVIEW'] },
      steps: [{ workflow }, { wait_for_resolution: { timeout: '1h', on_timeout: 'escalate' } }],
    });
    const typo = await call('PUT', '/api/admin/playbooks/wf', doc('holdHighValu'));
    expect(typo.status).toBe(201);
    expect(typo.body.warnings).toEqual([
      { path: 'steps[0].workflow', message: expect.stringContaining('holdHighValu') },
    ]);
    const known = await call('PUT', '/api/admin/playbooks/wf', doc('holdHighValue'));
    expect(known.body.warnings).toEqual([]);
  });
});

it('the OpenAPI document describes the playbook and case routes', async () => {
  const res = await rt.app.inject({ method: 'GET', url: '/openapi.json' });
  expect(res.statusCode).toBe(200);
  const paths = Object.keys((JSON.parse(res.body) as { paths: Record<string, unknown> }).paths);
  expect(paths).toEqual(
    expect.arrayContaining([
      '/api/admin/playbooks',
      '/api/admin/playbooks/{name}',
      '/api/cases',
      '/api/cases/{workflow_id}',
    ]),
  );
});
