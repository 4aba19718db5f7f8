import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from '../../../integrations/breaker.ts';

function breaker(threshold = 3, openMs = 1_000) {
  const clock = { t: 0 };
  const b = new CircuitBreaker({ failureThreshold: threshold, openMs, now: () => clock.t });
  return { b, clock };
}

describe('circuit breaker', () => {
  it('opens after N consecutive failures; a success in between resets the count', () => {
    const { b } = breaker(3);
    b.failure();
    b.failure();
    b.success();
    b.failure();
    b.failure();
    expect(b.state).toBe('closed');
    expect(b.tryAcquire()).toBe(true);
    b.failure();
    expect(b.state).toBe('open');
    expect(b.tryAcquire()).toBe(false);
  });

  it('lets one probe through after open_ms; its success closes', () => {
    const { b, clock } = breaker(1, 1_000);
    b.failure();
    clock.t = 999;
    expect(b.tryAcquire()).toBe(false);
    clock.t = 1_000;
    expect(b.tryAcquire()).toBe(true);
    expect(b.state).toBe('half_open');
    expect(b.tryAcquire()).toBe(false); // only one probe at a time
    b.success();
    expect(b.state).toBe('closed');
    expect(b.tryAcquire()).toBe(true);
    expect(b.tryAcquire()).toBe(true);
  });

  it('reopens for another open_ms when the probe fails', () => {
    const { b, clock } = breaker(2, 500);
    b.failure();
    b.failure();
    clock.t = 500;
    expect(b.tryAcquire()).toBe(true);
    b.failure();
    expect(b.state).toBe('open');
    clock.t = 999;
    expect(b.tryAcquire()).toBe(false);
    clock.t = 1_000;
    expect(b.tryAcquire()).toBe(true);
  });

  it('a released probe (caller gave up) frees the slot without a verdict', () => {
    const { b, clock } = breaker(1, 100);
    b.failure();
    clock.t = 100;
    expect(b.tryAcquire()).toBe(true);
    b.release();
    expect(b.state).toBe('half_open');
    expect(b.tryAcquire()).toBe(true);
  });
});
