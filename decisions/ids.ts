// Ids: a prefix, 48 bits of milliseconds (so ids sort by time, which keeps the decisions
// table's index append-only) and 80 random bits, in lowercase base32.
import { createHash, randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

const ALPHABET_CODES = Buffer.from(ALPHABET, 'latin1');
// Characters written into a scratch buffer and read out as one string: appending 26 characters
// one by one built a string per character (~750 bytes of garbage per decision id).
const scratch = Buffer.alloc(64);

function base32(bytes: Buffer): string {
  let n = 0;
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = ((value << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      scratch[n++] = ALPHABET_CODES[(value >>> (bits - 5)) & 31]!;
      bits -= 5;
    }
  }
  if (bits > 0) scratch[n++] = ALPHABET_CODES[(value << (5 - bits)) & 31]!;
  return scratch.toString('latin1', 0, n);
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
