/**
 * Exponential backoff with full jitter (AWS architecture blog's "full
 * jitter"): each delay is uniform in [0, min(cap, base·2^attempt)], so a
 * thousand clients cut off at once come back spread out instead of in a storm.
 * The attempt count resets once a connection has stayed up for `stableAfter`.
 */
export interface ReconnectOptions {
  /** Milliseconds of the first backoff window (default 500). */
  base?: number;
  /** Largest backoff window in milliseconds (default 20 s). */
  cap?: number;
  /** A connection up this long (ms) counts as stable and resets the backoff (default 10 s). */
  stableAfter?: number;
  /** Source of randomness in [0, 1); replaceable in tests. */
  random?: () => number;
}

export class ReconnectPolicy {
  private attempt = 0;
  private connectedAt = 0;
  private readonly base: number;
  private readonly cap: number;
  private readonly stableAfter: number;
  private readonly random: () => number;

  constructor(options: ReconnectOptions = {}) {
    this.base = options.base ?? 500;
    this.cap = options.cap ?? 20_000;
    this.stableAfter = options.stableAfter ?? 10_000;
    this.random = options.random ?? Math.random;
  }

  /** Milliseconds to wait before the next attempt. */
  nextDelay(): number {
    if (this.connectedAt > 0 && Date.now() - this.connectedAt >= this.stableAfter) this.attempt = 0;
    this.connectedAt = 0;
    const window = Math.min(this.cap, this.base * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.floor(this.random() * window);
  }

  /** The connection is up; if it stays up long enough, the next outage starts from the smallest window. */
  connected(): void {
    this.connectedAt = Date.now();
  }
}
