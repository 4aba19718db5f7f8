// Who owns a data dir's embedded Temporal dev server: a second `vigil start` on the same data
// dir is refused (the two shared the server, and the first to stop took it from the other),
// and a server left by a start that was killed (SIGKILL leaves no time to stop it) is stopped
// by the next start instead of being reused and then living forever.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import { startEmbeddedTemporal } from '../../../cli/embedded-temporal.ts';

const services = inject('services');
const dirs: string[] = [];
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'vigil-owner-'));
  dirs.push(d);
  return d;
}

/** A process that looks like a dev server to the ownership check (its argv holds start-dev). */
function fake(name: string): ChildProcess {
  const c = spawn('bash', ['-c', `exec -a ${name} sleep 60`], { stdio: 'ignore' });
  children.push(c);
  return c;
}

it('refuses a data dir whose dev server another live vigil start owns', async () => {
  const dir = tempDir();
  const owner = fake('vigil-owner');
  const server = fake('temporal-start-dev');
  writeFileSync(path.join(dir, 'temporal.pid'), `${server.pid} ${owner.pid}\n`);
  await expect(
    startEmbeddedTemporal({ bin: services.temporalBin, dataDir: dir, log: () => {} }),
  ).rejects.toThrow(/another vigil start \(pid \d+\) runs on it/);
  expect(server.exitCode === null && server.signalCode === null).toBe(true);
});

it('stops the dev server a killed start left, and starts its own', async () => {
  const dir = tempDir();
  const gone = spawn('true');
  await new Promise((r) => gone.once('exit', r));
  const orphan = fake('temporal-start-dev');
  writeFileSync(path.join(dir, 'temporal.pid'), `${orphan.pid} ${gone.pid}\n`);
  const orphanGone = new Promise((r) => orphan.once('exit', r));
  const t = await startEmbeddedTemporal({ bin: services.temporalBin, dataDir: dir, log: () => {} });
  try {
    await orphanGone;
    expect(t.address).toMatch(/^127\.0\.0\.1:\d+$/);
  } finally {
    await t.stop();
  }
}, 90_000);
