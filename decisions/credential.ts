// Credentials never go further than this file: a card or token becomes a keyed HMAC
// fingerprint (`crd_…`) before anything is stored, counted or emitted. The key is the
// instance's secret, so fingerprints can't be reversed by brute force over the PAN space
// without it, and are stable across processes sharing that secret.
import { hmacSha256 } from '../storage/hmac.ts';
import type { DecisionRequest } from './request.ts';

export type PciLevel = 'SAQ_A' | 'SAQ_A_EP' | 'SAQ_B' | 'SAQ_C' | 'SAQ_D' | 'ROC';
const RAW_PAN_ALLOWED: readonly PciLevel[] = ['SAQ_D', 'ROC'];

export class CredentialError extends Error {
  readonly code = 'pan_not_allowed';
  readonly details = { field: 'credential.type' };
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
