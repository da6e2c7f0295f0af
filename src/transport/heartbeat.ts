/**
 * One timer for every connection's heartbeat (SPEC §3c): each tick pings
 * everyone and reaps whoever has been silent for two intervals. A timer per
 * connection would cost memory and wake-ups for nothing.
 */
export interface HeartbeatMember {
  /** Called once per interval with the current time. */
  heartbeat(now: number): void;
}

export class HeartbeatSweep {
  private readonly members = new Set<HeartbeatMember>();
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly intervalMs: number) {}

  add(member: HeartbeatMember): void {
    this.members.add(member);
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(), this.intervalMs);
      this.timer.unref();
    }
  }

  delete(member: HeartbeatMember): void {
    this.members.delete(member);
  }

  get size(): number {
    return this.members.size;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private sweep(): void {
    const now = Date.now();
    for (const member of this.members) member.heartbeat(now);
  }
}
