// Starts the real services (Temporal dev server, Kafka, Redis, PostgreSQL) once per test run
// through scripts/services.sh and hands their addresses to the tests with `provide`.
// VIGIL_SERVICES_ENV=path/to/services.env reuses services that are already running.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { type Services, parseServicesEnv } from './services.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    services: Services;
  }
}

const root = path.resolve(import.meta.dirname, '../..');

export default function setup(project: TestProject): () => void {
  const reuse = process.env.VIGIL_SERVICES_ENV;
  if (reuse) {
    project.provide('services', parseServicesEnv(readFileSync(reuse, 'utf8'), path.dirname(reuse)));
    return () => {};
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'vigil-services-'));
  const script = path.join(root, 'scripts/services.sh');
  const t0 = Date.now();
  execFileSync('bash', [script, 'up', dir], { stdio: ['ignore', 'inherit', 'inherit'] });
  console.log(`[services] up in ${((Date.now() - t0) / 1000).toFixed(1)}s (${dir})`);
  project.provide(
    'services',
    parseServicesEnv(readFileSync(path.join(dir, 'services.env'), 'utf8'), dir),
  );
  return () => {
    execFileSync('bash', [script, 'down', dir], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (!process.env.VIGIL_KEEP_SERVICES) rmSync(dir, { recursive: true, force: true });
  };
}
