import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { idFromKey, newId } from '../../../decisions/ids.ts';
import { idTimeMs } from '../../../storage/ids.ts';

// RFC 4648 bit order with Crockford-like lowercase letters (no i, l, o, u), written plainly.
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
function reference(bytes: Uint8Array): string {
  let bitString = '';
  for (const b of bytes) bitString += b.toString(2).padStart(8, '0');
  while (bitString.length % 5 !== 0) bitString += '0';
  let out = '';
  for (let i = 0; i < bitString.length; i += 5)
    out += ALPHABET[parseInt(bitString.slice(i, i + 5), 2)];
  return out;
}

describe('decision ids', () => {
  it('an Idempotency-Key id is the base32 of the key hash, for any key', () => {
    for (let i = 0; i < 1_000; i++) {
      const key = randomBytes(1 + (i % 40)).toString(i % 2 ? 'hex' : 'latin1');
      const digest = createHash('sha256').update(`decision\0${key}`).digest().subarray(0, 16);
      expect(idFromKey('dec', key, 'decision')).toBe(`dec_${reference(digest)}`);
    }
  });

  it('a new id carries its milliseconds first, so ids sort by time', () => {
    const ids = [0, 1, 1_700_000_000_000, 1_700_000_000_001, 2 ** 47].map((t) => newId('dec', t));
    for (const id of ids) expect(id).toMatch(/^dec_[0-9a-hjkmnp-tv-z]{26}$/);
    expect([...ids].sort()).toEqual(ids);
    // 48 bits of time = the first 9 characters and 3 bits of the tenth.
    const t = 1_765_000_000_123;
    const time = Buffer.alloc(6);
    time.writeUIntBE(t, 0, 6);
    expect(newId('dec', t).slice(4, 13)).toBe(reference(time).slice(0, 9));
  });

  it('gives back the time a new id carries', () => {
    for (const t of [0, 1, 1_765_000_000_123, 2 ** 48 - 1])
      expect(idTimeMs(newId('dec', t))).toBe(t);
    expect(idTimeMs('dec_short')).toBeUndefined();
    expect(idTimeMs('no-prefix')).toBeUndefined();
    expect(idTimeMs('dec_iiiiiiiiiiiiiii')).toBeUndefined();
  });
});
