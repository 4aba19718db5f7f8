// The CLI commands that talk to a running API: they read the token from VIGIL_TOKEN or the
// bootstrap token file the first `start` wrote into the data dir, and print readable output.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import type { Config } from '../config/config.ts';

export interface ApiClient {
  call(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    url: string,
    body?: unknown,
  ): Promise<{ status: number; body: unknown }>;
}

export const ADMIN_TOKEN_FILE = 'admin.token';

export function apiClient(config: Config): ApiClient {
  const base =
    config.client.apiUrl ??
    `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${config.apiPort}`;
  const tokenFile = path.join(config.dataDir, ADMIN_TOKEN_FILE);
  const token =
    config.client.token ??
    config.adminToken ??
    (existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : undefined);
  if (!token) {
    throw new Error(
      `no API token: set VIGIL_TOKEN (or VIGIL_ADMIN_TOKEN), or run 'vigil start' once to create ${tokenFile}`,
    );
  }
  return {
    async call(method, url, body) {
      let res;
      try {
        res = await request(`${base}${url}`, {
          method,
          headers: {
            authorization: `Bearer ${token}`,
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          headersTimeout: 30_000,
          bodyTimeout: 30_000,
        });
      } catch (err) {
        throw new Error(`cannot reach the Vigil API at ${base}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      const text = await res.body.text();
      return { status: res.statusCode, body: text ? (JSON.parse(text) as unknown) : null };
    },
  };
}

export function readJsonFile(file: string): unknown {
  if (!existsSync(file)) throw new Error(`${file}: no such file`);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as unknown;
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
}

/** An API error as one readable block: code, message and each issue on its own line. */
export function formatError(status: number, body: unknown): string {
  const b = (body ?? {}) as {
    error?: string;
    message?: string;
    issues?: { path: string; message: string }[];
  };
  const lines = [`error ${status} ${b.error ?? ''}: ${b.message ?? ''}`.trimEnd()];
  for (const i of b.issues ?? []) lines.push(`  - ${i.path || '(document)'}: ${i.message}`);
  return lines.join('\n');
}

/** A JSON value for a human: strings as they are, anything else as JSON. */
export function show(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '-' : JSON.stringify(v);
}

interface RuleLine {
  rule_id: string;
  result: string;
  action?: string;
  reason?: string;
  shadow?: boolean;
}

export function formatDecision(d: Record<string, unknown>): string {
  const lines = [
    `${show(d.decision)}  ${show(d.id)}  context=${show(d.context)}  ruleset=${show(d.ruleset_id)}  ${show(d.elapsed_ms)} ms`,
  ];
  if (d.workflow_id) lines.push(`  case: ${show(d.workflow_id)}`);
  if (Array.isArray(d.degraded) && d.degraded.length)
    lines.push(`  degraded: ${d.degraded.join(', ')}`);
  for (const r of (d.rules as RuleLine[] | undefined) ?? []) {
    const tail = [r.action, r.reason, r.shadow ? 'shadow' : undefined].filter(Boolean).join(' ');
    lines.push(`  ${r.result.padEnd(20)} ${r.rule_id}${tail ? `  (${tail})` : ''}`);
  }
  return lines.join('\n');
}
