import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  hasEncMarker,
  isEncrypted,
  redact,
  SecretBox,
  secretPaths,
} from '../../../integrations/secrets.ts';
import { decryptDocument } from '../../../integrations/registry.ts';

describe('secrets', () => {
  const key = randomBytes(32);
  const box = new SecretBox(key);

  it('round-trips under the same key and context, never showing the plaintext', () => {
    const enc = box.encrypt('tok_super_secret', 'acme/auth.token');
    expect(isEncrypted(enc)).toBe(true);
    expect(enc.$enc.startsWith('v1:')).toBe(true);
    expect(JSON.stringify(enc)).not.toContain('tok_super_secret');
    expect(box.decrypt(enc, 'acme/auth.token')).toBe('tok_super_secret');
    // Fresh IV every time.
    expect(box.encrypt('tok_super_secret', 'acme/auth.token').$enc).not.toBe(enc.$enc);
  });

  it('refuses another key, another field or a tampered value with secret_key_mismatch, echoing nothing', () => {
    const enc = box.encrypt('tok_super_secret', 'acme/auth.token');
    const other = new SecretBox(randomBytes(32));
    for (const attempt of [
      () => other.decrypt(enc, 'acme/auth.token'),
      () => box.decrypt(enc, 'evil/auth.token'),
      () => box.decrypt({ $enc: enc.$enc.slice(0, -4) + 'AAAA' }, 'acme/auth.token'),
      () => box.decrypt({ $enc: 'v9:zz' }, 'acme/auth.token'),
    ]) {
      let caught: any;
      try {
        attempt();
      } catch (e) {
        caught = e;
      }
      expect(caught?.code).toBe('secret_key_mismatch');
      expect(String(caught.message)).not.toContain('tok_super_secret');
      expect(String(caught.message)).not.toContain(enc.$enc.slice(3, 20));
    }
  });

  it('refuses an instance secret shorter than 32 bytes', () => {
    expect(() => new SecretBox(randomBytes(16))).toThrow(/32 bytes/);
  });

  it('redacts every encrypted value and names secret paths by auth type and kind', () => {
    const stored = {
      auth: { type: 'basic', username: 'u', password: box.encrypt('pw', 'x/auth.password') },
      settings: { webhook_url: box.encrypt('https://hooks', 'x/settings.webhook_url') },
    };
    expect(redact(stored)).toEqual({
      auth: { type: 'basic', username: 'u', password: '***' },
      settings: { webhook_url: '***' },
    });
    expect(secretPaths('basic', ['webhook_url'])).toEqual([
      'auth.password',
      'settings.webhook_url',
    ]);
    expect(secretPaths('none', [])).toEqual([]);
    expect(secretPaths('hmac', [])).toEqual(['auth.secret']);
    expect(secretPaths('header', [])).toEqual(['auth.value']);
    expect(hasEncMarker({ a: [{ b: { $enc: 'x' } }] })).toBe(true);
    expect(hasEncMarker({ a: '$enc' })).toBe(false);
  });

  it('decrypts a stored document at its secret paths only', () => {
    const stored = {
      slug: 'acme',
      kind: 'http',
      auth: { type: 'bearer', token: box.encrypt('t0k', 'acme/auth.token') },
      settings: {},
    };
    const plain = decryptDocument(box, 'acme', stored) as any;
    expect(plain.auth.token).toBe('t0k');
    expect(isEncrypted(stored.auth.token)).toBe(true); // the stored copy is untouched
    expect(() => decryptDocument(box, 'other', stored)).toThrow(/secret_key_mismatch/);
  });
});
