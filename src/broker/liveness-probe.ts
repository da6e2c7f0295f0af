/** What a broker plugs into its probe. */
export interface ProbeHooks {
  /** Whether probing makes sense now (connections up); otherwise the probe waits. */
  active(): boolean;
  /** Publish probe `sequence` so that it comes back on this node's own subscription. */
  send(sequence: number): void;
  /** A probe did not come back: the subscription is open but starved; restart it. */
  onTimeout(): void;
}

/**
 * PUB/SUB liveness probe (TESTPLAN §4.3, centrifugo#1189): every interval
 * the node publishes to a channel only it subscribes to. A probe counts as
 * lost after two intervals — and only if this process's event loop kept up
 * meanwhile, because a busy or paused node has simply not read its socket
 * yet, and restarting a healthy connection would refuse publishes for nothing.
 * A starved connection is thus detected within two to three intervals.
 */
export class LivenessProbe {
  /** Probes that never came back (for tests and metrics). */
  timeouts = 0;
  private timer: NodeJS.Timeout | undefined;
  private sequence = 0;
  private awaited = 0;
  private sentAt = 0;
  private lastTick = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly hooks: ProbeHooks,
  ) {}

  start(): void {
    this.lastTick = performance.now();
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Forget the probe in flight (the connection was replaced). */
  reset(): void {
    this.awaited = 0;
  }

  /** A probe arrived on the subscription. */
  received(sequence: number): void {
    if (sequence === this.awaited) this.awaited = 0;
  }

  /** The probe in flight could not even be sent: not the subscription's fault. */
  unsent(sequence: number): void {
    if (sequence === this.awaited) this.awaited = 0;
  }

  private tick(): void {
    const now = performance.now();
    const late = now - this.lastTick - this.intervalMs;
    this.lastTick = now;
    if (!this.hooks.active()) {
      this.awaited = 0;
      return;
    }
    if (this.awaited !== 0) {
      if (late > this.intervalMs / 2 || now - this.sentAt < 2 * this.intervalMs) return;
      this.awaited = 0;
      this.timeouts++;
      this.hooks.onTimeout();
      return;
    }
    this.awaited = ++this.sequence;
    this.sentAt = now;
    this.hooks.send(this.awaited);
  }
}
