// Secrets at rest (CONTRACT §3): every secret field of an integration document is stored as
// `{"$enc": "v1:<base64url(iv ‖ ciphertext ‖ tag)>"}`, AES-256-GCM under a key derived from the
// instance secret with HKDF-SHA256 and this room's own label, so the key that fingerprints
// credentials never encrypts anything. The additional data binds a ciphertext to its integration
// and field: a value copied into another document or field does not decrypt.
// Reads show `"***"`; a PUT that sends `"***"` keeps the stored value.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { IntegrationError } from './errors.ts';

export const REDACTED = '***';
const VERSION = 'v1';
const INFO = 'vigil/integrations/secrets/v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface Encrypted {
  $enc: string;
}

export function isEncrypted(v: unknown): v is Encrypted {
  return (
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    Object.keys(v).length === 1 &&
    typeof (v as { $enc?: unknown }).$enc === 'string'
  );
}

export class SecretBox {
  readonly #key: Buffer;

  constructor(instanceSecret: Uint8Array) {
    if (instanceSecret.length < 32) {
      throw new IntegrationError('secret_key_mismatch', 'the instance secret must be 32 bytes');
    }
    this.#key = Buffer.from(hkdfSync('sha256', instanceSecret, Buffer.alloc(0), INFO, 32));
  }

  encrypt(plaintext: string, aad: string): Encrypted {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    cipher.setAAD(Buffer.from(aad, 'utf8'));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const blob = Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64url');
    return { $enc: `${VERSION}:${blob}` };
  }

  /** Throws `secret_key_mismatch` (wrong key, tampered or misplaced value); never echoes it. */
  decrypt(value: Encrypted, aad: string): string {
    const [version, blob] = value.$enc.split(':', 2);
    if (version !== VERSION || !blob) {
      throw new IntegrationError('secret_key_mismatch', `a stored secret (${aad}) is malformed`);
    }
    const raw = Buffer.from(blob, 'base64url');
    if (raw.length < IV_BYTES + TAG_BYTES) {
      throw new IntegrationError('secret_key_mismatch', `a stored secret (${aad}) is malformed`);
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, raw.subarray(0, IV_BYTES));
      decipher.setAAD(Buffer.from(aad, 'utf8'));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      const pt = Buffer.concat([
        decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)),
        decipher.final(),
      ]);
      return pt.toString('utf8');
    } catch {
      throw new IntegrationError(
        'secret_key_mismatch',
        `a stored secret (${aad}) does not decrypt with this instance's key (VIGIL_SECRET_KEY changed?)`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Paths of secrets inside a document

/** Which auth fields hold secrets, by auth type. `username` is not one: it is shown. */
export const AUTH_SECRETS: Record<string, readonly string[]> = {
  none: [],
  bearer: ['token'],
  basic: ['password'],
  header: ['value'],
  hmac: ['secret'],
};

/** Dotted paths (from the document root) of the secrets a document of this shape holds. */
export function secretPaths(authType: unknown, kindSecretSettings: readonly string[]): string[] {
  const auth = typeof authType === 'string' ? (AUTH_SECRETS[authType] ?? []) : [];
  return [...auth.map((f) => `auth.${f}`), ...kindSecretSettings.map((p) => `settings.${p}`)];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function getAt(doc: unknown, dotted: string): unknown {
  let v = doc;
  for (const k of dotted.split('.')) {
    if (!isRecord(v) || !Object.hasOwn(v, k)) return undefined;
    v = v[k];
  }
  return v;
}

/** Sets a value at a dotted path of plain objects; a missing parent leaves the document as is. */
export function setAt(doc: unknown, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let v = doc;
  for (const k of keys.slice(0, -1)) {
    if (!isRecord(v) || !Object.hasOwn(v, k)) return;
    v = v[k];
  }
  if (isRecord(v)) v[keys[keys.length - 1]!] = value;
}

/** The document as reads show it: every encrypted value becomes `"***"`. */
export function redact(doc: unknown): unknown {
  if (isEncrypted(doc)) return REDACTED;
  if (Array.isArray(doc)) return doc.map(redact);
  if (isRecord(doc)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(doc)) out[k] = redact(v);
    return out;
  }
  return doc;
}

/** Whether an input document carries `$enc` anywhere: only this module writes those. */
export function hasEncMarker(doc: unknown, depth = 0): boolean {
  if (depth > 64) return false;
  if (Array.isArray(doc)) return doc.some((x) => hasEncMarker(x, depth + 1));
  if (isRecord(doc)) {
    if (Object.hasOwn(doc, '$enc')) return true;
    return Object.values(doc).some((x) => hasEncMarker(x, depth + 1));
  }
  return false;
}

export const aadFor = (slug: string, path: string) => `${slug}/${path}`;
