/**
 * Token bucket per connection, kept as two numbers on the connection itself
 * (no timers): refilled lazily from the time elapsed when a message arrives.
 */
export interface BucketState {
  tokens: number;
  refilledAt: number;
  /** Messages refused, less one for each accepted since; continued abuse closes the connection. */
  strikes: number;
}

/**
 * Net refusals after which the connection is closed (4429). Each accepted
 * message forgives one refusal, not all of them: otherwise a flood paced at
 * several times the rate, with one message in every few accepted, would never
 * be closed. A burst followed by a pause is still forgiven.
 */
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
      if (state.strikes > 0) state.strikes--;
      return true;
    }
    state.strikes++;
    return false;
  }
}
