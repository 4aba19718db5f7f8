import { describe, expect, it } from 'vitest';
import { normalizeRequests } from '../../../storage/counters/counts.ts';
import { newId } from '../../../storage/ids.ts';
import { MIGRATIONS, pendingMigrations, renderMigration } from '../../../storage/migrations.ts';
import { numberPlaceholders } from '../../../storage/sql.ts';
import { displayHint, hashToken } from '../../../storage/sql-store.ts';

describe('storage helpers', () => {
  it('masks display hints: never the whole of a value', () => {
    expect(displayHint('crd_0123456789abcdef')).toBe('cr…cdef');
    expect(displayHint('203.0.113.7')).toBe('20…13.7');
    expect(displayHint('1.2.3.4')).toBe('….4');
    expect(displayHint('abcd')).toBe('…');
    expect(displayHint('😀😀😀😀😀😀😀😀😀😀x')).toBe('😀😀…😀😀😀x');
    for (const v of ['a@example.com', '4111111111111111', 'cus_12345'])
      expect(displayHint(v)).not.toContain(v);
  });

  it('numbers placeholders outside quotes', () => {
    expect(numberPlaceholders('SELECT ?, \'?\', "a?" FROM t WHERE a = ? AND b = ?')).toBe(
      'SELECT $1, \'?\', "a?" FROM t WHERE a = $2 AND b = $3',
    );
  });

  it('renders one migration set per dialect, refuses unknown tokens', () => {
    const first = MIGRATIONS[0]!.sql;
    expect(renderMigration(first, 'sqlite')).toContain('document TEXT NOT NULL');
    expect(renderMigration(first, 'postgres')).toContain('document JSON NOT NULL');
    expect(renderMigration(first, 'postgres')).not.toMatch(/\{\{/);
    expect(() => renderMigration('{{nope}}', 'sqlite')).toThrow(/nope/);
  });

  it('orders pending migrations and refuses a newer database', () => {
    const ms = [
      { version: 2, name: 'b', sql: '' },
      { version: 1, name: 'a', sql: '' },
    ];
    expect(pendingMigrations([], ms).map((m) => m.version)).toEqual([1, 2]);
    expect(pendingMigrations([1], ms).map((m) => m.version)).toEqual([2]);
    expect(() => pendingMigrations([1, 3], ms)).toThrow(
      expect.objectContaining({ code: 'schema_mismatch' }) as Error,
    );
    expect(new Set(MIGRATIONS.map((m) => m.version)).size).toBe(MIGRATIONS.length);
  });

  it('merges a decision’s requests per value', () => {
    const n = normalizeRequests([
      { field: 'f', value: 'v', windowsMs: [60_000, 1_000], distinct: [] },
      {
        field: 'f',
        value: 'v',
        windowsMs: [1_000, 0, Number.NaN],
        distinct: [{ path: 'p', value: 'x', windowsMs: [86_400_000] }],
      },
      { field: 'g', value: 'v', windowsMs: [5_000], distinct: [] },
    ]);
    expect(n).toEqual([
      {
        field: 'f',
        value: 'v',
        windowsMs: [1_000, 60_000],
        distinct: [{ path: 'p', value: 'x', windowsMs: [86_400_000] }],
        retainMs: 86_400_000,
      },
      { field: 'g', value: 'v', windowsMs: [5_000], distinct: [], retainMs: 5_000 },
    ]);
  });

  it('makes time-ordered ids in the API’s alphabet; hashes tokens with SHA-256', () => {
    const a = newId('rs', 1_000);
    const b = newId('rs', 2_000);
    expect(a).toMatch(/^rs_[0-9a-hjkmnp-tv-z]{26}$/);
    expect(a < b).toBe(true);
    expect(hashToken('abc')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});
