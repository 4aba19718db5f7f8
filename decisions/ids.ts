// Ids: a prefix, 48 bits of milliseconds (so ids sort by time, which keeps the decisions
// table's index append-only) and 80 random bits, in lowercase base32.
import { createHash, randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

function base32(bytes: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

// One randomBytes call per 4 KiB of ids instead of one per id (a syscall each).
let pool = Buffer.alloc(0);
let poolAt = 0;
function random10(): Buffer {
  if (poolAt + 10 > pool.length) {
    pool = randomBytes(4_096);
    poolAt = 0;
  }
  poolAt += 10;
  return pool.subarray(poolAt - 10, poolAt);
}

export function newId(prefix: string, nowMs: number): string {
  const buf = Buffer.allocUnsafe(16);
  buf.writeUIntBE(Math.floor(nowMs), 0, 6);
  random10().copy(buf, 6);
  return `${prefix}_${base32(buf)}`;
}

/** A decision id derived from the caller's Idempotency-Key, so a retried request is one decision. */
export function idFromKey(prefix: string, key: string, scope: string): string {
  return `${prefix}_${base32(createHash('sha256').update(`${scope}\0${key}`).digest().subarray(0, 16))}`;
}
