// JSONPath for user documents: parsed once, at upload, into tokens, and compiled into plain
// accessor functions. A user path is never handed to a JSONPath evaluator at request time:
// jsonpath-plus's "safe" script evaluation has been bypassed (CVE-2024-21534, CVE-2025-1302), and
// a grammar we do not accept cannot be abused. Accepted: `$`, member names (`.a`, `['a-b']`),
// integer indexes (`[0]`, `[-1]`) and a bounded number of wildcards (`[*]`, `.*`).

export type PathToken =
  { t: 'member'; name: string } | { t: 'index'; i: number } | { t: 'wildcard' };

export const PATH_LIMITS = {
  length: 256,
  wildcards: 4,
  segments: 32,
  nameLength: 128,
  index: 1_000_000,
} as const;

export type ParsedPath =
  | {
      ok: true;
      tokens: PathToken[];
      /** The path written one way (`$.a['b c'][0]`), so two spellings share counters. */
      canonical: string;
      /** No wildcard: the path yields at most one value. */
      definite: boolean;
    }
  | { ok: false; message: string };

const DOT_NAME = /^[A-Za-z_][A-Za-z0-9_-]*/;
// Names that reach Object.prototype; accessors read own properties only, but a path that names
// them is at best a mistake and at worst aimed at an evaluator elsewhere.
const FORBIDDEN_NAMES = new Set(['__proto__', 'prototype', 'constructor']);
// Inside a quoted name these only make sense as script or filter syntax: refused so that a path
// we accept stays inert even if someone later feeds it to a general JSONPath engine.
const SCRIPT_CHARS = /[()@;{}`?\\]/;

function snippet(s: string, from: number): string {
  const close = s.indexOf(']', from);
  const end = close >= 0 && close - from < 24 ? close + 1 : Math.min(s.length, from + 16);
  return s.slice(from, end);
}

export function parsePath(path: unknown): ParsedPath {
  if (typeof path !== 'string' || path.length === 0) {
    return { ok: false, message: "expected a JSONPath starting with '$'" };
  }
  if (path.length > PATH_LIMITS.length) {
    return { ok: false, message: `path is longer than ${PATH_LIMITS.length} characters` };
  }
  if (path[0] !== '$') {
    return { ok: false, message: `path must start with '$' (got '${path.slice(0, 12)}')` };
  }
  const fail = (message: string): ParsedPath => ({ ok: false, message });
  const tokens: PathToken[] = [];
  let wildcards = 0;
  let i = 1;
  while (i < path.length) {
    const c = path[i];
    if (c === '.') {
      const next = path[i + 1];
      if (next === '.') return fail(`recursive descent '..' is not allowed`);
      if (next === undefined) return fail(`path ends with '.'`);
      if (next === '*') {
        tokens.push({ t: 'wildcard' });
        wildcards++;
        i += 2;
        continue;
      }
      const m = DOT_NAME.exec(path.slice(i + 1));
      if (!m) {
        return fail(
          `unexpected '${path.slice(i, i + 12)}': a member name after '.' is letters, digits, '_' or '-' (quote others: ['name'])`,
        );
      }
      tokens.push({ t: 'member', name: m[0] });
      i += 1 + m[0].length;
      continue;
    }
    if (c === '[') {
      const token = snippet(path, i);
      const inner = path[i + 1];
      if (inner === '?') return fail(`filter expression '${token}' is not allowed`);
      if (inner === '(') return fail(`script expression '${token}' is not allowed`);
      if (path.startsWith('[*]', i)) {
        tokens.push({ t: 'wildcard' });
        wildcards++;
        i += 3;
        continue;
      }
      if (inner === "'" || inner === '"') {
        const end = path.indexOf(inner, i + 2);
        if (end < 0 || path[end + 1] !== ']') {
          return fail(`unterminated or unsupported quoted name '${token}'`);
        }
        const name = path.slice(i + 2, end);
        if (name.length === 0) return fail(`empty member name '${token}'`);
        if (name.length > PATH_LIMITS.nameLength) {
          return fail(`member name '${token}' is longer than ${PATH_LIMITS.nameLength}`);
        }
        const bad = SCRIPT_CHARS.exec(name);
        if (bad)
          return fail(`member name '${token}' contains '${bad[0]}', which looks like a script`);
        // Control characters have no business in a field name and hide what a path reads.
        if (/\p{Cc}/u.test(name))
          return fail(`member name '${token}' contains a control character`);
        tokens.push({ t: 'member', name });
        i = end + 2;
        continue;
      }
      const idx = /^\[(-?\d+)\]/.exec(path.slice(i, i + 16));
      if (idx) {
        const n = Number(idx[1]);
        if (Math.abs(n) > PATH_LIMITS.index) return fail(`index '${token}' is out of range`);
        tokens.push({ t: 'index', i: n });
        i += idx[0].length;
        continue;
      }
      if (/^\[[^\]]*:/.test(token)) return fail(`slice '${token}' is not supported`);
      if (/^\[[^\]]*,/.test(token)) return fail(`union '${token}' is not supported`);
      return fail(
        `unsupported bracket expression '${token}' (member names, integer indexes and [*] only)`,
      );
    }
    if (c === '@') return fail(`'@' only appears in filter expressions, which are not allowed`);
    if (c === '(') return fail(`call or script syntax '${path.slice(i, i + 12)}' is not allowed`);
    return fail(`unexpected '${path.slice(i, i + 12)}'`);
  }
  for (const t of tokens) {
    if (t.t === 'member' && FORBIDDEN_NAMES.has(t.name)) {
      return fail(`member '${t.name}' is not allowed`);
    }
  }
  if (wildcards > PATH_LIMITS.wildcards) {
    return fail(`more than ${PATH_LIMITS.wildcards} wildcards`);
  }
  if (tokens.length > PATH_LIMITS.segments) {
    return fail(`more than ${PATH_LIMITS.segments} segments`);
  }
  return { ok: true, tokens, canonical: formatPath(tokens), definite: wildcards === 0 };
}

/** Writes tokens back in one spelling: dot members where possible, brackets otherwise. */
export function formatPath(tokens: readonly PathToken[]): string {
  let out = '$';
  for (const t of tokens) {
    if (t.t === 'wildcard') out += '[*]';
    else if (t.t === 'index') out += `[${t.i}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(t.name)) out += `.${t.name}`;
    else out += t.name.includes("'") ? `["${t.name}"]` : `['${t.name}']`;
  }
  return out;
}

export type Accessor = (ctx: unknown) => unknown[];

export interface CompiledPath {
  /** The canonical spelling. */
  readonly path: string;
  readonly definite: boolean;
  /** The single value of a definite path (undefined: missing); the first value of any other. */
  readonly one: (ctx: unknown) => unknown;
  /** Every value the path yields, in document order (missing: none). */
  readonly all: (ctx: unknown) => unknown[];
  /** Whether some value the path yields satisfies `pred`; stops at the first, allocates nothing. */
  readonly some: (ctx: unknown, pred: (v: unknown) => boolean) => boolean;
}

// JSON semantics: members live on objects, indexes on arrays. An array's `length` or a string's
// characters are not members, and inherited properties are never read.
function member(v: unknown, name: string): unknown {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && Object.hasOwn(v, name)
    ? (v as Record<string, unknown>)[name]
    : undefined;
}

function at(v: unknown, i: number): unknown {
  if (!Array.isArray(v)) return undefined;
  return (v as unknown[])[i < 0 ? v.length + i : i];
}

function step(v: unknown, t: PathToken): unknown {
  return t.t === 'member'
    ? member(v, t.name)
    : t.t === 'index'
      ? at(v, (t as { i: number }).i)
      : undefined;
}

const NONE: unknown[] = [];
Object.freeze(NONE);

export function compilePath(input: string | readonly PathToken[]): CompiledPath {
  let tokens: readonly PathToken[];
  if (typeof input === 'string') {
    const p = parsePath(input);
    if (!p.ok) throw new Error(`invalid JSONPath '${input.slice(0, 40)}': ${p.message}`);
    tokens = p.tokens;
  } else {
    tokens = input;
  }
  const path = formatPath(tokens);
  const n = tokens.length;
  const definite = tokens.every((t) => t.t !== 'wildcard');

  if (definite) {
    const names = tokens.every((t) => t.t === 'member')
      ? tokens.map((t) => (t as { name: string }).name)
      : undefined;
    // The common case is a short member chain: specialised so V8 sees monomorphic code.
    let one: (ctx: unknown) => unknown;
    if (names && n === 1) {
      const [a] = names as [string];
      one = (ctx) => member(ctx, a);
    } else if (names && n === 2) {
      const [a, b] = names as [string, string];
      one = (ctx) => member(member(ctx, a), b);
    } else if (names && n === 3) {
      const [a, b, c] = names as [string, string, string];
      one = (ctx) => member(member(member(ctx, a), b), c);
    } else {
      one = (ctx) => {
        let v = ctx;
        for (let k = 0; k < n && v !== undefined; k++) v = step(v, tokens[k]!);
        return v;
      };
    }
    return {
      path,
      definite,
      one,
      all: (ctx) => {
        const v = one(ctx);
        return v === undefined ? NONE : [v];
      },
      some: (ctx, pred) => {
        const v = one(ctx);
        return v !== undefined && pred(v);
      },
    };
  }

  const walk = (v: unknown, k: number, pred: (v: unknown) => boolean): boolean => {
    for (; k < n; k++) {
      const t = tokens[k]!;
      if (t.t !== 'wildcard') {
        v = step(v, t);
        if (v === undefined) return false;
        continue;
      }
      if (Array.isArray(v)) {
        for (const x of v as unknown[]) if (x !== undefined && walk(x, k + 1, pred)) return true;
      } else if (v !== null && typeof v === 'object') {
        for (const key in v) {
          if (Object.hasOwn(v, key) && walk((v as Record<string, unknown>)[key], k + 1, pred)) {
            return true;
          }
        }
      }
      return false;
    }
    return pred(v);
  };
  const some = (ctx: unknown, pred: (v: unknown) => boolean) => walk(ctx, 0, pred);
  return {
    path,
    definite,
    some,
    one: (ctx) => {
      let first: unknown;
      some(ctx, (v) => ((first = v), true));
      return first;
    },
    all: (ctx) => {
      const out: unknown[] = [];
      some(ctx, (v) => (out.push(v), false));
      return out;
    },
  };
}

/** Compiles tokens to a function returning every value the path yields (missing: none). */
export function compileAccessor(tokens: readonly PathToken[]): Accessor {
  return compilePath(tokens).all;
}

const cache = new Map<string, CompiledPath | null>();
const CACHE_MAX = 10_000;

/**
 * Values at a path outside a compiled ruleset (blacklist population, playbooks). The path is
 * parsed by the same grammar and compiled once; a path that does not parse yields nothing.
 */
export function valuesAt(path: string, ctx: unknown): unknown[] {
  let compiled = cache.get(path);
  if (compiled === undefined) {
    const p = parsePath(path);
    compiled = p.ok ? compilePath(p.tokens) : null;
    if (cache.size >= CACHE_MAX) cache.clear();
    cache.set(path, compiled);
  }
  return compiled ? compiled.all(ctx) : [];
}

/**
 * The string a scalar is counted and listed under: strings as they are, finite numbers in JS
 * notation. Empty strings, booleans, null, objects and arrays identify nothing: undefined.
 */
export function scalarKey(v: unknown): string | undefined {
  if (typeof v === 'string') return v.length > 0 ? v : undefined;
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : undefined;
  return undefined;
}
