import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from '../../../storage/counters/breaker.ts';

describe('CircuitBreaker', () => {
  it('opens after N failures in a row, lets one probe through after the cool-down', () => {
    let now = 0;
    const b = new CircuitBreaker({ threshold: 3, coolDownMs: 1_000, now: () => now });
    b.failure();
    b.failure();
    b.success(); // the run is broken
    b.failure();
    b.failure();
    expect(b.state).toBe('closed');
    b.failure();
    expect(b.state).toBe('open');
    expect(b.allow()).toBe(false);
    now = 999;
    expect(b.allow()).toBe(false);
    now = 1_000;
    expect(b.allow()).toBe(true); // the probe
    expect(b.state).toBe('half_open');
    expect(b.allow()).toBe(false); // one probe at a time
    b.failure();
    expect(b.state).toBe('open');
    now = 2_000;
    expect(b.allow()).toBe(true);
    b.success();
    expect(b.state).toBe('closed');
    expect(b.allow()).toBe(true);
    expect(b.opens).toBe(2);
  });

  it('reset closes at once', () => {
    const b = new CircuitBreaker({ threshold: 1, coolDownMs: 60_000 });
    b.failure();
    expect(b.allow()).toBe(false);
    b.reset();
    expect(b.allow()).toBe(true);
  });
});
