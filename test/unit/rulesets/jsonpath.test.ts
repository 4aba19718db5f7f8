import { describe, expect, it } from 'vitest';
import {
  compilePath,
  formatPath,
  parsePath,
  PATH_LIMITS,
  scalarKey,
  valuesAt,
} from '../../../rulesets/jsonpath.ts';

describe('parsePath', () => {
  it.each([
    ['$', []],
    [
      '$.a.b',
      [
        { t: 'member', name: 'a' },
        { t: 'member', name: 'b' },
      ],
    ],
    ['$.acme-risk', [{ t: 'member', name: 'acme-risk' }]],
    ["$['a b']", [{ t: 'member', name: 'a b' }]],
    ['$["it\'s"]', [{ t: 'member', name: "it's" }]],
    [
      '$.items[0]',
      [
        { t: 'member', name: 'items' },
        { t: 'index', i: 0 },
      ],
    ],
    [
      '$.items[-1]',
      [
        { t: 'member', name: 'items' },
        { t: 'index', i: -1 },
      ],
    ],
    [
      '$.items[*].sku',
      [{ t: 'member', name: 'items' }, { t: 'wildcard' }, { t: 'member', name: 'sku' }],
    ],
    ['$.*', [{ t: 'wildcard' }]],
  ])('accepts %s', (path, tokens) => {
    const p = parsePath(path);
    expect(p).toMatchObject({ ok: true, tokens });
  });

  it.each([
    ['', /starting with/],
    ['a.b', /must start with/],
    ['$..a', /recursive descent/],
    ['$[?(@.a)]', /filter expression '\[\?\(@\.a\)\]'/],
    ['$[(@.length)]', /script expression/],
    ['$.a(1)', /script syntax/],
    ["$['a(b)']", /looks like a script/],
    ["$['@']", /looks like a script/],
    ["$['a\\u0000b']", /looks like a script/],
    ["$['a\u0001b']", /control character/],
    ["$['']", /empty member name/],
    ["$['a", /unterminated/],
    ['$.a[1:2]', /slice/],
    ['$.a[1,2]', /union/],
    ['$.a[x]', /unsupported bracket/],
    ['$.a[99999999]', /out of range/],
    ['$.a b', /unexpected ' b'/],
    ['$.1a', /member name after/],
    ['$@', /'@'/],
    ['$.constructor', /not allowed/],
    ['$.a.prototype', /not allowed/],
    [`$.${'a'.repeat(PATH_LIMITS.length)}`, /longer than 256/],
    ['$[*][*][*][*][*]', /more than 4 wildcards/],
    [`$${'.a'.repeat(33)}`, /more than 32 segments/],
  ])('refuses %j', (path, message) => {
    const p = parsePath(path);
    expect(p.ok).toBe(false);
    if (!p.ok) expect(p.message).toMatch(message);
  });

  it('refuses non-strings', () => {
    expect(parsePath(42).ok).toBe(false);
    expect(parsePath(undefined).ok).toBe(false);
  });

  it('spells paths one way, so different spellings share a canonical form', () => {
    expect(parsePath("$['customer']['id']")).toMatchObject({
      canonical: '$.customer.id',
      definite: true,
    });
    expect(parsePath('$.items.*["a b"][2]')).toMatchObject({
      canonical: "$.items[*]['a b'][2]",
      definite: false,
    });
    const p = parsePath("$['x.y']['it\"s']");
    expect(p.ok && formatPath(p.tokens)).toBe(`$['x.y']['it"s']`);
  });
});

describe('compilePath', () => {
  const ctx = {
    customer: { id: 'c1', tags: ['a', 'b'], nothing: null },
    items: [{ sku: 'A', tags: ['x'] }, { sku: 'B', tags: ['y', 'z'] }, { price: 3 }],
    map: { k1: { v: 1 }, k2: { v: 2 } },
  };

  it('reads definite paths', () => {
    expect(compilePath('$.customer.id').one(ctx)).toBe('c1');
    expect(compilePath('$.customer.tags[1]').one(ctx)).toBe('b');
    expect(compilePath('$.items[-1].price').one(ctx)).toBe(3);
    expect(compilePath('$.customer.nothing').all(ctx)).toEqual([null]);
    expect(compilePath('$.customer.missing.deeper').all(ctx)).toEqual([]);
    expect(compilePath('$').one(ctx)).toBe(ctx);
    expect(compilePath('$.a.b.c.d.e').one({ a: { b: { c: { d: { e: 5 } } } } })).toBe(5);
  });

  it('reads own JSON members only', () => {
    expect(compilePath('$.customer.tags.length').all(ctx)).toEqual([]);
    expect(compilePath('$.customer.id.length').all(ctx)).toEqual([]);
    expect(compilePath('$.customer.toString').all(ctx)).toEqual([]);
    expect(compilePath('$.customer.hasOwnProperty').all(ctx)).toEqual([]);
    expect(compilePath('$.items[5]').all(ctx)).toEqual([]);
    expect(compilePath('$.customer[0]').all(ctx)).toEqual([]);
  });

  it('expands wildcards over arrays and objects in document order', () => {
    expect(compilePath('$.items[*].sku').all(ctx)).toEqual(['A', 'B']);
    expect(compilePath('$.items[*].tags[*]').all(ctx)).toEqual(['x', 'y', 'z']);
    expect(compilePath('$.map.*.v').all(ctx)).toEqual([1, 2]);
    expect(compilePath('$.items[*].sku').one(ctx)).toBe('A');
    expect(compilePath('$.nothing[*]').all(ctx)).toEqual([]);
  });

  it('stops at the first value that satisfies some()', () => {
    const seen: unknown[] = [];
    const hit = compilePath('$.items[*].tags[*]').some(ctx, (v) => (seen.push(v), v === 'y'));
    expect(hit).toBe(true);
    expect(seen).toEqual(['x', 'y']);
  });

  it('throws on a path that does not parse (compiled paths are validated first)', () => {
    expect(() => compilePath('$..a')).toThrow(/recursive descent/);
  });
});

describe('valuesAt', () => {
  it('reads validated paths and yields nothing for invalid ones', () => {
    expect(valuesAt('$.device.ip', { device: { ip: '1.2.3.4' } })).toEqual(['1.2.3.4']);
    expect(valuesAt('$[?(@.x)]', { x: 1 })).toEqual([]);
  });
});

describe('scalarKey', () => {
  it('keys strings and finite numbers; nothing else identifies a value', () => {
    expect(scalarKey('crd_1')).toBe('crd_1');
    expect(scalarKey(42)).toBe('42');
    expect(scalarKey(1.5)).toBe('1.5');
    for (const v of ['', true, null, undefined, {}, [], Number.NaN, Infinity]) {
      expect(scalarKey(v)).toBeUndefined();
    }
  });
});
