// The `vigil` client commands (CONTRACT §7) against a real API on a socket: what they send and
// the readable lines they print.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runClientCommand } from '../../../cli/commands.ts';
import { loadConfig } from '../../../config/config.ts';
import { ADMIN, startRuntime } from './helpers.ts';

let rt: Awaited<ReturnType<typeof startRuntime>>;
let files: string;
let config: ReturnType<typeof loadConfig>;

async function vigil(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runClientCommand(
    config,
    argv,
    (l) => out.push(l),
    (l) => err.push(l),
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

function file(name: string, doc: unknown): string {
  const f = path.join(files, name);
  writeFileSync(f, JSON.stringify(doc));
  return f;
}

beforeAll(async () => {
  rt = await startRuntime();
  await rt.app.listen({ port: 0, host: '127.0.0.1' });
  const addr = rt.app.server.address();
  if (!addr || typeof addr === 'string') throw new Error('no address');
  files = mkdtempSync(path.join(tmpdir(), 'vigil-cli-'));
  config = loadConfig({
    VIGIL_DATA_DIR: rt.dir,
    VIGIL_TOKEN: ADMIN,
    VIGIL_API_URL: `http://127.0.0.1:${addr.port}`,
  });
});
afterAll(async () => {
  await rt?.close();
  if (files) rmSync(files, { recursive: true, force: true });
});

describe('vigil CLI', () => {
  let id = '';

  it('ruleset push and activate', async () => {
    const pushed = await vigil(
      'ruleset',
      'push',
      file('rs.json', {
        name: 'cli',
        context: 'cli',
        rules: [
          {
            id: 'big',
            type: 'condition',
            action: 'REVIEW',
            condition: { gte: { path: '$.transaction.amount', value: 1000 } },
          },
        ],
      }),
    );
    expect(pushed.code).toBe(0);
    id = /as (rs_[a-z0-9]+) \(DRAFT, context cli\)/.exec(pushed.out)?.[1] ?? '';
    expect(id).not.toBe('');
    const activated = await vigil('ruleset', 'activate', id);
    expect(activated).toMatchObject({ code: 0, out: `${id} is ACTIVE for context cli` });
  });

  it('decide prints the decision and its rules', async () => {
    const r = await vigil(
      'decide',
      file('d.json', { context: 'cli', transaction: { amount: 5000, currency: 'EUR' } }),
    );
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/REVIEW/);
    expect(r.out).toMatch(/big/);
  });

  it('a bad document exits 1 and names the field', async () => {
    const r = await vigil('ruleset', 'push', file('bad.json', { name: 'x', context: 'Bad' }));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/context/);
  });

  it('simulate takes a JSON array or the API body', async () => {
    const contexts = [{ transaction: { amount: 5 } }, { transaction: { amount: 5000 } }];
    for (const doc of [contexts, { decisions: contexts }]) {
      const r = await vigil('simulate', id, file('sim.json', doc));
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/^simulated 2 decisions on rs_/);
    }
  });

  it('playbook put prints the warnings the API gave', async () => {
    const r = await vigil(
      'playbook',
      'put',
      file('pb.json', {
        name: 'cli-pb',
        on: { decision: ['REVIEW'] },
        steps: [{ ticket: { integration: 'nowhere', action_id: 'open' } }],
      }),
    );
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/playbook cli-pb stored \(version 1\)/);
    expect(r.out).toMatch(/warning: steps\[0\]\.ticket\.integration: integration nowhere/);
  });

  it('an answer that is not the API’s (the proxy port, an origin) exits 1 saying so', async () => {
    const { createServer } = await import('node:http');
    const origin = createServer((_q, r) => {
      r.setHeader('content-type', 'application/json');
      r.end('{"shop":"demo"}');
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    const port = (origin.address() as { port: number }).port;
    const saved = config;
    config = loadConfig({
      VIGIL_DATA_DIR: rt.dir,
      VIGIL_TOKEN: ADMIN,
      VIGIL_API_URL: `http://127.0.0.1:${port}`,
    });
    try {
      const r = await vigil('decide', file('d2.json', { context: 'cli' }));
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/not the Vigil API's/);
      expect((await vigil('ruleset', 'activate', 'rs_x')).code).toBe(1);
    } finally {
      config = saved;
      await new Promise((r) => origin.close(r));
    }
  });

  it('an unknown command exits 2', async () => {
    expect((await vigil('frobnicate')).code).toBe(2);
  });
});
