// A 1 GiB upload streamed through a pass-through route of `vigil proxy`: the bytes arrive intact
// and the worker process that forwards them stays under 150 MB resident at its peak (VmHWM), a
// bound a buffered body would blow through. The proxy runs as it ships: `vigil proxy` with two
// worker processes (the primary only supervises and counts); the worker measured is the one
// that served the upload, idle figure included, so what it loads at rest counts too.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startOrigin, type Origin } from './helpers.ts';

const GiB = 1024 * 1024 * 1024;
const CHUNK = 1024 * 1024;
/** The forwarding process's peak resident memory, idle footprint included. */
const PEAK_RSS_LIMIT_MB = 150;
const root = path.resolve(import.meta.dirname, '../../..');

let origin: Origin;
let dir: string;
let child: ChildProcess;
let port: number;
let workers: number[] = [];

function statusKb(p: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(
    readFileSync(`/proc/${p}/status`, 'utf8'),
  );
  return Number(m?.[1] ?? Number.NaN);
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = s.address() as net.AddressInfo;
      s.close(() => resolve(p));
    });
  });
}

beforeAll(async () => {
  origin = await startOrigin();
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-upload-'));
  const routes = path.join(dir, 'routes.json');
  writeFileSync(
    routes,
    JSON.stringify({
      mode: 'active',
      origins: { shop: origin.url },
      routes: [{ match: { path: '/*' }, origin: 'shop', timeout_ms: 60_000 }],
    }),
  );
  port = await freePort();
  const apiPort = await freePort();
  const env = { ...process.env };
  for (const k of ['REDIS_URL', 'DATABASE_URL', 'KAFKA_BROKERS', 'TEMPORAL_ADDRESS']) delete env[k];
  child = spawn(process.execPath, ['--no-warnings', path.join(root, 'cli/main.ts'), 'proxy'], {
    env: {
      ...env,
      VIGIL_DATA_DIR: dir,
      VIGIL_CONFIG: routes,
      VIGIL_DEMO: '0',
      VIGIL_PROXY_WORKERS: '2',
      PORT: String(port),
      API_PORT: String(apiPort),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  // The primary's /readyz names the workers once both listen.
  for (let i = 0; i < 300 && workers.length < 2; i++) {
    try {
      const r = await request(`http://127.0.0.1:${apiPort}/readyz`);
      const body = (await r.body.json()) as any;
      const detail: string = body.dependencies?.proxy_workers?.detail ?? '';
      if (detail.startsWith('2/2 listening'))
        workers = [...(detail.split('; ')[1] ?? '').matchAll(/(\d+) listening/g)].map((m) =>
          Number(m[1]),
        );
    } catch {
      // not up yet
    }
    if (workers.length < 2) await sleep(100);
  }
  expect(workers).toHaveLength(2);
}, 60_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  await origin?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a 1 GiB upload through a pass-through route', () => {
  it('arrives byte for byte while the forwarding worker stays under 150 MB RSS', async () => {
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
    const idle = new Map(workers.map((w) => [w, statusKb(w, 'VmRSS') / 1024]));
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
    // The worker that forwarded it: the one whose peak moved furthest from its idle size.
    const [pid, peakMb] = workers
      .map((w) => [w, statusKb(w, 'VmHWM') / 1024] as const)
      .sort((a, b) => b[1] - idle.get(b[0])! - (a[1] - idle.get(a[0])!))[0]!;
    const idleMb = idle.get(pid)!;
    console.log(
      `[1GiB upload] ${seconds.toFixed(1)} s (${(1024 / seconds).toFixed(0)} MiB/s); proxy worker RSS ` +
        `${idleMb.toFixed(0)} MB idle, peak ${peakMb.toFixed(0)} MB (+${(peakMb - idleMb).toFixed(0)} MB)`,
    );
    expect(res.statusCode).toBe(200);
    expect(got.bytes).toBe(GiB);
    expect(got.sha256).toBe(sent.digest('hex'));
    expect(peakMb).toBeLessThan(PEAK_RSS_LIMIT_MB);
  });
});
