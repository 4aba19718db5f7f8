import { describe, expect, it } from 'vitest';
import { parseIntegration } from '../../../integrations/schema.ts';

// CONTRACT §3, verbatim but for the token.
const CONTRACT_EXAMPLE = {
  slug: 'acme-risk',
  kind: 'http',
  base_url: 'https://risk.acme.example',
  auth: { type: 'bearer', token: 'tok_live_1' },
  backends: [
    {
      backend_id: 'score',
      method: 'POST',
      path: '/v2/score',
      required_fields: ['$.customer.email', '$.transaction.amount'],
      request: { email: '$.customer.email', amount: '$.transaction.amount' },
      response: {
        outcome_path: '$.verdict',
        map: { approve: 'ALLOW', review: 'REVIEW', decline: 'BLOCK' },
      },
      timeout_ms: 150,
      events: ['chargeback', 'fraud_report'],
    },
  ],
  actions: [
    {
      action_id: 'open-ticket',
      method: 'POST',
      path: '/tickets',
      body: { title: 'Review {{decision.id}}', amount: '$.transaction.amount' },
    },
  ],
};

const withBackend = (patch: Record<string, unknown>) => ({
  ...CONTRACT_EXAMPLE,
  backends: [{ ...CONTRACT_EXAMPLE.backends[0], ...patch }],
});

function issuesOf(doc: unknown, slug?: string) {
  const r = parseIntegration(doc, slug === undefined ? {} : { slug });
  if (r.ok) throw new Error('expected issues');
  return r.issues;
}

describe('integration document schema', () => {
  it('parses the CONTRACT §3 example and applies defaults', () => {
    const r = parseIntegration(CONTRACT_EXAMPLE, { slug: 'acme-risk' });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.pool).toEqual({ connections: 16 });
    expect(r.value.circuit).toEqual({ failure_threshold: 5, open_ms: 30_000 });
    expect(r.value.settings).toEqual({});
    expect(r.value.backends[0]!.timeout_ms).toBe(150);
    expect(r.value.actions[0]!.action_id).toBe('open-ticket');
  });

  it('takes the URL slug when the document has none, and refuses another one', () => {
    const { slug: _s, ...noSlug } = CONTRACT_EXAMPLE;
    const r = parseIntegration(noSlug, { slug: 'acme-risk' });
    expect(r.ok && r.value.slug).toBe('acme-risk');
    expect(issuesOf(CONTRACT_EXAMPLE, 'other')).toContainEqual({
      path: 'slug',
      message: "must equal the URL's slug 'other'",
    });
  });

  it('refuses paths into $.metadata, with the path of the leaf', () => {
    const issues = issuesOf(
      withBackend({ request: { email: '$.customer.email', ch: '$.metadata.channel' } }),
    );
    expect(issues).toEqual([
      { path: 'backends[0].request.ch', message: expect.stringMatching(/metadata/) },
    ]);
    expect(issuesOf(withBackend({ required_fields: ['$.metadata'] }))[0]!.path).toBe(
      'backends[0].required_fields[0]',
    );
    expect(issuesOf(withBackend({ request: { all: '$.*' } }))[0]!.path).toBe(
      'backends[0].request.all',
    );
  });

  it('refuses JSONPath filters and scripts at upload', () => {
    const issues = issuesOf(withBackend({ request: { x: '$.items[?(@.price > 1)]' } }));
    expect(issues[0]).toEqual({
      path: 'backends[0].request.x',
      message: expect.stringMatching(/filter/),
    });
    expect(
      issuesOf(withBackend({ response: { outcome_path: '$..verdict', map: { a: 'ALLOW' } } }))[0]!
        .path,
    ).toBe('backends[0].response.outcome_path');
  });

  it('checks map values, lifecycle event types and unique ids', () => {
    expect(
      issuesOf(withBackend({ response: { outcome_path: '$.v', map: { a: 'DENY' } } }))[0]!.path,
    ).toBe('backends[0].response.map.a');
    expect(issuesOf(withBackend({ events: ['refundd'] }))[0]!.path).toBe('backends[0].events[0]');
    const dup = {
      ...CONTRACT_EXAMPLE,
      backends: [CONTRACT_EXAMPLE.backends[0], CONTRACT_EXAMPLE.backends[0]],
    };
    expect(issuesOf(dup)).toContainEqual({
      path: 'backends[1].backend_id',
      message: "duplicate backend_id 'score'",
    });
    const dupA = {
      ...CONTRACT_EXAMPLE,
      actions: [CONTRACT_EXAMPLE.actions[0], CONTRACT_EXAMPLE.actions[0]],
    };
    expect(issuesOf(dupA)[0]!.path).toBe('actions[1].action_id');
  });

  it('clamps timeout_ms into its range', () => {
    const r = parseIntegration(withBackend({ timeout_ms: 10_000_000 }));
    expect(r.ok && r.value.backends[0]!.timeout_ms).toBe(30_000);
    expect(issuesOf(withBackend({ timeout_ms: -1 }))[0]!.path).toBe('backends[0].timeout_ms');
  });

  it('refuses base URLs with credentials, fragments, queries or other schemes', () => {
    for (const base_url of [
      'https://user:pw@risk.example',
      'https://risk.example/#x',
      'https://risk.example/?k=1',
      'ftp://risk.example',
      'not a url',
    ]) {
      expect(issuesOf({ ...CONTRACT_EXAMPLE, base_url })[0]!.path).toBe('base_url');
    }
  });

  it('validates auth by type and refuses reserved header names', () => {
    expect(issuesOf({ ...CONTRACT_EXAMPLE, auth: { type: 'bearer' } })).toEqual([
      { path: 'auth.token', message: 'required' },
    ]);
    // Sent in a header: a line break there failed every call as `connection`.
    for (const auth of [
      { type: 'bearer', token: 'tok\nX-Evil: 1' },
      { type: 'header', name: 'x-api-key', value: 'a\rb' },
      { type: 'bearer', token: 'caf\u00e9\u2603' },
    ]) {
      expect(issuesOf({ ...CONTRACT_EXAMPLE, auth })[0]?.path).toBe(
        auth.type === 'bearer' ? 'auth.token' : 'auth.value',
      );
    }
    expect(
      parseIntegration({ ...CONTRACT_EXAMPLE, auth: { type: 'bearer', token: 'a b\tc' } }).ok,
    ).toBe(true);
    expect(
      issuesOf({ ...CONTRACT_EXAMPLE, auth: { type: 'header', name: 'Host', value: 'x' } })[0]!
        .path,
    ).toBe('auth.name');
    // One reserved list for auth and action headers (they once differed: an auth header could
    // set Proxy-Authorization or Expect, an action header Idempotency-Key or Content-Type).
    for (const name of ['Proxy-Authorization', 'Expect', 'Idempotency-Key', 'Content-Type']) {
      expect(
        issuesOf({ ...CONTRACT_EXAMPLE, auth: { type: 'header', name, value: 'x' } })[0]?.path,
        name,
      ).toBe('auth.name');
      const action = { action_id: 'a', method: 'POST', path: '/x', headers: { [name]: 'x' } };
      expect(issuesOf({ ...CONTRACT_EXAMPLE, actions: [action] })[0]?.path, name).toMatch(
        /^actions\[0\]\.headers/,
      );
    }
    const h = parseIntegration({ ...CONTRACT_EXAMPLE, auth: { type: 'hmac', secret: 's' } });
    expect(h.ok && h.value.auth).toEqual({
      type: 'hmac',
      secret: 's',
      header: 'x-vigil-signature',
      algorithm: 'sha256',
    });
  });

  it("checks actions and settings with the kind's own schemas", () => {
    const badAction = {
      ...CONTRACT_EXAMPLE,
      actions: [{ action_id: 'a', method: 'POST', path: '/x', colour: 'red' }],
    };
    expect(issuesOf(badAction)).toContainEqual({
      path: 'actions[0].colour',
      message: "unknown key 'colour'",
    });
    expect(issuesOf({ ...CONTRACT_EXAMPLE, settings: { nope: 1 } })).toContainEqual({
      path: 'settings.nope',
      message: "unknown key 'nope'",
    });
    expect(issuesOf({ ...CONTRACT_EXAMPLE, kind: 'fax' })[0]!.path).toBe('kind');
    expect(issuesOf({ ...CONTRACT_EXAMPLE, surprise: true })).toContainEqual({
      path: 'surprise',
      message: "unknown key 'surprise'",
    });
  });

  it('bounds the pool and the circuit settings', () => {
    expect(issuesOf({ ...CONTRACT_EXAMPLE, pool: { connections: 10_000 } })[0]!.path).toBe(
      'pool.connections',
    );
    const r = parseIntegration({ ...CONTRACT_EXAMPLE, circuit: { failure_threshold: 2 } });
    expect(r.ok && r.value.circuit).toEqual({ failure_threshold: 2, open_ms: 30_000 });
  });
});
