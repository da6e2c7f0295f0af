/**
 * One coarse timer for per-connection deadlines (first-message auth, token
 * expiry) instead of a timer per connection. It runs only while someone has
 * a deadline.
 */
export interface DeadlineMember {
  onDeadline(now: number): void;
}

export const DEADLINE_RESOLUTION_MS = 100;

export class DeadlineSweep {
  private readonly deadlines = new Map<DeadlineMember, number>();
  private timer: NodeJS.Timeout | undefined;

  set(member: DeadlineMember, at: number): void {
    this.deadlines.set(member, at);
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(), DEADLINE_RESOLUTION_MS);
      this.timer.unref();
    }
  }

  delete(member: DeadlineMember): void {
    this.deadlines.delete(member);
    if (this.deadlines.size === 0) this.stop();
  }

  get size(): number {
    return this.deadlines.size;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private sweep(): void {
    const now = Date.now();
    for (const [member, at] of this.deadlines) {
      if (at <= now) {
        this.deadlines.delete(member);
        member.onDeadline(now);
      }
    }
    if (this.deadlines.size === 0) this.stop();
  }
}
