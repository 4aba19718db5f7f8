import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fingerprintCredential } from '../../../decisions/credential.ts';

describe('credential fingerprints', () => {
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
