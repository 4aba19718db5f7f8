// The integrations room's error catalog. Callers match on `code`; messages are for people and
// never hold a secret, a request body or a response body (those may carry personal data).
// The shape matches activities/deps.ts `ActionError`, so a workflow activity can pass it on.

export const ERROR_CODES = [
  'timeout',
  'connection',
  'http_status',
  'invalid_json',
  'unmappable',
  'response_too_large',
  'bad_encoding',
  'egress_refused',
  'redirect',
  'circuit_open',
  'aborted',
  'unknown_integration',
  'unknown_backend',
  'unknown_action',
  'invalid_integration',
  'insufficient_context',
  'secret_key_mismatch',
  'secret_missing',
  'kind_error',
] as const;
export type IntegrationErrorCode = (typeof ERROR_CODES)[number];

export class IntegrationError extends Error {
  readonly code: IntegrationErrorCode | (string & {});
  readonly retryable: boolean;
  readonly status?: number;
  readonly retryAfterMs?: number;

  constructor(
    code: IntegrationErrorCode | (string & {}),
    message: string,
    opts: { retryable?: boolean; status?: number; retryAfterMs?: number } = {},
  ) {
    super(`${code}: ${message}`);
    this.name = 'IntegrationError';
    this.code = code;
    this.retryable = opts.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
    if (opts.status !== undefined) this.status = opts.status;
    if (opts.retryAfterMs !== undefined) this.retryAfterMs = opts.retryAfterMs;
  }
}

// A retry can change these answers (the far side may recover); the others are configuration or
// input mistakes that a retry repeats.
const RETRYABLE_BY_DEFAULT = new Set<string>([
  'timeout',
  'connection',
  'http_status',
  'invalid_json',
  'response_too_large',
  'bad_encoding',
  'circuit_open',
  'aborted',
]);

export function isIntegrationError(e: unknown): e is IntegrationError {
  return e instanceof IntegrationError;
}

/** Whether a retry could change an HTTP status answer (CONTRACT: 4xx other than 408/425/429 not). */
export function retryableStatus(status: number): boolean {
  if (status >= 500) return true;
  return status === 408 || status === 425 || status === 429;
}
