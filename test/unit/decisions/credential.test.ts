import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fingerprintCredential, hmacSha256 } from '../../../decisions/credential.ts';

describe('credential fingerprints', () => {
  it('hmacSha256 is HMAC-SHA-256: short and long keys, ASCII, UTF-8 and long messages', () => {
    for (const key of [randomBytes(32), randomBytes(64), randomBytes(100), Buffer.alloc(0)]) {
      for (const msg of [
        '',
        'card:411111:1234:12/29',
        'token:é😀',
        'x'.repeat(170),
        'y'.repeat(5000),
      ]) {
        expect(hmacSha256(key, msg)).toBe(
          createHmac('sha256', key).update(msg).digest('base64url'),
        );
      }
      // A shorter message after a longer one: nothing of the earlier one leaks into the hash.
      expect(hmacSha256(key, 'ab')).toBe(
        createHmac('sha256', key).update('ab').digest('base64url'),
      );
    }
  });

  it('a masked card and its full PAN are one fingerprint; the key changes it', () => {
    const key = randomBytes(32);
    const masked = fingerprintCredential(
      { type: 'masked_pan', bin: '411111', last4: '1111', expiry: '12/29' },
      key,
      'SAQ_A',
    );
    expect(masked).toMatch(/^crd_[A-Za-z0-9_-]{27}$/);
    expect(
      fingerprintCredential(
        { type: 'pan', number: '4111111111111111', expiry: '12/29' },
        key,
        'SAQ_D',
      ),
    ).toBe(masked);
    expect(
      fingerprintCredential(
        { type: 'masked_pan', bin: '411111', last4: '1111', expiry: '12/29' },
        randomBytes(32),
        'SAQ_A',
      ),
    ).not.toBe(masked);
    expect(masked).toBe(
      `crd_${createHmac('sha256', key).update('card:411111:1111:12/29').digest('base64url').slice(0, 27)}`,
    );
  });
});
