// Route file reloads: on file change, on SIGHUP and on demand; a bad file keeps the old config;
// requests in flight finish on the config they started with.
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import {
  eventually,
  metricValue,
  startOrigin,
  startProxy,
  type Origin,
  type TestProxy,
} from './helpers.ts';

let a: Origin;
let b: Origin;
let dir: string;
let file: string;
let p: TestProxy;

const yaml = (originUrl: string, extra = '') => `
mode: active
origins:
  shop: "${originUrl}"
routes:
  - match: { method: POST, path: /login }
    origin: shop
    context: login
    extract:
      "$.customer.email": { from: body, field: email }
${extra}
  - match: { path: "/*" }
    origin: shop
`;

/** Replace the file the way editors do: write a sibling, rename over. */
function replaceFile(text: string) {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

async function whoAnswers(url: string): Promise<number> {
  const res = await request(`${url}/who`);
  const body = (await res.body.json()) as { headers: Record<string, string> };
  return Number(body.headers.host?.split(':')[1]);
}

beforeAll(async () => {
  a = await startOrigin();
  b = await startOrigin();
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-routes-'));
  file = path.join(dir, 'routes.yaml');
  writeFileSync(file, yaml(a.url));
  p = await startProxy({ config: file, watch: true, sighup: true });
});
afterAll(async () => {
  await p?.close();
  await a?.close();
  await b?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('config reload', () => {
  it('starts at version 1 and follows a file change', async () => {
    expect(p.proxy.version).toBe(1);
    expect(await whoAnswers(p.url)).toBe(a.port);
    replaceFile(yaml(b.url));
    await eventually(() => p.proxy.version === 2);
    expect(await whoAnswers(p.url)).toBe(b.port);
    expect(await metricValue(p.registry, 'vigil_proxy_config_version')).toBe(2);
  });

  it('keeps the old config when the new file is bad, and says why', async () => {
    const errorsBefore = await metricValue(p.registry, 'vigil_proxy_config_reloads_total', {
      result: 'error',
    });
    replaceFile(yaml(a.url).replace('{ from: body, field: email }', '{ from: bdy, field: email }'));
    await eventually(
      async () =>
        (await metricValue(p.registry, 'vigil_proxy_config_reloads_total', { result: 'error' })) >
        errorsBefore,
    );
    expect(p.proxy.version).toBe(2);
    expect(await whoAnswers(p.url)).toBe(b.port);
    const r = await p.proxy.reload();
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.issues[0]?.path).toBe('routes[0].extract.$.customer.email.from');
      expect(r.error).toContain(file);
    }
    replaceFile('mode: [unterminated');
    await sleep(400);
    expect(p.proxy.version).toBe(2);
    expect(await whoAnswers(p.url)).toBe(b.port);
  });

  it('reloads on SIGHUP and on demand; unchanged content is a no-op', async () => {
    // Written in place without a watch event we could miss: SIGHUP picks it up.
    writeFileSync(file, yaml(a.url));
    process.kill(process.pid, 'SIGHUP');
    await eventually(() => p.proxy.version === 3);
    expect(await whoAnswers(p.url)).toBe(a.port);
    const again = await p.proxy.reload();
    expect(again).toEqual({ ok: true, version: 3, hash: p.proxy.config.hash, changed: false });
    // The in-place write also fired the watcher: let its (no-op) reload pass.
    await sleep(400);
    expect(p.proxy.version).toBe(3);
  });

  it('lets a request in flight finish on the origin it started with', async () => {
    const slow = request(`${p.url}/slow?ms=600`);
    await sleep(100);
    replaceFile(yaml(b.url));
    await eventually(() => p.proxy.version === 4);
    const res = await slow;
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as { headers: Record<string, string> };
    expect(body.headers.host).toBe(`127.0.0.1:${a.port}`);
    expect(await whoAnswers(p.url)).toBe(b.port);
  });

  it('refuses a bad document handed to reload()', async () => {
    const r = await p.proxy.reload({ mode: 'active', origins: {}, routes: [] });
    expect(r.ok).toBe(false);
    expect(p.proxy.version).toBe(4);
  });
});

describe('a route file among other changing files', () => {
  it('reloads once per edit of the route file, not on every change next to it', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'vigil-routes-'));
    const f = path.join(d, 'routes.yaml');
    writeFileSync(f, yaml(a.url));
    mkdirSync(path.join(d, 'data'));
    const q = await startProxy({ config: f, watch: true });
    const reloads = async (result: string) =>
      metricValue(q.registry, 'vigil_proxy_config_reloads_total', { result });
    // Writes next to the route file, each after the reload debounce (150 ms) has run out.
    const busyNeighbours = async () => {
      for (let i = 0; i < 6; i++) {
        writeFileSync(path.join(d, 'vigil.db-wal'), `page ${i}`);
        writeFileSync(path.join(d, 'data', 'events.log'), `line ${i}`);
        await sleep(200);
      }
    };
    try {
      writeFileSync(`${f}.tmp`, yaml(a.url).replace('from: body', 'from: bdy'));
      renameSync(`${f}.tmp`, f);
      await eventually(async () => (await reloads('error')) > 0);
      await busyNeighbours();
      expect(await reloads('error')).toBe(1);

      writeFileSync(f, yaml(b.url));
      await eventually(() => q.proxy.version === 2);
      await busyNeighbours();
      expect(await reloads('ok')).toBe(1);
      expect(await reloads('error')).toBe(1);
      expect(await reloads('unchanged')).toBe(0);
    } finally {
      await q.close();
      rmSync(d, { recursive: true, force: true });
    }
  });
});
