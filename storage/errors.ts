// The storage room's error catalog. Callers match on `code`, never on classes or messages: the
// API maps codes to HTTP statuses in one place (not_found → 404, not_draft/not_inactive/conflict
// → 409, unavailable → 503), and driver errors never leak their text or SQL to a client.

export type StoreErrorCode =
  | 'not_found'
  | 'not_draft'
  | 'not_inactive'
  | 'conflict'
  | 'invalid'
  | 'unavailable'
  | 'schema_mismatch'
  | 'closed'
  | 'internal';

export class StoreError extends Error {
  readonly code: StoreErrorCode;

  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
  }
}

export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}

/**
 * The counter store could not answer (Redis down, timed out, circuit open). The engine turns it
 * into `skipped` / `counter_unavailable` and fails open.
 */
export class CounterUnavailableError extends Error {
  readonly code = 'counter_unavailable';
  /** Why: circuit_open | not_connected | timeout | error. */
  readonly reason: string;

  constructor(reason: string, options?: { cause?: unknown }) {
    super(`counter store unavailable (${reason})`, options);
    this.name = 'CounterUnavailableError';
    this.reason = reason;
  }
}
