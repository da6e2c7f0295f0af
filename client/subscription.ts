import type { HeraldClient, ServerAnswer } from './index.js';

export interface Publication {
  channel: string;
  event?: string;
  data: unknown;
  /** Opaque; store it and pass it back as `since` to resume. */
  position: string;
}

export interface PresenceMember {
  client: string;
  user?: string;
}

export interface ResetInfo {
  channel: string;
  reason: string;
  /** Where the subscription continues from; anything before it was not recovered. */
  position?: string;
}

export interface SubscribeOptions {
  onMessage(message: Publication): void;
  onJoin?(member: PresenceMember): void;
  onLeave?(member: PresenceMember): void;
  /** History could not fill a gap: reload state from your own source of truth. */
  onReset?(info: ResetInfo): void;
  /** Resume after this position (from an earlier Publication). */
  since?: string;
  /** Receive onJoin/onLeave. */
  presence?: boolean;
}

export interface HistoryOptions {
  since?: string;
  limit?: number;
}

interface ParsedPosition {
  offset: number;
  epoch: string;
}

function parsePosition(position: string | undefined): ParsedPosition | undefined {
  const match = position === undefined ? null : /^(\d+):(.+)$/.exec(position);
  return match ? { offset: Number(match[1]), epoch: match[2]! } : undefined;
}

/**
 * One channel of a HeraldClient. It remembers the last position it handed
 * to the application; every (re)subscribe asks the server for what came
 * after it, and anything at or before it is dropped as a duplicate.
 */
export class Subscription {
  /** Resolves once subscribed for the first time; rejects if the server refuses. */
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (error: Error) => void;
  private settled = false;
  private lastPosition: string | undefined;
  private last: ParsedPosition | undefined;
  private active = true;
  private subscribed = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly client: HeraldClient,
    readonly channel: string,
    private readonly options: SubscribeOptions,
  ) {
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {});
    this.lastPosition = options.since;
    this.last = parsePosition(options.since);
  }

  /** The position of the last publication delivered (or where the subscription started). */
  get position(): string | undefined {
    return this.lastPosition;
  }

  async publish(data: unknown, options: { event?: string } = {}): Promise<string> {
    return this.client.publish(this.channel, data, options);
  }

  async history(options: HistoryOptions = {}): Promise<Publication[]> {
    const answer = await this.client.command({ type: 'history', channel: this.channel, ...options });
    return answer.publications as Publication[];
  }

  async presence(): Promise<PresenceMember[]> {
    const answer = await this.client.command({ type: 'presence', channel: this.channel });
    return answer.clients as PresenceMember[];
  }

  /** Stops delivery; the client keeps nothing for this channel afterwards. */
  unsubscribe(): void {
    if (!this.active) return;
    const wasSubscribed = this.subscribed;
    this.end();
    this.client.forget(this);
    if (wasSubscribed) this.client.command({ type: 'unsubscribe', channel: this.channel }).catch(() => {});
  }

  // ---- driven by HeraldClient ----

  sendSubscribe(): void {
    if (!this.active) return;
    const command: Record<string, unknown> = { type: 'subscribe', channel: this.channel };
    if (this.lastPosition !== undefined) command.since = this.lastPosition;
    if (this.options.presence) command.presence = true;
    this.client.command(command).then(
      (answer) => this.onSubscribed(answer),
      (error: Error) => {
        const code = (error as { code?: string }).code;
        if (code === 'unavailable' || code === 'rate_limited') return this.retryWhileConnected();
        if (code === 'timeout') return this.client.restartConnection(`subscribe to ${this.channel}: ${error.message}`);
        // Refused for good (bad channel, forbidden by the token): reject `ready`, or tell the app if it was live.
        if (this.settled) this.client.emitError(error);
        else this.rejectReady(error);
        this.settled = true;
        this.active = false;
        this.client.forget(this);
      },
    );
  }

  receive(message: ServerAnswer): void {
    if (!this.active) return;
    const position = message.position as string;
    const parsed = parsePosition(position);
    if (parsed && this.last && parsed.epoch === this.last.epoch && parsed.offset <= this.last.offset) return;
    this.remember(position, parsed);
    const publication: Publication = { channel: this.channel, data: message.data, position };
    if (typeof message.event === 'string') publication.event = message.event;
    this.options.onMessage(publication);
  }

  presenceEvent(message: ServerAnswer): void {
    if (!this.active) return;
    const member: PresenceMember = { client: message.client as string };
    if (typeof message.user === 'string') member.user = message.user;
    if (message.type === 'join') this.options.onJoin?.(member);
    else this.options.onLeave?.(member);
  }

  resetFromServer(message: ServerAnswer): void {
    if (!this.active) return;
    const position = typeof message.position === 'string' ? message.position : undefined;
    if (position !== undefined) this.remember(position, parsePosition(position));
    this.options.onReset?.({ channel: this.channel, reason: String(message.reason), position });
  }

  disconnected(): void {
    this.subscribed = false;
    clearTimeout(this.retryTimer);
  }

  end(): void {
    this.active = false;
    this.subscribed = false;
    clearTimeout(this.retryTimer);
  }

  /**
   * The server refused with `unavailable` (its broker is down) or
   * `rate_limited` but the connection is up: ask again after a jittered
   * second, so a node's subscribers do not all retry at the same instant. A lost connection
   * re-subscribes by itself on reconnect instead.
   */
  private retryWhileConnected(): void {
    if (!this.active || this.client.state !== 'connected') return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.sendSubscribe(), 500 + Math.random() * 1000);
  }

  private onSubscribed(answer: ServerAnswer): void {
    if (!this.active) return;
    this.subscribed = true;
    // Not recovered: the server also sends a `reset` push, which moves the position forward.
    if (answer.recovered !== true && this.lastPosition === undefined) this.remember(answer.position as string, parsePosition(answer.position as string));
    if (!this.settled) {
      this.settled = true;
      this.resolveReady();
    }
  }

  private remember(position: string, parsed: ParsedPosition | undefined): void {
    this.lastPosition = position;
    this.last = parsed;
  }
}
