// The rooms of ARCHITECTURE.md and what each may import. Enforced by eslint.config.js:
// room-to-room edges through import-x/no-restricted-paths, packages through the allowlist rule
// below. A file outside every room (config files, bench, test) is not limited here.

/** Packages each room may import (exact names or scope prefixes ending in '/'). */
export const PACKAGES = {
  rulesets: ['zod', 'jsonpath-plus'],
  integrations: ['zod', 'undici', 'prom-client', 'node:'],
  storage: [
    'zod',
    'better-sqlite3',
    'pg',
    'ioredis',
    '@platformatic/kafka',
    'prom-client',
    'node:',
  ],
  decisions: ['zod', 'prom-client', 'node:'],
  // Workflow code runs in Temporal's deterministic sandbox: nothing but the workflow SDK.
  workflows: ['@temporalio/workflow'],
  activities: [
    'zod',
    '@temporalio/activity',
    '@temporalio/worker',
    '@temporalio/client',
    'prom-client',
    'node:',
  ],
  proxy: [
    'zod',
    'fastify',
    'fastify-type-provider-zod',
    '@fastify/swagger',
    'undici',
    'ws',
    'yaml',
    '@temporalio/client',
    'prom-client',
    'node:',
  ],
  config: ['zod', 'node:'],
  cli: null, // the composition root: anything
};

/** Rooms each room may import from (besides itself). */
export const ROOMS = {
  rulesets: [],
  integrations: ['rulesets'],
  storage: ['rulesets'],
  decisions: ['rulesets', 'integrations', 'storage', 'workflows/contracts.ts'],
  workflows: ['rulesets', 'activities'], // activities only as types: vigil/workflow-type-only
  activities: ['integrations', 'storage', 'decisions', 'rulesets', 'workflows/contracts.ts'],
  proxy: ['decisions', 'storage', 'integrations', 'rulesets', 'config', 'workflows/contracts.ts'],
  config: [],
  cli: [
    'rulesets',
    'integrations',
    'storage',
    'decisions',
    'workflows',
    'activities',
    'proxy',
    'config',
  ],
};
export const ALL_ROOMS = [...Object.keys(ROOMS), 'test', 'bench'];
