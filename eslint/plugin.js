import { isBuiltin } from 'node:module';
import path from 'node:path';
import { PACKAGES } from './rooms.js';

const root = path.resolve(import.meta.dirname, '..');

function roomOf(filename) {
  const rel = path.relative(root, filename).split(path.sep);
  return rel.length > 1 ? rel[0] : undefined;
}

function packageAllowed(spec, allowed) {
  return allowed.some((a) =>
    a.endsWith(':') || a.endsWith('/')
      ? spec.startsWith(a)
      : spec === a || spec.startsWith(`${a}/`),
  );
}

/** Bare specifiers (packages and node: builtins) outside the room's allowlist are refused. */
const allowedPackages = {
  meta: {
    type: 'problem',
    docs: { description: 'Limit each room to the packages ARCHITECTURE.md allows it' },
    schema: [],
    messages: {
      refused: "'{{spec}}' may not be imported from {{room}}/ (allowed: {{allowed}})",
    },
  },
  create(context) {
    const room = roomOf(context.filename);
    const allowed = room ? PACKAGES[room] : null;
    if (!allowed) return {};
    const check = (node, source) => {
      if (!source || typeof source.value !== 'string') return;
      const spec = source.value;
      if (spec.startsWith('.') || spec.startsWith('/')) return;
      // Bare builtin names (`fs`) count as node: builtins.
      const normalized =
        /^[a-z_]+$/.test(spec) && !allowed.includes(spec) && isBuiltin(spec)
          ? `node:${spec}`
          : spec;
      // Type-only imports of a package are erased and never run, except in workflows where
      // the bundler still resolves them: allow them everywhere else.
      if (node.importKind === 'type' && room !== 'workflows') return;
      if (!packageAllowed(normalized, allowed)) {
        context.report({
          node: source,
          messageId: 'refused',
          data: { spec, room, allowed: allowed.join(', ') || 'none' },
        });
      }
    };
    return {
      ImportDeclaration: (n) => check(n, n.source),
      ExportNamedDeclaration: (n) => n.source && check(n, n.source),
      ExportAllDeclaration: (n) => check(n, n.source),
      ImportExpression: (n) => check(n, n.source),
    };
  },
};

/** Workflow files may import other rooms' code only as types (rulesets' pure helpers excepted). */
const workflowTypeOnly = {
  meta: {
    type: 'problem',
    docs: { description: 'Workflow code imports activities only as types' },
    schema: [],
    messages: { typeOnly: "workflows/ may import '{{spec}}' only with `import type`" },
  },
  create(context) {
    if (roomOf(context.filename) !== 'workflows') return {};
    return {
      ImportDeclaration(n) {
        const spec = n.source.value;
        if (typeof spec !== 'string' || !spec.includes('activities/')) return;
        const typeOnly =
          n.importKind === 'type' || n.specifiers.every((s) => s.importKind === 'type');
        if (!typeOnly) context.report({ node: n.source, messageId: 'typeOnly', data: { spec } });
      },
    };
  },
};

export default {
  rules: { 'allowed-packages': allowedPackages, 'workflow-type-only': workflowTypeOnly },
};
