// `vigil worker` does nothing without Temporal: its /readyz requires it (the API's does not:
// decisions answer and handoffs wait in the outbox). A worker that cannot reach Temporal at
// start exits instead (startup-failures.test.ts); this is the check for one that loses it later.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { buildRuntime, type Runtime } from '../../../cli/runtime.ts';
import { loadConfig } from '../../../config/config.ts';

const runtimes: Runtime[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const rt of runtimes) await rt.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

it.each([
  [true, 503],
  [false, 200],
])('with Temporal unreachable, temporalRequired=%s → /readyz %i', async (required, status) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vigil-ready-'));
  dirs.push(dir);
  const address = `127.0.0.1:${await closedPort()}`;
  const rt = await buildRuntime(
    loadConfig({ VIGIL_DATA_DIR: dir, VIGIL_ADMIN_TOKEN: 'vgl_ready_admin_token_0123456789abcd' }),
    { serveApi: false, temporalAddress: address, temporalRequired: required },
  );
  runtimes.push(rt);
  const r = await rt.app.inject({ url: '/readyz' });
  expect(r.statusCode).toBe(status);
  expect(JSON.parse(r.body).dependencies.temporal).toMatchObject({ state: 'down', required });
});
