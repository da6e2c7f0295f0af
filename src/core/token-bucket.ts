/**
 * Token bucket per connection, kept as two numbers on the connection itself
 * (no timers): refilled lazily from the time elapsed when a message arrives.
 */
export interface BucketState {
  tokens: number;
  refilledAt: number;
  /** Messages refused in a row; continued abuse closes the connection. */
  strikes: number;
}

/** Refusals in a row after which the connection is closed (4429). */
export const MAX_STRIKES = 20;

export class TokenBucket {
  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
  ) {}

  initialState(now: number): BucketState {
    return { tokens: this.burst, refilledAt: now, strikes: 0 };
  }

  /** Takes one token; false when the bucket is empty. */
  take(state: BucketState, now: number): boolean {
    const elapsed = now - state.refilledAt;
    if (elapsed > 0) {
      state.tokens = Math.min(this.burst, state.tokens + (elapsed * this.ratePerSecond) / 1000);
      state.refilledAt = now;
    }
    if (state.tokens >= 1) {
      state.tokens -= 1;
      state.strikes = 0;
      return true;
    }
    state.strikes++;
    return false;
  }
}
