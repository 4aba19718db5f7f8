import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { workerCount } from '../../../proxy/inline/cluster.ts';
import {
  DEFAULT_LIMITS,
  RoutesConfigError,
  compileRoutesDocument,
  parseRoutesText,
  renderBlock,
} from '../../../proxy/inline/config.ts';

const CONTRACT_EXAMPLE = `
mode: active                     # passive | active
origins: { shop: "http://127.0.0.1:3000" }
session: { cookie: "sid" }       # or { header: "x-session-id" }
routes:
  - match: { method: POST, path: /login }
    origin: shop
    context: login
    extract:
      "$.customer.email":    { from: body, field: email }
      "$.device.fingerprint": { from: header, name: x-device-id }
  - match: { method: POST, path: "/checkout/*" }
    origin: shop
    context: checkout
    extract:
      "$.transaction.amount": { from: body, field: amount, type: integer }
      "$.credential_fingerprint": { from: body, field: card_token }
  - match: { path: "/*" }
    origin: shop                  # no context: pass-through
`;

function issuesOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RoutesConfigError);
    return (err as RoutesConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected a RoutesConfigError');
}

const base = (routes: unknown[], extra: Record<string, unknown> = {}) => ({
  mode: 'active',
  origins: { shop: 'http://127.0.0.1:3000' },
  routes,
  ...extra,
});

describe('route file', () => {
  it('parses the CONTRACT §5 example and matches its routes', () => {
    const doc = parseRoutesText(CONTRACT_EXAMPLE, 'routes.yaml');
    const cfg = compileRoutesDocument(doc);
    expect(cfg.mode).toBe('active');
    expect(cfg.session).toEqual({ kind: 'cookie', name: 'sid' });
    expect(cfg.match('POST', '/login')?.context).toBe('login');
    expect(cfg.match('GET', '/login')?.context).toBeNull();
    expect(cfg.match('POST', '/checkout/cart/1')?.context).toBe('checkout');
    expect(cfg.match('POST', '/checkout')?.context).toBe('checkout');
    expect(cfg.match('GET', '/anything')?.label).toBe('/*');
    const checkout = cfg.match('POST', '/checkout/x')!;
    expect(checkout.extractors).toEqual([
      {
        target: ['transaction', 'amount'],
        from: 'body',
        key: 'amount',
        keyPath: ['amount'],
        type: 'integer',
      },
      {
        target: ['credential_fingerprint'],
        from: 'body',
        key: 'card_token',
        keyPath: ['card_token'],
        type: undefined,
      },
    ]);
    expect(checkout.bodyLimit).toBe(1024 * 1024);
    expect(checkout.needsBody).toBe(true);
    expect(cfg.origins.get('shop')?.url).toBe('http://127.0.0.1:3000');
    expect(cfg.limits).toEqual(DEFAULT_LIMITS);
  });

  it('names the route and field of each error', () => {
    const issues = issuesOf(() =>
      compileRoutesDocument(
        base([
          { match: { path: '/a' }, origin: 'shop' },
          {
            match: { method: 'POST', path: '/pay' },
            origin: 'shop',
            context: 'checkout',
            extract: { '$.transaction.amount': { from: 'bodyy', field: 'amount' } },
          },
        ]),
      ),
    );
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(/^routes\[1\]\.extract\.\$\.transaction\.amount\.from: /);
  });

  it('refuses unknown origins, reserved and malformed targets, and stray keys', () => {
    const issues = issuesOf(() =>
      compileRoutesDocument(
        base([
          {
            match: { path: '/login' },
            origin: 'shp',
            context: 'login',
            extract: {
              '$.device.ip': { from: 'header', name: 'x-ip' },
              'customer.email': { from: 'body', field: 'email' },
              '$.metadata.a.b': { from: 'query', field: 'x' },
              '$.customer.__proto__': { from: 'query', field: 'x' },
              '$.customer.id': { from: 'cookie' },
            },
            timout_ms: 5,
          },
          { match: { path: 'nope' }, origin: 'shop', extract: {} },
        ]),
      ),
    );
    expect(issues).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^routes\[0\]: .*timout_ms/),
        expect.stringMatching(/^routes\[0\]\.origin: unknown origin "shp"/),
        expect.stringMatching(/^routes\[0\]\.extract\.\$\.device\.ip: .*client address/),
        expect.stringMatching(/^routes\[0\]\.extract\.customer\.email: /),
        expect.stringMatching(/^routes\[0\]\.extract\.\$\.metadata\.a\.b: metadata is a flat map/),
        expect.stringMatching(/^routes\[0\]\.extract\.\$\.customer\.__proto__: /),
        expect.stringMatching(/^routes\[0\]\.extract\.\$\.customer\.id\.name: required/),
        expect.stringMatching(/^routes\[1\]\.match\.path: must start with \//),
        expect.stringMatching(/^routes\[1\]\.extract: only for monitored routes/),
      ]),
    );
  });

  it('wants session as cookie or header, origins as bare origins', () => {
    const issues = issuesOf(() =>
      compileRoutesDocument({
        mode: 'loud',
        origins: { shop: 'http://127.0.0.1:3000/app', api: 'ftp://x' },
        session: { cookie: 'sid', header: 'x-s' },
        routes: [{ match: { path: '/' }, origin: 'shop' }],
      }),
    );
    expect(issues).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^mode: /),
        expect.stringMatching(/^origins\.shop/),
        expect.stringMatching(/^origins\.api/),
        expect.stringMatching(/^session: give cookie or header/),
      ]),
    );
  });

  it('says a missing field is required, whatever its type', () => {
    expect(
      issuesOf(() =>
        parseRoutesText(
          'origins: { shop: "http://127.0.0.1:3000" }\nroutes:\n  - match: {}\n',
          'routes.yaml',
        ),
      ),
    ).toEqual(['mode: required', 'routes[0].match.path: required', 'routes[0].origin: required']);
    expect(issuesOf(() => compileRoutesDocument({ mode: 'active' }))).toEqual([
      'origins: required',
      'routes: required',
    ]);
    // Present but wrong still says what is expected.
    expect(issuesOf(() => compileRoutesDocument(base([], { mode: 'on' })))).toEqual(
      expect.arrayContaining([expect.stringMatching(/^mode: .*"passive"\|"active"/)]),
    );
  });

  it('refuses a target inside another target of the same route', () => {
    const issues = issuesOf(() =>
      compileRoutesDocument(
        base([
          {
            match: { method: 'POST', path: '/checkout/*' },
            origin: 'shop',
            context: 'checkout',
            extract: {
              '$.transaction': { from: 'body', field: 'tx' },
              '$.transactions': { from: 'body', field: 'txs' },
              '$.transaction.amount': { from: 'body', field: 'amount', type: 'integer' },
            },
          },
        ]),
      ),
    );
    expect(issues).toEqual([
      'routes[0].extract: "$.transaction" and "$.transaction.amount" of route /checkout/* ' +
        'overlap: one is inside the other',
    ]);
    // The same targets in two routes are two separate contexts.
    expect(() =>
      compileRoutesDocument(
        base([
          {
            match: { path: '/a' },
            origin: 'shop',
            context: 'a',
            extract: { '$.transaction': { from: 'query', field: 'tx' } },
          },
          {
            match: { path: '/b' },
            origin: 'shop',
            context: 'b',
            extract: { '$.transaction.amount': { from: 'query', field: 'amount' } },
          },
        ]),
      ),
    ).not.toThrow();
  });

  it('refuses a target that would replace what the proxy fills', () => {
    const issues = issuesOf(() =>
      compileRoutesDocument(
        base([
          {
            match: { path: '/login' },
            origin: 'shop',
            context: 'login',
            extract: { '$.device': { from: 'header', name: 'x-device' } },
          },
        ]),
      ),
    );
    expect(issues).toEqual([
      expect.stringMatching(/^routes\[0\]\.extract\.\$\.device: contains \$\.device\.ip/),
    ]);
  });

  it('reads byte sizes, limits and block responses', () => {
    const cfg = compileRoutesDocument(
      base(
        [
          {
            match: { method: ['post', 'PUT'], path: '/pay' },
            origin: 'shop',
            context: 'checkout',
            body_limit: '64kb',
            timeout_ms: 1500,
            block: {
              status: 302,
              content_type: 'text/plain',
              body: 'blocked {{decision_id}}',
              headers: { location: '/challenge?d={{decision_id}}' },
            },
          },
        ],
        { limits: { overload: 'reject', max_inflight_decisions: 8, body_limit: '2mb' } },
      ),
      1,
      { decision_timeout_ms: 123, max_inflight_decisions: 99 },
    );
    const r = cfg.routes[0]!;
    expect([...r.methods!]).toEqual(['POST', 'PUT']);
    expect(r.bodyLimit).toBe(64 * 1024);
    expect(r.timeoutMs).toBe(1500);
    expect(r.needsBody).toBe(false);
    expect(r.block.status).toBe(302);
    expect(renderBlock(r.block, 'dec_1')).toBe('blocked dec_1');
    expect(r.block.headers).toEqual([['location', '/challenge?d={{decision_id}}']]);
    // The file beats the composition root's defaults, which beat the built-in ones.
    expect(cfg.limits.max_inflight_decisions).toBe(8);
    expect(cfg.limits.decision_timeout_ms).toBe(123);
    expect(cfg.limits.overload).toBe('reject');
    expect(cfg.limits.body_limit).toBe(2 * 1024 * 1024);
    expect(cfg.limits.timeout_ms).toBe(DEFAULT_LIMITS.timeout_ms);
  });

  it('gives the default block response', () => {
    const cfg = compileRoutesDocument(
      base([{ match: { path: '/login' }, origin: 'shop', context: 'login' }]),
    );
    const b = cfg.routes[0]!.block;
    expect(b.status).toBe(403);
    expect(b.contentType).toBe('application/json');
    expect(JSON.parse(renderBlock(b, 'dec_9'))).toEqual({ error: 'blocked', decision_id: 'dec_9' });
  });

  it('refuses YAML that does not parse, duplicate keys included', () => {
    expect(issuesOf(() => parseRoutesText('mode: [', 'f.yaml'))[0]).toMatch(/^: not YAML or JSON/);
    expect(issuesOf(() => parseRoutesText('mode: active\nmode: passive\n', 'f.yaml'))[0]).toMatch(
      /not YAML or JSON/,
    );
  });

  it('takes JSON as well as YAML', () => {
    const doc = parseRoutesText(
      JSON.stringify(
        base([{ match: { path: '/*' }, origin: 'shop' }], { session: { header: 'X-Session' } }),
      ),
    );
    expect(compileRoutesDocument(doc).session).toEqual({ kind: 'header', name: 'x-session' });
  });

  it('reports a missing CA file as a config error', () => {
    const issues = issuesOf(() =>
      compileRoutesDocument({
        mode: 'active',
        origins: { shop: { url: 'https://127.0.0.1:3443', ca_file: '/nonexistent/ca.pem' } },
        routes: [{ match: { path: '/*' }, origin: 'shop' }],
      }),
    );
    expect(issues[0]).toMatch(/^origins\.shop\.ca_file: ENOENT/);
  });
});

describe('examples/routes.yaml', () => {
  it('is a valid route file with /login and /checkout/* monitored', () => {
    const file = path.resolve(import.meta.dirname, '../../../examples/routes.yaml');
    const cfg = compileRoutesDocument(parseRoutesText(readFileSync(file, 'utf8'), file));
    expect([...cfg.origins.keys()]).toEqual(['shop']);
    expect(cfg.match('POST', '/login')?.context).toBe('login');
    expect(cfg.match('POST', '/checkout/pay')?.context).toBe('checkout');
    expect(cfg.match('GET', '/products/1')?.context).toBeNull();
  });
});

describe('cluster size', () => {
  it('defaults to the available cores and takes a positive count', () => {
    expect(workerCount(undefined)).toBeGreaterThanOrEqual(1);
    expect(workerCount(0)).toBe(workerCount(undefined));
    expect(workerCount(3)).toBe(3);
  });
});
