// A circuit breaker for the counter store: after `threshold` failures in a row it opens and
// every call fails at once (no socket, no timer) for `coolDownMs`; then one probe call goes
// through (half-open) and its outcome closes or reopens the circuit. A dead Redis then costs a
// decision nothing instead of a command timeout each.

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerOptions {
  threshold: number;
  coolDownMs: number;
  now?: () => number;
}

export class CircuitBreaker {
  #threshold: number;
  #coolDownMs: number;
  #now: () => number;
  #state: BreakerState = 'closed';
  #failures = 0;
  #openedAt = 0;
  #probing = false;
  #opens = 0;

  constructor(opts: BreakerOptions) {
    this.#threshold = Math.max(1, opts.threshold);
    this.#coolDownMs = Math.max(0, opts.coolDownMs);
    this.#now = opts.now ?? Date.now;
  }

  /** May a call go ahead now? Half-open lets exactly one probe through at a time. */
  allow(): boolean {
    if (this.#state === 'closed') return true;
    if (this.#state === 'open') {
      if (this.#now() - this.#openedAt < this.#coolDownMs) return false;
      this.#state = 'half_open';
      this.#probing = false;
    }
    if (this.#probing) return false;
    this.#probing = true;
    return true;
  }

  success(): void {
    this.#state = 'closed';
    this.#failures = 0;
    this.#probing = false;
  }

  failure(): void {
    if (this.#state === 'open') return;
    if (this.#state === 'half_open') {
      this.#open();
      return;
    }
    if (++this.#failures >= this.#threshold) this.#open();
  }

  /** Closes the circuit (the connection is back: no need to wait out the cool-down). */
  reset(): void {
    this.success();
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** How many times the circuit has opened. */
  get opens(): number {
    return this.#opens;
  }

  #open(): void {
    this.#state = 'open';
    this.#openedAt = this.#now();
    this.#probing = false;
    this.#failures = 0;
    this.#opens++;
  }
}
