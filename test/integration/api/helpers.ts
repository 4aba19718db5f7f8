import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildRuntime, type Runtime } from '../../../cli/runtime.ts';
import { loadConfig } from '../../../config/config.ts';

export const ADMIN = 'vgl_test_admin_token_0123456789abcdefghij';

export async function startRuntime(
  env: Record<string, string> = {},
): Promise<Runtime & { dir: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vigil-api-'));
  const config = loadConfig({ VIGIL_DATA_DIR: dir, VIGIL_ADMIN_TOKEN: ADMIN, ...env });
  const rt = await buildRuntime(config, { serveApi: true });
  const close = rt.close;
  return Object.assign(rt, {
    dir,
    close: async () => {
      await close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

export const auth = (token = ADMIN) => ({ authorization: `Bearer ${token}` });
