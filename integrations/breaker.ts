// A circuit breaker per (integration, backend): after `failureThreshold` consecutive failures
// the backend is not called for `openMs` (answers are `circuit_open` at once, so a dead backend
// costs a decision nothing); then one call goes through as a probe (half-open) while the others
// still get `circuit_open`; its success closes the circuit, its failure opens it again.
// Time comes in (`now`), so the state machine is tested without waiting.

export type BreakerState = 'closed' | 'open' | 'half_open';

export class CircuitBreaker {
  #state: BreakerState = 'closed';
  #failures = 0;
  #openedAt = 0;
  #probing = false;
  readonly #threshold: number;
  readonly #openMs: number;
  readonly #now: () => number;

  constructor(opts: { failureThreshold: number; openMs: number; now: () => number }) {
    this.#threshold = Math.max(1, opts.failureThreshold);
    this.#openMs = Math.max(0, opts.openMs);
    this.#now = opts.now;
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Whether a call may go ahead now. In half-open state only one caller gets `true`. */
  tryAcquire(): boolean {
    if (this.#state === 'closed') return true;
    if (this.#state === 'open') {
      if (this.#now() - this.#openedAt < this.#openMs) return false;
      this.#state = 'half_open';
      this.#probing = false;
    }
    if (this.#probing) return false;
    this.#probing = true;
    return true;
  }

  success(): void {
    this.#failures = 0;
    this.#probing = false;
    this.#state = 'closed';
  }

  failure(): void {
    this.#probing = false;
    if (this.#state === 'half_open') return this.#open();
    this.#failures++;
    if (this.#state === 'closed' && this.#failures >= this.#threshold) this.#open();
  }

  /** The call ended without a verdict on the backend (the caller gave up, no time was left). */
  release(): void {
    this.#probing = false;
  }

  #open(): void {
    this.#state = 'open';
    this.#openedAt = this.#now();
    this.#failures = 0;
  }
}
