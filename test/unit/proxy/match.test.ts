import { describe, expect, it } from 'vitest';
import { compilePath, normalizePath, parseTarget } from '../../../proxy/inline/match.ts';

describe('request target', () => {
  it.each([
    ['/login', '/login', ''],
    ['/login?next=/a', '/login', '?next=/a'],
    ['//login', '/login', ''],
    ['/./login', '/login', ''],
    ['/a/../login', '/login', ''],
    ['/%6Cogin', '/login', ''],
    ['/%2e%2e/login', '/login', ''],
    ['/a/%2E%2E/login/', '/login/', ''],
    ['/checkout/./x/..', '/checkout/', ''],
    ['/../../etc', '/etc', ''],
    // An encoded slash stays encoded: it is data, not a separator.
    ['/a%2Fb', '/a%2Fb', ''],
    ['/x#frag', '/x', ''],
    ['http://evil.example/login?x=1', '/login', '?x=1'],
    ['https://evil.example', '/', ''],
    ['http://evil.example?x', '/', '?x'],
  ])('%s → %s %s', (url, path, search) => {
    expect(parseTarget(url)).toEqual({ path, matchPath: path, search });
  });

  // Tomcat and Spring drop `;parameters` from each segment before resolving dot segments.
  it.each([
    ['/login;x=1', '/login;x=1', '/login'],
    ['/login;jsessionid=ABC?next=/a', '/login;jsessionid=ABC', '/login'],
    ['/LOGIN;x', '/LOGIN;x', '/LOGIN'],
    ['/a;b/login;c=d/', '/a;b/login;c=d/', '/a/login/'],
    ['/x/..;/login', '/x/..;/login', '/login'],
    ['/x/.;/login', '/x/.;/login', '/x/login'],
    ['/;x/login', '/;x/login', '/login'],
    ['//login;x/./', '/login;x/', '/login/'],
    ['/%6Cogin;x', '/login;x', '/login'],
    // An encoded semicolon is data, as an encoded slash is.
    ['/login%3Bx=1', '/login%3Bx=1', '/login%3Bx=1'],
  ])('%s is forwarded as %s and matched as %s', (url, path, matchPath) => {
    const t = parseTarget(url)!;
    expect(t.path).toBe(path);
    expect(t.matchPath).toBe(matchPath);
  });

  // IIS and ASP.NET read a backslash, raw or encoded, as a slash.
  it.each([
    ['/checkout\\cart', '/checkout\\cart', '/checkout/cart'],
    ['/checkout%5Ccart?x=1', '/checkout%5Ccart', '/checkout/cart'],
    ['/CHECKOUT%5c..%5clogin', '/CHECKOUT%5c..%5clogin', '/login'],
    ['/x\\..;\\login', '/x\\..;\\login', '/login'],
    ['/a\\/./login', '/a\\/login', '/a/login'],
    ['/a%255Cb', '/a%255Cb', '/a%255Cb'],
  ])('%s is forwarded as %s and matched as %s', (url, path, matchPath) => {
    const t = parseTarget(url)!;
    expect(t.path).toBe(path);
    expect(t.matchPath).toBe(matchPath);
  });

  it('refuses what is not a path', () => {
    expect(parseTarget('*')).toBeNull();
    expect(parseTarget('example.com:443')).toBeNull();
    expect(parseTarget('')).toBeNull();
  });

  it('leaves clean paths alone (same string)', () => {
    const p = '/api/v1/orders';
    expect(normalizePath(p)).toBe(p);
  });
});

describe('route patterns', () => {
  const cases: [string, string, boolean][] = [
    ['/login', '/login', true],
    ['/login', '/login/', true],
    ['/login', '/LOGIN', true],
    ['/login', '/login2', false],
    ['/login', '/login/x', false],
    ['/', '/', true],
    ['/', '/x', false],
    ['/*', '/anything/at/all', true],
    ['/checkout/*', '/checkout', true],
    ['/checkout/*', '/checkout/', true],
    ['/checkout/*', '/checkout/a/b', true],
    ['/checkout/*', '/checkouts', false],
    ['/api*', '/api', true],
    ['/api*', '/apix/y', true],
    ['/api*', '/ap', false],
    ['/u/*/orders', '/u/42/orders', true],
    ['/u/*/orders', '/u/42/43/orders', false],
    ['/u/*/orders/*', '/u/42/orders', true],
    ['/u/*/orders/*', '/u/42/orders/7/items', true],
    ['/*.php', '/index.php', true],
    ['/*.php', '/a/index.php', false],
    ['/a.b', '/aXb', false],
  ];
  it.each(cases)('%s matches %s: %s', (pattern, path, expected) => {
    expect(compilePath(pattern)(path.toLowerCase())).toBe(expected);
  });
});
