// HMAC-SHA-256 (RFC 2104) over two one-shot hashes with the padded keys prepared once per key:
// createHmac builds a native object per call, which was ~5% of a decision in a CPU profile when
// the credential fingerprint used it, and ~10% of a Redis-counted decision's main thread when
// the Redis counter store hashed its keys with it. The padded inner key sits at the front of a
// scratch buffer the message is written behind; a message too long for it goes to createHmac.
import { createHash, createHmac, hash, type BinaryToTextEncoding } from 'node:crypto';

interface PreparedKey {
  inner: Buffer;
  outer: Buffer;
}
const BLOCK = 64;
const SCRATCH = 512;
const prepared = new WeakMap<Buffer, PreparedKey>();

function prepare(key: Buffer): PreparedKey {
  let p = prepared.get(key);
  if (!p) {
    const k = key.length > BLOCK ? createHash('sha256').update(key).digest() : key;
    const inner = Buffer.alloc(BLOCK + SCRATCH, 0x36);
    const outer = Buffer.alloc(BLOCK + 32, 0x5c);
    for (let i = 0; i < k.length; i++) {
      inner[i]! ^= k[i]!;
      outer[i]! ^= k[i]!;
    }
    p = { inner, outer };
    prepared.set(key, p);
  }
  return p;
}

/**
 * HMAC-SHA-256 of `message` (UTF-8) with `key`, in `encoding`. The key is kept by identity
 * (its pads are prepared once): pass the same Buffer each time.
 */
export function hmacSha256(
  key: Buffer,
  message: string,
  encoding: BinaryToTextEncoding = 'base64url',
): string {
  const p = prepare(key);
  if (message.length * 3 > SCRATCH) {
    return createHmac('sha256', key).update(message, 'utf8').digest(encoding);
  }
  const n = p.inner.write(message, BLOCK, 'utf8');
  const inner = hash('sha256', p.inner.subarray(0, BLOCK + n), 'buffer');
  // The message may be a card's canonical form, a token or a counted value: not left lying in
  // the scratch.
  p.inner.fill(0, BLOCK, BLOCK + n);
  inner.copy(p.outer, BLOCK);
  return hash('sha256', p.outer, encoding);
}
