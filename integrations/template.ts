// Templates in integration documents. Two forms, both inert (no code, no helpers, no loops):
// - a string leaf that is exactly a JSONPath (`"$.transaction.amount"`) is replaced by the value
//   at that path (a path with wildcards: every value, as an array; missing: left out);
// - in action templates, `{{decision.id}}` placeholders inside strings are replaced by the text
//   of the value at that dotted name (missing: empty string; objects: their JSON).
// Paths use the engine's grammar (rulesets/jsonpath.ts); nothing is handed to an evaluator.
import { compilePath, parsePath, type CompiledPath } from '../rulesets/jsonpath.ts';
import { isPathLeaf } from './schema.ts';

export type Render = (ctx: unknown) => unknown;

/** Compiles a backend `request` template once per document load. */
export function compileTemplate(tpl: unknown): Render {
  if (typeof tpl === 'string') {
    if (!isPathLeaf(tpl)) return () => tpl;
    const parsed = parsePath(tpl);
    if (!parsed.ok) return () => tpl;
    const p = compilePath(parsed.tokens);
    return p.definite ? p.one : p.all;
  }
  if (Array.isArray(tpl)) {
    const parts = tpl.map(compileTemplate);
    return (ctx) => parts.map((r) => r(ctx));
  }
  if (tpl !== null && typeof tpl === 'object') {
    const entries = Object.entries(tpl).map(([k, v]) => [k, compileTemplate(v)] as const);
    return (ctx) => {
      const out: Record<string, unknown> = {};
      for (const [k, r] of entries) {
        const v = r(ctx);
        if (v !== undefined) out[k] = v;
      }
      return out;
    };
  }
  return () => tpl;
}

const pathCache = new Map<string, CompiledPath | null>();
const PATH_CACHE_MAX = 5_000;

function pathFor(s: string): CompiledPath | null {
  let c = pathCache.get(s);
  if (c === undefined) {
    const parsed = parsePath(s);
    c = parsed.ok ? compilePath(parsed.tokens) : null;
    if (pathCache.size >= PATH_CACHE_MAX) pathCache.clear();
    pathCache.set(s, c);
  }
  return c;
}

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}/g;
const FORBIDDEN = new Set(['__proto__', 'prototype', 'constructor']);

/** The value at a dotted name, own properties only (array indexes as digits). */
export function lookupDotted(ctx: unknown, name: string): unknown {
  let v = ctx;
  for (const k of name.split('.')) {
    if (FORBIDDEN.has(k)) return undefined;
    if (Array.isArray(v) && /^\d+$/.test(k)) v = v[Number(k)];
    else if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.hasOwn(v, k)) {
      v = (v as Record<string, unknown>)[k];
    } else return undefined;
  }
  return v;
}

function asText(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

export function renderString(
  s: string,
  ctx: unknown,
  encode: (value: string) => string = (v) => v,
): string {
  if (!s.includes('{{')) return s;
  return s.replace(PLACEHOLDER, (_m, name: string) => encode(asText(lookupDotted(ctx, name))));
}

/** Renders an action template against the action's context. */
export function renderAction(tpl: unknown, ctx: unknown, depth = 0): unknown {
  if (depth > 32) return undefined;
  if (typeof tpl === 'string') {
    if (isPathLeaf(tpl)) {
      const p = pathFor(tpl);
      if (p) return p.definite ? p.one(ctx) : p.all(ctx);
    }
    return renderString(tpl, ctx);
  }
  if (Array.isArray(tpl)) return tpl.map((x) => renderAction(x, ctx, depth + 1) ?? null);
  if (tpl !== null && typeof tpl === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(tpl)) {
      const r = renderAction(v, ctx, depth + 1);
      if (r !== undefined) out[k] = r;
    }
    return out;
  }
  return tpl;
}
