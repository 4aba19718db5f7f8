// The embedded store is shared by several processes (proxy, API, worker): these tests run real
// child processes on one SQLite file.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../../storage/migrations.ts';
import { openStore } from '../../../storage/store.ts';

const run = promisify(execFile);
const child = path.join(import.meta.dirname, 'fixtures/sqlite-child.ts');

async function spawnChild(
  dataDir: string,
  task: string,
  arg = '',
): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, ['--no-warnings', child, dataDir, task, arg], {
    timeout: 60_000,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

describe('SQLite store shared by several processes', () => {
  const dirs: string[] = [];
  const fresh = () => {
    const d = mkdtempSync(path.join(tmpdir(), 'vigil-mp-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('migrates once when four processes open a new file at the same moment', async () => {
    const dataDir = fresh();
    const results = await Promise.all([1, 2, 3, 4].map(() => spawnChild(dataDir, 'open')));
    expect(results).toHaveLength(4);
    const raw = new Database(path.join(dataDir, 'vigil.sqlite'), { readonly: true });
    try {
      const versions = raw
        .prepare('SELECT version FROM schema_migrations ORDER BY version')
        .all() as {
        version: number;
      }[];
      expect(versions.map((v) => v.version)).toEqual(MIGRATIONS.map((m) => m.version));
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      raw.close();
    }
  });

  it('three processes activating, logging decisions and claiming the outbox at once stay consistent', async () => {
    const dataDir = fresh();
    const store = await openStore({ dataDir });
    const drafts = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        store.createRuleset({ name: `d${i}`, context: 'mp', document: { i } }),
      ),
    );
    const items = [];
    for (let i = 0; i < 400; i++)
      items.push(await store.enqueue({ kind: 'handoff', key: `k${i}`, payload: { i } }));
    await store.close();

    const share = (k: number) =>
      drafts
        .filter((_, i) => i % 3 === k)
        .map((d) => d.id)
        .join(',');
    const t0 = performance.now();
    const results = await Promise.all([0, 1, 2].map((k) => spawnChild(dataDir, 'work', share(k))));
    const ms = performance.now() - t0;

    const claimed = results.flatMap((r) => r.claimed as string[]);
    expect(claimed).toHaveLength(400);
    expect(new Set(claimed).size).toBe(400);
    expect(results.map((r) => r.activations)).toEqual([10, 10, 10]);
    for (const r of results) expect(r.log).toMatchObject({ written: 300, dropped: 0, rejected: 0 });

    const check = await openStore({ dataDir });
    try {
      const rows = await check.listRulesets({ context: 'mp' });
      expect(rows.filter((r) => r.status === 'ACTIVE')).toHaveLength(1);
      expect(rows.filter((r) => r.status === 'INACTIVE')).toHaveLength(29);
      const decisions = await check.listDecisions({ context: 'mp', limit: 10_000 });
      expect(decisions).toHaveLength(900);
      expect(await check.outboxStats()).toEqual({ size: 0, oldestAgeMs: 0 });
    } finally {
      await check.close();
    }
    console.log(
      `[sqlite] 3 processes: 30 activations, 900 decisions, 400 claims in ${ms.toFixed(0)} ms`,
    );
  });
});
