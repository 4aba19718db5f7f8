// A process that cannot start says which setting is wrong and exits non-zero, with nothing
// left running: it used to print the error and hang (the store's thread, the event sink, a
// dev server kept it alive), so a supervisor never restarted it.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { freePort } from '../../helpers/net.ts';

const root = path.resolve(import.meta.dirname, '../../..');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function run(role: string, env: Record<string, string>) {
  const dir = mkdtempSync(path.join(tmpdir(), 'vigil-startfail-'));
  dirs.push(dir);
  const base = { ...process.env };
  for (const k of [
    'REDIS_URL',
    'DATABASE_URL',
    'KAFKA_BROKERS',
    'TEMPORAL_ADDRESS',
    'VIGIL_CONFIG',
  ])
    delete base[k];
  const child = spawn(process.execPath, ['--no-warnings', path.join(root, 'cli/main.ts'), role], {
    env: {
      ...base,
      VIGIL_DATA_DIR: dir,
      VIGIL_ADMIN_TOKEN: 'vigil_test_admin_token_startfail_0123456789',
      API_PORT: String(await freePort()),
      PORT: String(await freePort()),
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const t0 = Date.now();
  const code = await new Promise<number | null>((resolve) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      resolve(null);
    }, 20_000);
    child.once('exit', (c) => {
      clearTimeout(t);
      resolve(c);
    });
  });
  return { code, stderr, ms: Date.now() - t0 };
}

it.each([
  ['api', { VIGIL_TRUSTED_PROXIES: 'notanip' }, /VIGIL_TRUSTED_PROXIES/],
  ['proxy', {}, /VIGIL_CONFIG/],
  ['worker', { TEMPORAL_ADDRESS: '127.0.0.1:9' }, /TEMPORAL_ADDRESS/],
] as const)('`vigil %s` with %o exits 1 naming the setting', async (role, env, named) => {
  const r = await run(role, env);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(named);
  expect(r.ms).toBeLessThan(15_000);
});
