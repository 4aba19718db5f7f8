import { describe, expect, it } from 'vitest';
import { cachedTokenVerifier, type Principal } from '../../../proxy/auth.ts';

function store() {
  const tokens = new Map<string, Principal>([
    ['good', { token_id: 'tok_1', name: 'a', scopes: ['decisions:write'] }],
    ['other', { token_id: 'tok_2', name: 'b', scopes: ['decisions:read'] }],
  ]);
  let lookups = 0;
  return {
    tokens,
    lookups: () => lookups,
    verify: (t: string) => {
      lookups++;
      return Promise.resolve(tokens.get(t));
    },
  };
}

describe('cachedTokenVerifier', () => {
  it('asks the store once per token within the TTL, again after it', async () => {
    let now = 0;
    const s = store();
    const c = cachedTokenVerifier(s.verify, { ttlMs: 1_000, now: () => now });
    expect(await c.verify('good')).toMatchObject({ token_id: 'tok_1' });
    expect(await c.verify('good')).toMatchObject({ token_id: 'tok_1' });
    expect(s.lookups()).toBe(1);
    now = 1_001;
    s.tokens.delete('good'); // revoked by another process
    expect(await c.verify('good')).toBeUndefined();
    expect(s.lookups()).toBe(2);
  });

  it('forgets a token revoked through this process at once', async () => {
    const s = store();
    const c = cachedTokenVerifier(s.verify, { ttlMs: 60_000 });
    await c.verify('good');
    await c.verify('other');
    s.tokens.delete('good');
    c.invalidate('tok_1');
    expect(await c.verify('good')).toBeUndefined();
    expect(await c.verify('other')).toMatchObject({ token_id: 'tok_2' });
    expect(s.lookups()).toBe(3);
  });

  it('never remembers an unknown token, so one created a moment later works', async () => {
    const s = store();
    const c = cachedTokenVerifier(s.verify, { ttlMs: 60_000 });
    expect(await c.verify('new')).toBeUndefined();
    s.tokens.set('new', { token_id: 'tok_3', name: 'c', scopes: [] });
    expect(await c.verify('new')).toMatchObject({ token_id: 'tok_3' });
  });

  it('does not remember a lookup that was in flight when a revocation came', async () => {
    const s = store();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const c = cachedTokenVerifier(
      async (t) => {
        const p = await s.verify(t);
        await gate;
        return p;
      },
      { ttlMs: 60_000 },
    );
    const first = c.verify('good');
    c.invalidate('tok_1');
    s.tokens.delete('good');
    release();
    await first;
    expect(await c.verify('good')).toBeUndefined();
  });

  it('shares one lookup between concurrent first uses and stays bounded', async () => {
    const s = store();
    const c = cachedTokenVerifier(s.verify, { ttlMs: 60_000, max: 1 });
    await Promise.all([c.verify('good'), c.verify('good'), c.verify('good')]);
    expect(s.lookups()).toBe(1);
    await c.verify('other'); // evicts 'good'
    await c.verify('good');
    expect(s.lookups()).toBe(3);
  });

  it('while the store fails, takes a token verified lately, and only that', async () => {
    let now = 0;
    let down = false;
    const s = store();
    const verify = (t: string) =>
      down ? Promise.reject(new Error('store unavailable')) : s.verify(t);
    const c = cachedTokenVerifier(verify, { ttlMs: 1_000, staleIfErrorMs: 60_000, now: () => now });
    await c.verify('good');
    down = true;
    now = 30_000;
    // Past its TTL, asked again: the store fails, the earlier verification stands.
    expect(await c.verify('good')).toMatchObject({ token_id: 'tok_1' });
    // Never verified: the failure is the answer.
    await expect(c.verify('other')).rejects.toThrow('store unavailable');
    // Past staleIfErrorMs: no longer.
    now = 61_000;
    await expect(c.verify('good')).rejects.toThrow('store unavailable');
  });

  it('never serves a revoked token from its stale entry', async () => {
    let now = 0;
    let down = false;
    const s = store();
    const verify = (t: string) => (down ? Promise.reject(new Error('down')) : s.verify(t));
    const c = cachedTokenVerifier(verify, { ttlMs: 1_000, now: () => now });
    await c.verify('good');
    // Revoked elsewhere, seen at the next lookup: the entry goes.
    now = 2_000;
    s.tokens.delete('good');
    expect(await c.verify('good')).toBeUndefined();
    down = true;
    await expect(c.verify('good')).rejects.toThrow('down');
    // Revoked through this process: gone at once.
    down = false;
    await c.verify('other');
    c.invalidate('tok_2');
    down = true;
    now = 10_000;
    await expect(c.verify('other')).rejects.toThrow('down');
  });
});
