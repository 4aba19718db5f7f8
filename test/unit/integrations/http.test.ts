import { describe, expect, it } from 'vitest';
import { retryAfterMs, statusError } from '../../../integrations/http.ts';

describe('Retry-After', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('reads delta-seconds and HTTP dates, capped at a day', () => {
    expect(retryAfterMs('3', now)).toBe(3_000);
    expect(retryAfterMs(['120'], now)).toBe(120_000);
    expect(retryAfterMs('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000);
    expect(retryAfterMs('Wed, 31 Dec 2025 00:00:00 GMT', now)).toBe(0);
    expect(retryAfterMs('99999999', now)).toBe(86_400_000);
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs(undefined, now)).toBeUndefined();
  });

  it('status errors: retryable per status, Retry-After only on 429/503', () => {
    const res = (status: number) => ({
      status,
      headers: { 'retry-after': '2' },
      body: Buffer.alloc(0),
    });
    expect(statusError(res(429), now)).toMatchObject({
      code: 'http_status',
      retryable: true,
      retryAfterMs: 2_000,
    });
    expect(statusError(res(503), now)).toMatchObject({ retryable: true, retryAfterMs: 2_000 });
    expect(statusError(res(500), now).retryAfterMs).toBeUndefined();
    for (const s of [408, 425, 502]) expect(statusError(res(s), now).retryable).toBe(true);
    for (const s of [400, 401, 403, 404, 409, 422])
      expect(statusError(res(s), now).retryable).toBe(false);
  });
});
