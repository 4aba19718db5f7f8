import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hmacSha256 } from '../../../storage/hmac.ts';

describe('hmacSha256 (pads prepared once per key)', () => {
  it('is HMAC-SHA-256 in every encoding asked for: short, block-sized and long keys, any message', () => {
    for (const key of [randomBytes(16), randomBytes(64), randomBytes(100), Buffer.alloc(0)]) {
      for (const msg of [
        '',
        'email\u0000ann@example.com',
        'é😀\u0000x',
        'x'.repeat(170),
        'y'.repeat(600),
      ]) {
        for (const enc of ['hex', 'base64url', 'base64'] as const) {
          expect(hmacSha256(key, msg, enc)).toBe(
            createHmac('sha256', key).update(msg, 'utf8').digest(enc),
          );
        }
      }
      // A shorter message after a longer one: nothing of the earlier one is hashed with it.
      expect(hmacSha256(key, 'ab', 'hex')).toBe(
        createHmac('sha256', key).update('ab').digest('hex'),
      );
    }
  });

  it('keeps each key apart: two keys alternating give their own hashes', () => {
    const [a, b] = [randomBytes(32), randomBytes(32)];
    for (let i = 0; i < 3; i++) {
      expect(hmacSha256(a, `m${i}`, 'hex')).toBe(
        createHmac('sha256', a).update(`m${i}`).digest('hex'),
      );
      expect(hmacSha256(b, `m${i}`, 'hex')).toBe(
        createHmac('sha256', b).update(`m${i}`).digest('hex'),
      );
    }
  });
});
