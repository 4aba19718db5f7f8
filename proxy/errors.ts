// The API's error catalog: every error that leaves the process is JSON `{error, message}` with
// a stable code; codes map to HTTP status here and nowhere else. Other rooms throw errors that
// carry a `code`; unknown errors become 500 `internal` without their message or stack.

export const STATUS_BY_CODE: Record<string, number> = {
  bad_request: 400,
  invalid_request: 400,
  invalid_ruleset: 400,
  invalid_integration: 400,
  invalid_playbook: 400,
  invalid_event: 400,
  edition_required: 400,
  pan_not_allowed: 400,
  egress_refused: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  request_timeout: 408,
  conflict: 409,
  not_draft: 409,
  not_inactive: 409,
  already_resolved: 409,
  idempotency_key_reused: 409,
  payload_too_large: 413,
  uri_too_long: 414,
  unsupported_media_type: 415,
  too_many_requests: 429,
  headers_too_large: 431,
  internal: 500,
  unavailable: 503,
  temporal_unavailable: 503,
  timeout: 504,
};

export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.code = code;
    this.status = STATUS_BY_CODE[code] ?? 500;
    this.details = details;
  }
}

export const notFound = (what: string, id: string) =>
  new ApiError('not_found', `${what} ${id} was not found`);

/** Errors from other rooms carry a string `code`; map the ones the catalog knows. */
export function statusOf(err: unknown): { status: number; code: string } {
  if (err instanceof ApiError) return { status: err.status, code: err.code };
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string' && code in STATUS_BY_CODE) {
    return { status: STATUS_BY_CODE[code]!, code };
  }
  return { status: 500, code: 'internal' };
}
