// `vigil api` and `vigil proxy` as real processes on one data dir (embedded store, in-process
// counters, the event file), the API with the same routes file for /api/authz: what the tests
// of the product's own decide path through the proxy start from.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { expect } from 'vitest';
import { eventually, freePort } from './helpers.ts';

const root = path.resolve(import.meta.dirname, '../../..');

export interface VigilProcesses {
  dir: string;
  apiUrl: string;
  proxyPort: number;
  proxyUrl: string;
  /** An admin call to the API: status, headers and the parsed body. */
  api(
    method: 'GET' | 'POST',
    url: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; headers: Record<string, unknown>; body: any }>;
  /** The event values written to the data dir's event file so far. */
  events(): Record<string, any>[];
  close(): Promise<void>;
}

async function up(check: () => Promise<boolean>): Promise<void> {
  await eventually(async () => {
    try {
      return await check();
    } catch {
      return false; // not listening yet
    }
  }, 60_000);
}

export async function startVigilProcesses(opts: {
  name: string;
  token: string;
  routes: object;
  /** Created and activated through the API before the proxy starts. */
  rulesets: object[];
}): Promise<VigilProcesses> {
  const dir = mkdtempSync(path.join(tmpdir(), `vigil-${opts.name}-`));
  writeFileSync(path.join(dir, 'routes.json'), JSON.stringify(opts.routes));
  const children: ChildProcess[] = [];
  const vigil = (role: 'api' | 'proxy', env: Record<string, string>) => {
    const base = { ...process.env };
    for (const k of ['REDIS_URL', 'DATABASE_URL', 'KAFKA_BROKERS', 'TEMPORAL_ADDRESS'])
      delete base[k];
    children.push(
      spawn(process.execPath, ['--no-warnings', path.join(root, 'cli/main.ts'), role], {
        env: {
          ...base,
          VIGIL_DATA_DIR: dir,
          VIGIL_ADMIN_TOKEN: opts.token,
          VIGIL_DEMO: '0',
          VIGIL_CONFIG: path.join(dir, 'routes.json'),
          VIGIL_PROXY_WORKERS: '1',
          ...env,
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      }),
    );
  };
  const apiPort = await freePort();
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const api: VigilProcesses['api'] = async (method, url, body, headers = {}) => {
    const r = await request(`${apiUrl}${url}`, {
      method,
      headers: {
        authorization: `Bearer ${opts.token}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await r.body.text();
    return { status: r.statusCode, headers: r.headers, body: text ? JSON.parse(text) : {} };
  };
  const close = async () => {
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    vigil('api', { API_PORT: String(apiPort) });
    await up(async () => {
      const r = await request(`${apiUrl}/readyz`);
      await r.body.dump();
      return r.statusCode === 200;
    });
    for (const doc of opts.rulesets) {
      const created = await api('POST', '/api/admin/rulesets', doc);
      expect(created.status).toBe(201);
      expect((await api('POST', `/api/admin/rulesets/${created.body.id}/activate`)).status).toBe(
        200,
      );
    }
    const proxyPort = await freePort();
    const proxyUrl = `http://127.0.0.1:${proxyPort}`;
    vigil('proxy', { PORT: String(proxyPort), API_PORT: String(await freePort()) });
    await up(async () => {
      const r = await request(`${proxyUrl}/hello`);
      await r.body.dump();
      return r.statusCode === 200;
    });
    return {
      dir,
      apiUrl,
      proxyPort,
      proxyUrl,
      api,
      events: () => {
        const d = path.join(dir, 'events');
        // Made by the event file's first write.
        if (!existsSync(d)) return [];
        return readdirSync(d)
          .filter((f) => f.endsWith('.ndjson'))
          .flatMap((f) => readFileSync(path.join(d, f), 'utf8').split('\n'))
          .filter(Boolean)
          .map((l) => {
            const line = JSON.parse(l) as { value?: Record<string, any> };
            return line.value ?? (line as Record<string, any>);
          });
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
