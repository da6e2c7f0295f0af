import WebSocket from 'ws';

/**
 * Shared pieces of the broker fault tests (TESTPLAN T15–T20, T23): a
 * herald.v1 client that records each channel's stream once, the issue-8
 * stream invariant ("every offset once, in order, or an explicit reset"), a
 * steady-rate publisher for the HTTP API, a round-robin TCP balancer in front
 * of several nodes, and `herald serve` as a child process.
 */

// ---- the stream invariant ----

/** What a subscriber saw in one channel, in arrival order. */
export type StreamEvent =
  | { readonly type: 'subscribed'; readonly position: string; readonly recovered: boolean }
  | { readonly type: 'message'; readonly position: string; readonly data: unknown }
  | { readonly type: 'reset'; readonly position: string; readonly reason: string }
  | { readonly type: 'unsubscribed' };

export interface ParsedPosition {
  readonly offset: number;
  readonly epoch: string;
}

export function parsePosition(position: string): ParsedPosition {
  const colon = position.indexOf(':');
  return { offset: Number(position.slice(0, colon)), epoch: position.slice(colon + 1) };
}

export interface StreamVerdict {
  /** Offsets received, in arrival order. */
  readonly offsets: number[];
  readonly resets: { reason: string; position: string }[];
  /** Where the stream stands at the end (last message, reset or subscribe position); undefined after an unsubscribe. */
  readonly cursor: ParsedPosition | undefined;
  /** Violations of the invariant, each with the event index. Empty = the stream is sound. */
  readonly problems: string[];
}

/**
 * Checks one subscriber's stream in one channel against issue 8's invariant:
 * after `subscribed` (at position P) every message is the next offset of
 * the same epoch — no gap, no duplicate, no silent epoch change — unless an
 * explicit `reset` came first, which moves the stream to its position (never
 * backwards within an epoch: that would make the client accept duplicates).
 * Nothing arrives outside a subscription. `published`, when given, maps
 * positions to the data JSON that was acknowledged for them: a delivered
 * position must carry exactly that data.
 */
export function verifyStream(events: readonly StreamEvent[], published?: ReadonlyMap<string, string>): StreamVerdict {
  const offsets: number[] = [];
  const resets: { reason: string; position: string }[] = [];
  const problems: string[] = [];
  let cursor: ParsedPosition | undefined;
  let subscribed = false;
  events.forEach((event, index) => {
    switch (event.type) {
      case 'subscribed':
        if (subscribed) problems.push(`#${index}: subscribed twice without an unsubscribe`);
        subscribed = true;
        cursor = parsePosition(event.position);
        return;
      case 'unsubscribed':
        subscribed = false;
        cursor = undefined;
        return;
      case 'reset': {
        if (!subscribed) problems.push(`#${index}: reset outside a subscription`);
        const next = parsePosition(event.position);
        if (cursor && next.epoch === cursor.epoch && next.offset < cursor.offset) {
          problems.push(`#${index}: reset moves back from ${cursor.offset} to ${next.offset} in epoch ${next.epoch}`);
        }
        resets.push({ reason: event.reason, position: event.position });
        cursor = next;
        return;
      }
      case 'message': {
        const at = parsePosition(event.position);
        offsets.push(at.offset);
        if (!subscribed || !cursor) {
          problems.push(`#${index}: message ${event.position} outside a subscription`);
        } else if (at.epoch !== cursor.epoch) {
          problems.push(`#${index}: message ${event.position} in a new epoch without a reset (was ${cursor.offset}:${cursor.epoch})`);
        } else if (at.offset !== cursor.offset + 1) {
          const what = at.offset <= cursor.offset ? 'duplicate or out of order' : `gap of ${at.offset - cursor.offset - 1}`;
          problems.push(`#${index}: message ${at.offset} after ${cursor.offset}: ${what}`);
        }
        if (published) {
          const expected = published.get(event.position);
          if (expected !== undefined && expected !== JSON.stringify(event.data)) {
            problems.push(`#${index}: message ${event.position} carries ${JSON.stringify(event.data)}, published ${expected}`);
          }
        }
        if (subscribed) cursor = at;
        return;
      }
    }
  });
  return { offsets, resets, cursor, problems };
}

// ---- a recording herald.v1 client ----

export type Frame = Record<string, unknown> & { type: string };

interface PendingCommand {
  resolve(frame: Frame): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * A herald.v1 peer over a real `ws` socket that parses every frame once and
 * files it under its channel, so tests with thousands of messages can check
 * streams and wait for conditions cheaply. Answers protocol pings.
 */
export class StreamClient {
  readonly streams = new Map<string, StreamEvent[]>();
  clientId = '';
  closeCode: number | undefined;
  /** Frames that are neither answers nor channel events (errors without id, join/leave). */
  readonly other: Frame[] = [];
  private nextId = 1;
  private readonly pending = new Map<number, PendingCommand>();
  private waiters = new Set<() => void>();
  readonly closed: Promise<number>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      if (!isBinary) this.onFrame(JSON.parse(data.toString()) as Frame);
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code) => {
        this.closeCode = code;
        for (const pending of this.pending.values()) {
          clearTimeout(pending.timer);
          pending.reject(new Error(`socket closed (${code})`));
        }
        this.pending.clear();
        this.wake();
        resolve(code);
      }),
    );
    ws.on('error', () => this.wake());
  }

  /** Connects and resolves once the server's `connected` push has arrived. */
  static async open(wsUrl: string, timeoutMs = 10_000): Promise<StreamClient> {
    const client = new StreamClient(new WebSocket(wsUrl, ['herald.v1']));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no connected push from ${wsUrl} within ${timeoutMs} ms`)), timeoutMs);
      client.ws.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      client.ws.once('unexpected-response', (_req, res) => {
        clearTimeout(timer);
        reject(new Error(`upgrade refused: ${res.statusCode}`));
      });
      void client.waitUntil(() => client.clientId !== '', timeoutMs, 'connected').then(() => {
        clearTimeout(timer);
        resolve();
      }, reject);
    });
    return client;
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  events(channel: string): StreamEvent[] {
    let events = this.streams.get(channel);
    if (!events) this.streams.set(channel, (events = []));
    return events;
  }

  /** The position the channel's stream stands at (last message, reset or subscribe answer). */
  position(channel: string): string | undefined {
    const events = this.streams.get(channel) ?? [];
    for (let i = events.length - 1; i >= 0; i--) {
      const event = events[i]!;
      if (event.type === 'unsubscribed') return undefined;
      return event.position;
    }
    return undefined;
  }

  /** Offset of the last message received in `channel` (0 when none). */
  lastOffset(channel: string): number {
    const events = this.streams.get(channel) ?? [];
    for (let i = events.length - 1; i >= 0; i--) {
      const event = events[i]!;
      if (event.type === 'message') return parsePosition(event.position).offset;
    }
    return 0;
  }

  /** Sends a command with a fresh id; resolves with the answer (which may be an `error` frame). */
  command(body: Record<string, unknown>, timeoutMs = 10_000): Promise<Frame> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (!this.open) return reject(new Error('socket not open'));
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no answer to ${JSON.stringify(body)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ id, ...body }));
    });
  }

  /** Subscribes; rejects unless the answer is `subscribed`. */
  async subscribe(channel: string, since?: string): Promise<Frame> {
    const answer = await this.command(since === undefined ? { type: 'subscribe', channel } : { type: 'subscribe', channel, since });
    if (answer.type !== 'subscribed') throw new Error(`subscribe ${channel} refused: ${JSON.stringify(answer)}`);
    return answer;
  }

  async unsubscribe(channel: string): Promise<void> {
    const answer = await this.command({ type: 'unsubscribe', channel });
    if (answer.type !== 'unsubscribed') throw new Error(`unsubscribe ${channel} refused: ${JSON.stringify(answer)}`);
  }

  /** Resolves once `condition` holds (re-checked on every frame and every 50 ms). */
  async waitUntil(condition: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    if (condition()) return;
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!condition()) return;
        finish();
        resolve();
      };
      const poll = setInterval(check, 50);
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${what} not met within ${timeoutMs} ms`));
      }, timeoutMs);
      const finish = () => {
        clearInterval(poll);
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
    });
  }

  close(): void {
    this.ws.close();
  }

  terminate(): void {
    this.ws.terminate();
  }

  private onFrame(frame: Frame): void {
    const channel = typeof frame.channel === 'string' ? frame.channel : undefined;
    switch (frame.type) {
      case 'connected':
        this.clientId = String(frame.client);
        break;
      case 'ping':
        if (this.open) this.ws.send('{"type":"pong"}');
        return;
      case 'message':
        this.events(channel!).push({ type: 'message', position: String(frame.position), data: frame.data });
        return;
      case 'reset':
        this.events(channel!).push({ type: 'reset', position: String(frame.position), reason: String(frame.reason) });
        return;
      case 'subscribed':
        this.events(channel!).push({ type: 'subscribed', position: String(frame.position), recovered: frame.recovered === true });
        break;
      case 'unsubscribed':
        this.events(channel!).push({ type: 'unsubscribed' });
        break;
    }
    if (typeof frame.id === 'number') {
      const pending = this.pending.get(frame.id);
      if (pending) {
        this.pending.delete(frame.id);
        clearTimeout(pending.timer);
        pending.resolve(frame);
      }
    } else if (frame.type !== 'connected') {
      this.other.push(frame);
    }
  }

  private wake(): void {
    for (const check of [...this.waiters]) check();
  }
}

// ---- a steady-rate publisher for the HTTP API ----

export interface PublishAttempt {
  readonly channel: string;
  readonly node: number;
  readonly data: string;
  readonly startedAt: number;
  readonly ms: number;
  /** HTTP status, or 0 when the request itself failed (connection refused or reset). */
  readonly status: number;
  readonly position?: string;
}

/**
 * Publishes `{"seq":n}` round-robin over channels and nodes at a steady
 * rate through POST /api/publish, at most `maxInFlight` at a time, and
 * records every attempt: what was acknowledged (position → data), what was
 * refused and how fast.
 */
export class RatePublisher {
  readonly attempts: PublishAttempt[] = [];
  /** `channel position` → data JSON of every acknowledged publish. */
  readonly acknowledged = new Map<string, Map<string, string>>();
  private readonly epochsByChannel = new Map<string, ParsedPosition[]>();
  private seq = 0;
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private idle: (() => void) | undefined;
  private started = 0;
  private issued = 0;

  constructor(
    private readonly nodes: () => readonly { url: string }[],
    private readonly channels: readonly string[],
    private readonly perSecond: number,
    private readonly maxInFlight = 64,
    /** Characters of padding in each publication's data, to fill a broker's memory. */
    private readonly padding = 0,
  ) {
    for (const channel of channels) this.acknowledged.set(channel, new Map());
  }

  /** Starts (or resumes) publishing; the pace counts from now. */
  start(): this {
    this.started = performance.now();
    this.issued = 0;
    this.timer = setInterval(() => this.tick(), 10);
    this.timer.unref(); // a test that fails half-way must not be kept alive by its publisher
    return this;
  }

  /** Stops issuing and resolves once every request in flight has settled. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.idle = resolve));
  }

  /** Acknowledged positions of `channel`, as a map position → data. */
  acked(channel: string): Map<string, string> {
    return this.acknowledged.get(channel)!;
  }

  /** Epochs of `channel` in the order their first acknowledgment arrived, each with its highest acknowledged offset. */
  epochs(channel: string): ParsedPosition[] {
    return this.epochsByChannel.get(channel) ?? [];
  }

  get ackedCount(): number {
    let count = 0;
    for (const map of this.acknowledged.values()) count += map.size;
    return count;
  }

  private tick(): void {
    const due = Math.floor(((performance.now() - this.started) / 1000) * this.perSecond);
    while (this.issued < due && this.inFlight < this.maxInFlight) {
      this.issued++;
      void this.publishOne();
    }
    // Never build a backlog: what could not be issued in time is skipped (a steady rate, not a catch-up burst).
    if (this.issued < due) this.issued = due;
  }

  private async publishOne(): Promise<void> {
    const n = this.seq++;
    const nodes = this.nodes();
    const nodeIndex = n % nodes.length;
    const channel = this.channels[n % this.channels.length]!;
    const data = JSON.stringify(this.padding > 0 ? { seq: n, pad: 'x'.repeat(this.padding) } : { seq: n });
    this.inFlight++;
    const startedAt = performance.now();
    let status = 0;
    let position: string | undefined;
    try {
      const response = await fetch(`${nodes[nodeIndex]!.url}/api/publish`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: `{"channel":${JSON.stringify(channel)},"data":${data}}`,
        signal: AbortSignal.timeout(10_000),
      });
      status = response.status;
      const body = (await response.json()) as { position?: string };
      if (status === 200) position = body.position;
    } catch {
      status = 0;
    }
    const ms = performance.now() - startedAt;
    this.attempts.push({ channel, node: nodeIndex, data, startedAt, ms, status, position });
    if (position !== undefined) {
      this.acknowledged.get(channel)!.set(position, data);
      const at = parsePosition(position);
      const epochs = this.epochsByChannel.get(channel) ?? [];
      this.epochsByChannel.set(channel, epochs);
      const index = epochs.findIndex((e) => e.epoch === at.epoch);
      if (index < 0) epochs.push(at);
      else if (epochs[index]!.offset < at.offset) epochs[index] = at;
    }
    this.inFlight--;
    if (this.inFlight === 0 && this.idle) {
      this.idle();
      this.idle = undefined;
    }
  }
}

/** The channel's current top position as any node reports it (GET /api/history?limit=0). */
export async function channelTop(node: { url: string }, channel: string): Promise<string> {
  const response = await fetch(`${node.url}/api/history/${encodeURIComponent(channel)}?limit=0`);
  if (!response.ok) throw new Error(`history of ${channel}: ${response.status} ${await response.text()}`);
  return String(((await response.json()) as { position: string }).position);
}

/**
 * A single-channel SSE stream as stream events: each publication a message
 * at its id, each `event: reset` a reset at its id. SSE has no subscribe
 * answer; the stream is taken to start right before its first event.
 */
export function sseStreamEvents(events: readonly { id: string; event: string; data: string }[]): StreamEvent[] {
  const out: StreamEvent[] = [];
  for (const event of events) {
    if (event.event === 'connected') continue;
    if (out.length === 0) {
      const at = parsePosition(event.id);
      out.push({ type: 'subscribed', position: `${event.event === 'reset' ? at.offset : at.offset - 1}:${at.epoch}`, recovered: false });
    }
    if (event.event === 'reset') out.push({ type: 'reset', position: event.id, reason: String((JSON.parse(event.data) as { reason?: string }).reason) });
    else out.push({ type: 'message', position: event.id, data: JSON.parse(event.data) });
  }
  return out;
}
