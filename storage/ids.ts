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
