import { describe, expect, it } from 'vitest';
import {
  ActionEventSchema,
  DecisionEventSchema,
  RequestEventSchema,
  actionEvent,
  actionKey,
  compileRedaction,
  decisionEvent,
  decisionKey,
  isSecretKey,
  parseEventValue,
  requestEvent,
  requestKey,
} from '../../../storage/events/index.ts';

function record(over: { context?: Record<string, unknown>; response?: object } = {}): any {
  return {
    response: {
      id: 'dec_1',
      decision: 'REVIEW',
      context: 'checkout',
      ruleset_id: 'rs_1',
      credential_fingerprint: 'crd_abc',
      rules: [
        { rule_id: 'big-amount', result: 'matched', action: 'REVIEW' },
        { rule_id: 'card-velocity', result: 'skipped', reason: 'counter_unavailable' },
        { rule_id: 'shadowed', result: 'matched', action: 'BLOCK', shadow: true },
      ],
      backend_results: [
        {
          rule_id: 'risk-api',
          integration: 'acme-risk',
          backend_id: 'score',
          status: 'insufficient_context',
          missing: ['$.customer.email'],
        },
        {
          rule_id: 'second',
          integration: 'ipcheck',
          backend_id: 'ip',
          status: 'error',
          error: 'timeout',
          on_error: 'allow',
          latency_ms: 150,
        },
      ],
      has_errors: true,
      degraded: ['counter_unavailable', 'backend_timeout'],
      evaluation_type: 'COMBINED',
      workflow_id: 'session-sess_1',
      elapsed_ms: 0.41,
      ...over.response,
    },
    context: over.context ?? {
      context: 'checkout',
      transaction: { reference: 'ord_1', amount: 14999, currency: 'EUR' },
      credential_fingerprint: 'crd_abc',
      customer: { id: 'cus_1', email: 'a@example.com' },
      device: {
        ip: '203.0.113.7',
        fingerprint: 'dev_9',
        user_agent: 'UA/1',
        session: 'sess_1',
        extra: 'not published',
      },
      billing: { name: 'A. Person', line1: '1 Road' },
      items: [{ sku: 'x' }],
      metadata: { channel: 'web' },
    },
    session: 'sess_1',
    created_at: '2026-01-02T03:04:05.678Z',
  };
}

const bytes = (v: unknown) => Buffer.byteLength(JSON.stringify(v));

describe('vigil.decision/1', () => {
  it('carries the decision, the traces and the selected context fields, nothing else', () => {
    const e = decisionEvent(record(), { source: 'api', eventId: () => 'evt_1' });
    expect(DecisionEventSchema.parse(e)).toEqual(e);
    expect(e).toEqual({
      schema: 'vigil.decision/1',
      event_id: 'evt_1',
      id: 'dec_1',
      decision: 'REVIEW',
      final_decision: null,
      context: 'checkout',
      ruleset_id: 'rs_1',
      credential_fingerprint: 'crd_abc',
      rules: record().response.rules,
      backend_results: record().response.backend_results,
      degraded: ['counter_unavailable', 'backend_timeout'],
      has_errors: true,
      evaluation_type: 'COMBINED',
      workflow_id: 'session-sess_1',
      elapsed_ms: 0.41,
      session: 'sess_1',
      source: 'api',
      occurred_at: '2026-01-02T03:04:05.678Z',
      transaction: { reference: 'ord_1', amount: 14999, currency: 'EUR' },
      customer: { id: 'cus_1', email: 'a@example.com' },
      device: { ip: '203.0.113.7', fingerprint: 'dev_9', user_agent: 'UA/1', session: 'sess_1' },
    });
    // billing, shipping, items and metadata stay in the decision record, not in the stream.
    expect(JSON.stringify(e)).not.toMatch(/billing|A\. Person|sku|channel/);
    expect(decisionKey(record())).toBe('sess_1');
    expect(decisionKey({ ...record(), session: null })).toBe('dec_1');
  });

  it('publishes metadata only when asked, as a string map', () => {
    const e = decisionEvent(record(), { includeMetadata: true });
    expect(e.metadata).toEqual({ channel: 'web' });
    expect(DecisionEventSchema.safeParse(e).success).toBe(true);
  });

  it('carries an async final outcome', () => {
    const e = decisionEvent(
      record({ response: { decision: 'PROVISIONAL', final_decision: 'BLOCK' } }),
    );
    expect(e.decision).toBe('PROVISIONAL');
    expect(e.final_decision).toBe('BLOCK');
  });

  it('never carries a raw credential or a secret-looking key', () => {
    const e = decisionEvent(
      record({
        context: {
          credential: { type: 'pan', number: '4111111111111111', cvv: '123' },
          transaction: { amount: 1, card_number: '4111111111111111', nested: { apiKey: 'k' } },
          customer: {
            id: 'c',
            password: 'hunter2',
            'X-Api-Key': 'k2',
            session_token: 't',
            credential: 'raw',
            credential_fingerprint: 'crd_ok',
            pin: '0000',
          },
          device: { ip: '1.2.3.4', cookie: 'sid=1' },
        },
      }),
    );
    const text = JSON.stringify(e);
    expect(text).not.toMatch(/4111111111111111|hunter2|"k"|k2|sid=1|"t"|"raw"|0000|"123"/);
    expect(e.transaction).toEqual({ amount: 1, card_number: '***', nested: { apiKey: '***' } });
    expect(e.customer).toMatchObject({ password: '***', credential_fingerprint: 'crd_ok' });
    expect(e.device).toEqual({ ip: '1.2.3.4' });
    expect(DecisionEventSchema.safeParse(e).success).toBe(true);
  });

  it('recognises secret-looking keys by their words', () => {
    for (const k of [
      'password',
      'clientSecret',
      'access_token',
      'X-API-KEY',
      'Authorization',
      'pan',
      'cvc',
      'iban',
      'credentials',
      'private_key',
    ])
      expect(isSecretKey(k), k).toBe(true);
    for (const k of [
      'credential_fingerprint',
      'email',
      'company',
      'pantry',
      'amount',
      'session',
      'id',
    ])
      expect(isSecretKey(k), k).toBe(false);
  });
});

describe('redaction', () => {
  it('replaces the values at the paths by a sha256 prefix, equal values alike', () => {
    const redact = ['$.customer.email', '$.device.ip', '$.customer.address', '$.nothing.here'];
    const a = decisionEvent(
      record({
        context: {
          customer: { email: 'a@example.com', address: { city: 'Paris' } },
          device: { ip: '203.0.113.7' },
        },
      }),
      { redact },
    );
    const b = decisionEvent(record(), { redact });
    expect(a.customer!.email).toMatch(/^sha256:[0-9a-f]{16}$/);
    expect(a.customer!.email).toBe(b.customer!.email);
    expect(a.device!.ip).toMatch(/^sha256:[0-9a-f]{16}$/);
    // Free-form fields are hashed whatever their type.
    expect(a.customer!.address).toMatch(/^sha256:/);
    expect(JSON.stringify(a)).not.toMatch(/example\.com|203\.0\.113|Paris/);
    expect(DecisionEventSchema.safeParse(a).success).toBe(true);
  });

  it('keeps the schema: typed non-string fields are never replaced', () => {
    const e = decisionEvent(record(), { redact: ['$.elapsed_ms', '$.has_errors', '$.session'] });
    expect(e.elapsed_ms).toBe(0.41);
    expect(e.has_errors).toBe(true);
    expect(e.session).toMatch(/^sha256:/);
    expect(DecisionEventSchema.safeParse(e).success).toBe(true);
  });

  it('hashes with HMAC when given a key, and walks arrays on the way', () => {
    const r = compileRedaction(['$.customer.emails', '$.rules.reason'], { key: 'k1' });
    const e = decisionEvent(record({ context: { customer: { emails: ['a@x', 'b@x'] } } }), {
      redact: r,
    });
    expect(e.customer!.emails).toMatch(/^hmac-sha256:[0-9a-f]{16}$/);
    expect(e.rules[1]!.reason).toMatch(/^hmac-sha256:/);
    expect(e.rules[0]!.reason).toBeUndefined();
  });

  it('refuses anything but simple dotted paths', () => {
    for (const p of [
      'customer.email',
      '$',
      '$..email',
      '$.items[0].sku',
      '$.a.*',
      "$['a']",
      '$.a b',
    ])
      expect(() => compileRedaction([p]), p).toThrow(/invalid redact path/);
    expect(() => compileRedaction(['$.customer.email', '$.a_b.c-d'])).not.toThrow();
  });

  it('applies to requests and actions too', () => {
    const r = requestEvent(
      {
        method: 'POST',
        path: '/login',
        route: '/login',
        status: 200,
        decision_id: null,
        decision: null,
        ip: '198.51.100.1',
        elapsed_ms: 1,
        session: null,
      },
      { redact: ['$.ip'] },
    );
    expect(r.ip).toMatch(/^sha256:/);
    const a = actionEvent(
      {
        workflow_id: 'w',
        step: 's',
        status: 'failed',
        attempts: 3,
        error: { type: 'http_status', message: 'a@example.com refused' },
        occurred_at: '2026-01-01T00:00:00Z',
      },
      { redact: ['$.error.message'] },
    );
    expect(a.error!.message).toMatch(/^sha256:/);
    expect(ActionEventSchema.safeParse(a).success).toBe(true);
  });
});

describe('truncation and malformed input', () => {
  it('cuts long strings with a marker and says where', () => {
    const long = 'x'.repeat(5000);
    const e = decisionEvent(
      record({ context: { customer: { note: long }, device: { user_agent: long } } }),
    );
    expect(e.customer!.note).toBe(`${'x'.repeat(1024)}…[+3976 chars]`);
    expect(e.device!.user_agent).toHaveLength(1024 + '…[+3976 chars]'.length);
    expect(e.truncated).toEqual(expect.arrayContaining(['$.customer.note', '$.device.user_agent']));
    expect(DecisionEventSchema.safeParse(e).success).toBe(true);
  });

  it('never splits a surrogate pair', () => {
    const s = `${'a'.repeat(1023)}😀tail`;
    const e = decisionEvent(record({ context: { customer: { s } } }));
    expect(e.customer!.s).toMatch(/^a{1023}…\[\+6 chars\]$/);
  });

  it('caps arrays, object keys and depth', () => {
    let deep: any = { leaf: 1 };
    for (let i = 0; i < 20; i++) deep = { d: deep };
    const wide = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`k${i}`, i]));
    const rules = Array.from({ length: 1000 }, (_, i) => ({
      rule_id: `r${i}`,
      result: 'not_matched',
    }));
    const e = decisionEvent(
      record({
        response: { rules },
        context: {
          transaction: { list: Array.from({ length: 1000 }, (_, i) => i), deep },
          customer: wide,
        },
      }),
    );
    expect(e.rules).toHaveLength(100);
    expect((e.transaction!.list as number[]).length).toBe(100);
    expect(Object.keys(e.customer!)).toHaveLength(100);
    expect(JSON.stringify(e.transaction!.deep)).not.toContain('leaf');
    expect(e.truncated).toEqual(
      expect.arrayContaining(['$.rules', '$.transaction.list', '$.customer']),
    );
    expect(DecisionEventSchema.safeParse(e).success).toBe(true);
  });

  it('keeps every event under 64 KiB, whatever it is given', () => {
    const big = Array.from({ length: 100 }, () => 'é'.repeat(1000));
    const rules = Array.from({ length: 100 }, (_, i) => ({
      rule_id: `r${i}`.padEnd(2000, '"'),
      result: 'matched',
      reason: '\u0001'.repeat(2000),
    }));
    const e = decisionEvent(
      record({
        response: {
          rules,
          backend_results: rules.map((r) => ({
            ...r,
            integration: 'i'.repeat(3000),
            backend_id: 'b',
            status: 'ok',
            missing: big,
          })),
        },
        context: {
          transaction: { big },
          customer: { big, more: big },
          device: { user_agent: big.join('') },
        },
      }),
    );
    expect(bytes(e)).toBeLessThanOrEqual(64 * 1024);
    expect(e.truncated!.length).toBeGreaterThan(0);
    expect(DecisionEventSchema.safeParse(e).success).toBe(true);
  });

  it('turns malformed fields into valid ones', () => {
    const cyclic: any = { a: 1 };
    cyclic.self = cyclic;
    const throwing = {
      ok: 1,
      get bad() {
        throw new Error('getter');
      },
    };
    const e = decisionEvent({
      response: {
        id: 42,
        decision: 'MAYBE',
        context: { not: 'a string' },
        ruleset_id: undefined,
        credential_fingerprint: 7,
        rules: 'nope',
        backend_results: [null, 3, { rule_id: 'x' }],
        has_errors: 'yes',
        degraded: [1, 'counter_unavailable'],
        evaluation_type: 'QUANTUM',
        workflow_id: {},
        elapsed_ms: Number.NaN,
        final_decision: 'SOMETIMES',
      },
      context: {
        transaction: {
          amount: Number.POSITIVE_INFINITY,
          big: 10n,
          when: new Date(0),
          bad: new Date(Number.NaN),
          fn: () => 1,
          sym: Symbol('s'),
          undef: undefined,
          cyclic,
          throwing,
          sparse: [1, undefined, () => 2],
        },
        customer: 'not an object',
        device: ['also', 'not'],
      },
      session: 12,
      created_at: 'yesterday',
    } as any);
    const parsed = DecisionEventSchema.safeParse(e);
    expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
    expect(e).toMatchObject({
      id: '42',
      decision: 'REVIEW',
      final_decision: null,
      context: 'default',
      ruleset_id: null,
      credential_fingerprint: '7',
      rules: [],
      has_errors: false,
      degraded: ['counter_unavailable'],
      evaluation_type: 'RULE_ENGINE',
      workflow_id: '',
      elapsed_ms: 0,
      session: '12',
      customer: null,
      device: null,
    });
    expect(e.backend_results).toEqual([
      { rule_id: 'x', integration: '', backend_id: '', status: 'error' },
    ]);
    expect(e.transaction).toMatchObject({
      amount: null,
      big: '10',
      when: '1970-01-01T00:00:00.000Z',
      bad: null,
      throwing: { ok: 1 },
      sparse: [1, null, null],
    });
    expect(e.transaction).not.toHaveProperty('fn');
    expect(Date.parse(e.occurred_at)).not.toBeNaN();
    expect(e.truncated).toEqual(
      expect.arrayContaining(['$.decision', '$.evaluation_type', '$.occurred_at', '$.rules']),
    );
  });

  it('survives random garbage (schema-valid and bounded every time)', () => {
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    // A node budget per call keeps the structures wide and deep, but finite.
    let nodes = 0;
    const garbage = (depth: number): any => {
      nodes++;
      const k = Math.floor(rnd() * 10);
      if (depth > 12 || k < 3 || nodes > 1500) {
        return [
          null,
          undefined,
          0,
          -1.5,
          Number.NaN,
          true,
          'x'.repeat(Math.floor(rnd() * 3000)),
          '\ud800',
          2n ** 70n,
          new Date(),
        ][k + Math.floor(rnd() * 7)];
      }
      if (k < 6) return Array.from({ length: Math.floor(rnd() * 150) }, () => garbage(depth + 1));
      return Object.fromEntries(
        Array.from({ length: Math.floor(rnd() * 150) }, (_, i) => [
          ['password', 'email', 'x'.repeat(2000), `k${i}`][Math.floor(rnd() * 4)]!,
          garbage(depth + 1),
        ]),
      );
    };
    const fresh = (depth: number) => {
      nodes = 0;
      return garbage(depth);
    };
    for (let i = 0; i < 100; i++) {
      const ctx = fresh(0);
      const e = decisionEvent(
        {
          response: {
            ...record().response,
            rules: fresh(1),
            backend_results: fresh(1),
            degraded: fresh(1),
          },
          context:
            typeof ctx === 'object' && ctx
              ? { transaction: ctx, customer: fresh(0), device: fresh(0) }
              : {},
          session: fresh(3),
          created_at: fresh(3),
        },
        { redact: ['$.customer.email', '$.transaction.password'] },
      );
      const parsed = DecisionEventSchema.safeParse(e);
      expect(parsed.success, JSON.stringify(parsed.error?.issues?.slice(0, 3))).toBe(true);
      expect(bytes(e)).toBeLessThanOrEqual(64 * 1024);
    }
  });
});

describe('vigil.request/1 and vigil.action/1', () => {
  it('publishes a monitored request without its query string', () => {
    const input = {
      method: 'POST',
      path: '/checkout/1?email=a@example.com',
      route: '/checkout/*',
      context: 'checkout',
      mode: 'active' as const,
      status: 403,
      decision_id: 'dec_1',
      decision: 'BLOCK' as const,
      fail_open: null,
      ip: '203.0.113.7',
      elapsed_ms: 1.5,
      session: 'sess_1',
    };
    const e = requestEvent(input, { now: () => 0, eventId: () => 'e' });
    expect(e).toEqual({
      schema: 'vigil.request/1',
      event_id: 'e',
      method: 'POST',
      path: '/checkout/1',
      route: '/checkout/*',
      context: 'checkout',
      mode: 'active',
      status: 403,
      decision_id: 'dec_1',
      decision: 'BLOCK',
      fail_open: null,
      ip: '203.0.113.7',
      session: 'sess_1',
      elapsed_ms: 1.5,
      dropped: [],
      occurred_at: '1970-01-01T00:00:00.000Z',
    });
    expect(RequestEventSchema.parse(e)).toEqual(e);
    // The context paths the proxy left out as invalid ride along.
    const d = requestEvent(
      { ...input, dropped: ['transaction.amount', 'device.user_agent'] },
      { now: () => 0, eventId: () => 'e' },
    );
    expect(d.dropped).toEqual(['transaction.amount', 'device.user_agent']);
    expect(requestKey(input)).toBe('sess_1');
    expect(requestKey({ ...input, session: null })).toBe('dec_1');
    const bad = requestEvent({ status: 'x', path: 5, mode: 'sideways', decision: 'NO' } as any);
    expect(RequestEventSchema.safeParse(bad).success).toBe(true);
    expect(bad.truncated).toEqual(expect.arrayContaining(['$.status', '$.mode', '$.decision']));
  });

  it('publishes a workflow step outcome', () => {
    const e = actionEvent({
      workflow_id: 'session-sess_1',
      step: 'ticket',
      status: 'failed',
      attempts: 20,
      integration: 'jira',
      action_id: 'create-issue',
      decision_id: 'dec_1',
      error: { type: 'http_status', message: 'm'.repeat(4000) },
      occurred_at: '2026-01-01T00:00:00Z',
    });
    expect(ActionEventSchema.safeParse(e).success).toBe(true);
    expect(e.error!.message.startsWith('m'.repeat(1024))).toBe(true);
    expect(e.truncated).toEqual(['$.error.message']);
    expect(e.occurred_at).toBe('2026-01-01T00:00:00.000Z');
    expect(parseEventValue(e)).toMatchObject({ ok: true, schema: 'vigil.action/1' });
    expect(parseEventValue({ schema: 'vigil.action/9' })).toMatchObject({ ok: false });
    // Keyed as the session's decisions are: the session, else the decision id.
    expect(actionKey({ workflow_id: 'session-sess_1' })).toBe('sess_1');
    expect(actionKey({ workflow_id: 'decision-dec_1' })).toBe('dec_1');
    expect(decisionKey({ session: 'sess_1', response: { id: 'dec_9' } })).toBe('sess_1');
  });

  it('re-emits each time in its canonical form, the same input twice or another after it', () => {
    const at = (occurred_at: unknown) =>
      actionEvent({
        workflow_id: 'w',
        step: 's',
        status: 'ok',
        attempts: 1,
        occurred_at: occurred_at as string,
      });
    expect(at('2026-03-04T05:06:07+01:00').occurred_at).toBe('2026-03-04T04:06:07.000Z');
    expect(at('2026-03-04T05:06:07+01:00').occurred_at).toBe('2026-03-04T04:06:07.000Z');
    expect(at('2026-03-04T05:06:07Z').occurred_at).toBe('2026-03-04T05:06:07.000Z');
    const bad = at('not a time');
    expect(bad.truncated).toEqual(['$.occurred_at']);
    expect(at('2026-03-04T05:06:07Z').occurred_at).toBe('2026-03-04T05:06:07.000Z');
  });
});
