// Route matching. A route that monitors /login is only worth something if /LOGIN, //login,
// /./login, /%6Cogin and /login;x=1 cannot slip past it to an origin that treats them as
// /login, so paths are normalized before matching and the normalized form is what the origin
// receives. Path parameters and backslashes are the exception: they are read for matching only
// (`;x` dropped, `\` as `/`), because an origin that does not do the same would see a different
// path than the one it was sent.

/** Percent-encoded unreserved characters (RFC 3986 §2.3) mean the same decoded. */
const UNRESERVED = /%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])/g;
/** IIS and ASP.NET read `\` (and `%5C`) in a path as `/`. */
const BACKSLASH = /\\|%5[cC]/g;

export interface RequestTarget {
  /** Normalized path, without the query: what the origin receives. */
  path: string;
  /** `path` without `;parameters`, `\` read as `/`: what routes are matched against. */
  matchPath: string;
  /** The query with its leading `?`, or ''. */
  search: string;
}

/**
 * Splits a request-target into a normalized path and the query; null when it is not a path
 * (authority-form, asterisk-form) and must be refused. Absolute-form (`GET http://h/p`) keeps
 * only its path: the proxy routes by path and never lets a client pick the upstream host.
 */
export function parseTarget(url: string): RequestTarget | null {
  let raw = url;
  if (raw.charCodeAt(0) !== 47 /* / */) {
    const m = /^https?:\/\/[^/?#]*/i.exec(raw);
    if (!m) return null;
    raw = raw.slice(m[0].length);
    if (raw === '' || raw[0] === '?') raw = `/${raw}`;
    if (raw[0] !== '/') return null;
  }
  const hash = raw.indexOf('#');
  if (hash !== -1) raw = raw.slice(0, hash);
  const q = raw.indexOf('?');
  const path = q === -1 ? raw : raw.slice(0, q);
  const search = q === -1 ? '' : raw.slice(q);
  const normalized = normalizePath(path);
  const backslash = path.includes('\\') || (path.includes('%') && /%5c/i.test(path));
  if (!backslash && !path.includes(';')) return { path: normalized, matchPath: normalized, search };
  // Backslashes first: `/x\..;\login` is `/login` to an origin that reads them as slashes.
  return {
    path: normalized,
    matchPath: normalizePath(stripParams(backslash ? path.replace(BACKSLASH, '/') : path)),
    search,
  };
}

/**
 * Drops `;parameters` from every segment (`/x/..;/login;jsessionid=1` → `/x/../login`), before
 * dot segments are resolved: Tomcat and Spring strip them first, so `..;` climbs for them.
 */
export function stripParams(path: string): string {
  return path.replace(/;[^/]*/g, '');
}

/** Decodes unreserved escapes, merges slashes and resolves dot segments; cheap when clean. */
export function normalizePath(path: string): string {
  if (!path.includes('%') && !path.includes('//') && !path.includes('/.')) return path;
  const decoded = path.replace(UNRESERVED, (s) => String.fromCharCode(parseInt(s.slice(1), 16)));
  const out: string[] = [];
  const segments = decoded.split('/');
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '' && !last) continue;
    if (s === '.') {
      if (last) out.push('');
      continue;
    }
    if (s === '..') {
      out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(s);
  }
  return `/${out.join('/')}`;
}

export type PathTest = (lowerPath: string) => boolean;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Compiles a route pattern, matched case-insensitively (Express and ASP.NET route without
 * case, so a case-sensitive monitor could be bypassed):
 * - `/login` matches `/login` and `/login/`;
 * - a trailing `/*` matches the folder itself and everything below: `/checkout/*` matches
 *   `/checkout`, `/checkout/` and `/checkout/a/b`;
 * - any other trailing `*` is a prefix: `/api*` matches `/api`, `/apix`, `/api/x`;
 * - `*` elsewhere stands for characters within one segment: `/u/*` + `/orders`, `/*.php`.
 */
export function compilePath(pattern: string): PathTest {
  const p = pattern.toLowerCase();
  const star = p.indexOf('*');
  if (star === -1) {
    const base = p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
    const slashed = base === '/' ? '/' : `${base}/`;
    return (path) => path === base || path === slashed;
  }
  if (star === p.length - 1) {
    if (p === '/*') return () => true;
    if (p.endsWith('/*')) {
      const dir = p.slice(0, -2);
      const prefix = `${dir}/`;
      return (path) => path === dir || path.startsWith(prefix);
    }
    const prefix = p.slice(0, -1);
    return (path) => path.startsWith(prefix);
  }
  let body = p;
  let tail = '/?$';
  if (p.endsWith('/*')) {
    body = p.slice(0, -2);
    tail = '(?:/.*)?$';
  } else if (p.endsWith('*')) {
    body = p.slice(0, -1);
    tail = '.*$';
  }
  const source = `^${body.split('*').map(escapeRegExp).join('[^/]*')}${tail}`;
  const re = new RegExp(source);
  return (path) => re.test(path);
}
