// Worker processes sharing one listening socket; the primary restarts a worker that dies.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { eventually, startOrigin, type Origin } from './helpers.ts';

let origin: Origin;
let primary: ChildProcess;
const ready: { pid: number; port: number }[] = [];

beforeAll(async () => {
  origin = await startOrigin();
  primary = spawn(
    process.execPath,
    [path.join(import.meta.dirname, 'fixtures/cluster-main.ts'), origin.url, '2'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  createInterface({ input: primary.stdout! }).on('line', (line) => {
    const m = /^ready (\d+) (\d+)$/.exec(line);
    if (m) ready.push({ pid: Number(m[1]), port: Number(m[2]) });
  });
  await eventually(() => ready.length >= 2, 20_000);
});

afterAll(async () => {
  if (primary && primary.exitCode === null) {
    primary.kill('SIGKILL');
    await new Promise((r) => primary.once('exit', r));
  }
  await origin?.close();
});

async function get(port: number): Promise<number> {
  // A fresh connection each time: a pooled one may belong to the worker just killed.
  const res = await request(`http://127.0.0.1:${port}/hello`, {
    reset: true,
    headersTimeout: 5_000,
  });
  await res.body.dump();
  return res.statusCode;
}

describe('proxy cluster', () => {
  it('runs the configured number of workers on one port', async () => {
    expect(new Set(ready.map((r) => r.pid)).size).toBe(2);
    expect(new Set(ready.map((r) => r.port)).size).toBe(1);
    const port = ready[0]!.port;
    const statuses = await Promise.all(Array.from({ length: 20 }, () => get(port)));
    expect(statuses.every((s) => s === 200)).toBe(true);
  });

  it('restarts a worker that dies, and keeps serving meanwhile', async () => {
    const port = ready[0]!.port;
    const victim = ready[0]!.pid;
    process.kill(victim, 'SIGKILL');
    expect(await get(port)).toBe(200);
    await eventually(() => ready.length >= 3, 20_000);
    const fresh = ready[2]!;
    expect(fresh.pid).not.toBe(victim);
    expect(fresh.port).toBe(port);
    expect(await get(port)).toBe(200);
  });

  it('stops every worker on SIGTERM', async () => {
    const exited = new Promise<number | null>((r) => primary.once('exit', (code) => r(code)));
    primary.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const { pid } of ready) {
      expect(() => process.kill(pid, 0)).toThrow();
    }
  });
});
