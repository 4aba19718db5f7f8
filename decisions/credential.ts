// Credentials never go further than this file: a card or token becomes a keyed HMAC
// fingerprint (`crd_…`) before anything is stored, counted or emitted. The key is the
// instance's secret, so fingerprints can't be reversed by brute force over the PAN space
// without it, and are stable across processes sharing that secret.
import { createHash, createHmac, hash } from 'node:crypto';
import type { DecisionRequest } from './request.ts';

export type PciLevel = 'SAQ_A' | 'SAQ_A_EP' | 'SAQ_B' | 'SAQ_C' | 'SAQ_D' | 'ROC';
const RAW_PAN_ALLOWED: readonly PciLevel[] = ['SAQ_D', 'ROC'];

export class CredentialError extends Error {
  readonly code = 'pan_not_allowed';
  readonly details = { field: 'credential.type' };
}

// HMAC-SHA-256 (RFC 2104) over two one-shot hashes with the padded keys prepared once per key:
// createHmac builds a native object per call, which was ~5% of a decision in a CPU profile. The
// padded inner key sits at the front of a scratch buffer the message is written behind.
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

/** HMAC-SHA-256 of `message` (UTF-8) with `key`, base64url. */
export function hmacSha256(key: Buffer, message: string): string {
  const p = prepare(key);
  if (message.length * 3 > SCRATCH) {
    return createHmac('sha256', key).update(message).digest('base64url');
  }
  const n = p.inner.write(message, BLOCK, 'utf8');
  const inner = hash('sha256', p.inner.subarray(0, BLOCK + n), 'buffer');
  // The message may be a card's canonical form or a token: not left lying in the scratch.
  p.inner.fill(0, BLOCK, BLOCK + n);
  inner.copy(p.outer, BLOCK);
  return hash('sha256', p.outer, 'base64url');
}

export function fingerprintCredential(
  cred: NonNullable<DecisionRequest['credential']>,
  key: Buffer,
  pci: PciLevel,
): string {
  let canonical: string;
  switch (cred.type) {
    case 'pan':
      if (!RAW_PAN_ALLOWED.includes(pci)) {
        throw new CredentialError(
          `raw card numbers are refused at PCI level ${pci}; send a masked_pan, a token or a credential_fingerprint (VIGIL_PCI_LEVEL SAQ_D or ROC allows them)`,
        );
      }
      // A full PAN and its masked form should count as the same card for velocity.
      canonical = `card:${cred.number.slice(0, 6)}:${cred.number.slice(-4)}:${cred.expiry ?? ''}`;
      break;
    case 'masked_pan':
      canonical = `card:${cred.bin.slice(0, 6)}:${cred.last4}:${cred.expiry ?? ''}`;
      break;
    case 'token':
      canonical = `token:${cred.value}`;
      break;
  }
  return `crd_${hmacSha256(key, canonical).slice(0, 27)}`;
}
