// A 1 GiB upload streamed through a pass-through route: the bytes arrive intact and the proxy's
// memory stays flat. The proxy runs in its own process so its peak RSS (VmHWM) is its own; the
// bound is on what the upload adds to the idle process (Node, TypeScript stripping and undici's
// wasm parser already take ~110 MB at rest), which a buffered body would blow through.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startOrigin, type Origin } from './helpers.ts';

const GiB = 1024 * 1024 * 1024;
const CHUNK = 1024 * 1024;
/** What the upload may add to the idle proxy's resident memory. */
const RSS_GROWTH_LIMIT_MB = 150;

let origin: Origin;
let child: ChildProcess;
let port: number;
let pid: number;

function statusKb(p: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(
    readFileSync(`/proc/${p}/status`, 'utf8'),
  );
  return Number(m?.[1] ?? Number.NaN);
}

beforeAll(async () => {
  origin = await startOrigin();
  const config = {
    mode: 'active',
    origins: { shop: origin.url },
    routes: [{ match: { path: '/*' }, origin: 'shop', timeout_ms: 60_000 }],
  };
  child = spawn(
    process.execPath,
    [path.join(import.meta.dirname, 'fixtures/proxy-child.ts'), JSON.stringify(config)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`proxy child exited with ${code}`)));
  });
  ({ port, pid } = JSON.parse(first) as { port: number; pid: number });
});

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  await origin?.close();
});

describe('a 1 GiB upload through a pass-through route', () => {
  it('arrives byte for byte while the proxy grows by less than 150 MB RSS', async () => {
    const base = randomBytes(CHUNK);
    const sent = createHash('sha256');
    function* body() {
      for (let i = 0; i < GiB / CHUNK; i++) {
        const chunk = Buffer.allocUnsafe(CHUNK);
        base.copy(chunk);
        // Every MiB differs, so a repeated or dropped chunk changes the hash.
        chunk.writeUInt32BE(i, 0);
        sent.update(chunk);
        yield chunk;
      }
    }
    const idleMb = statusKb(pid, 'VmRSS') / 1024;
    const t0 = performance.now();
    const res = await request(`http://127.0.0.1:${port}/upload/1gib`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(GiB) },
      body: Readable.from(body()),
      headersTimeout: 120_000,
      bodyTimeout: 120_000,
    });
    const seconds = (performance.now() - t0) / 1000;
    const got = (await res.body.json()) as { bytes: number; sha256: string };
    const peakMb = statusKb(pid, 'VmHWM') / 1024;
    console.log(
      `[1GiB upload] ${seconds.toFixed(1)} s (${(1024 / seconds).toFixed(0)} MiB/s); proxy RSS ` +
        `${idleMb.toFixed(0)} MB idle, peak ${peakMb.toFixed(0)} MB (+${(peakMb - idleMb).toFixed(0)} MB)`,
    );
    expect(res.statusCode).toBe(200);
    expect(got.bytes).toBe(GiB);
    expect(got.sha256).toBe(sent.digest('hex'));
    expect(peakMb - idleMb).toBeLessThan(RSS_GROWTH_LIMIT_MB);
  });
});
