import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
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

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/**
 * A JSON call through `app.inject` with a bearer token (the admin's by default; `null` for
 * none): status, the raw text and the parsed body.
 */
export async function injectJson(
  rt: Pick<Runtime, 'app'>,
  method: Method,
  url: string,
  body?: unknown,
  token: string | null = ADMIN,
) {
  const res = await rt.app.inject({
    method,
    url,
    headers: token ? auth(token) : {},
    ...(body === undefined ? {} : { payload: body as object }),
  });
  return {
    status: res.statusCode,
    text: res.body,
    body: res.body ? (JSON.parse(res.body) as Record<string, any>) : {},
  };
}

/**
 * The same call as injectJson over a real socket (the server must be listening at `base`), so
 * the server's own limits, timeouts and headers are in the path too.
 */
export async function httpJson(
  base: string,
  method: Method,
  url: string,
  body?: unknown,
  token: string | null = ADMIN,
) {
  const res = await request(`${base}${url}`, {
    method,
    headers: {
      ...(token ? auth(token) : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    text,
    body: text ? (JSON.parse(text) as Record<string, any>) : {},
  };
}
