// Row ids: a prefix, 48 bits of milliseconds and 80 random bits in lowercase base32 (no i, l,
// o, u), so ids sort roughly by creation time (append-mostly primary key indexes) and match the
// API's `^prefix_[a-z0-9]+$` path patterns.
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = ((value << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

export function newId(prefix: string, nowMs: number = Date.now()): string {
  const buf = Buffer.allocUnsafe(16);
  buf.writeUIntBE(Math.max(0, Math.floor(nowMs)) % 2 ** 48, 0, 6);
  randomBytes(10).copy(buf, 6);
  return `${prefix}_${base32(buf)}`;
}

/**
 * The creation time (ms) a `newId` carries in its first 48 bits; undefined for anything else.
 * Ids derived from a key (idempotency) decode to a meaningless time: callers check it is near.
 */
export function idTimeMs(id: string): number | undefined {
  const u = id.indexOf('_');
  if (u < 0 || id.length - u - 1 < 10) return undefined;
  let v = 0;
  for (let i = u + 1; i < u + 11; i++) {
    const d = ALPHABET.indexOf(id[i]!);
    if (d < 0) return undefined;
    v = v * 32 + d;
  }
  // 10 characters are 50 bits: the 48 of the time and 2 of the random part.
  return Math.floor(v / 4);
}
