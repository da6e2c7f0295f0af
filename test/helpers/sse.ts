import { request, type IncomingHttpHeaders, type ClientRequest } from 'node:http';

export interface SseEvent {
  /** The last event id in force when this event was dispatched (WHATWG semantics). */
  readonly id: string;
  readonly event: string;
  readonly data: string;
}

/**
 * A strict Server-Sent Events reader over a raw HTTP request, implementing the
 * WHATWG parsing rules, that keeps the raw bytes too — for tests that check
 * framing, comments and ids exactly. Awaits events; never sleeps.
 */
export class SseReader {
  raw = '';
  readonly events: SseEvent[] = [];
  comments = 0;
  retry: number | undefined;
  lastEventId = '';
  status = 0;
  headers: IncomingHttpHeaders = {};
  ended = false;
  private buffer = '';
  private pending: { event: string; data: string[] } = { event: '', data: [] };
  private waiters: (() => void)[] = [];
  private req: ClientRequest | undefined;

  static open(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
    const reader = new SseReader();
    return new Promise((resolve, reject) => {
      reader.req = request(url, { headers: { Accept: 'text/event-stream', ...headers } }, (res) => {
        reader.status = res.statusCode ?? 0;
        reader.headers = res.headers;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => reader.feed(chunk));
        res.on('end', () => reader.finish());
        res.on('error', () => reader.finish());
        resolve(reader);
      });
      reader.req.on('error', (err) => {
        reader.finish();
        reject(err);
      });
      reader.req.end();
    });
  }

  /** Resolves with the first event (from index `from`) matching `match`. */
  async waitFor(match: (e: SseEvent) => boolean, from = 0, timeoutMs = 5000): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.events.length; i++) if (match(this.events[i]!)) return this.events[i]!;
      if (this.ended) throw new Error(`stream ended before the expected event; raw: ${JSON.stringify(this.raw.slice(-300))}`);
      await this.nextChange(deadline);
    }
  }

  async waitUntil(condition: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) await this.nextChange(deadline);
  }

  /** Publication events (not `connected`), in order. */
  get publications(): SseEvent[] {
    return this.events.filter((e) => e.event !== 'connected');
  }

  close(): void {
    this.req?.destroy();
  }

  /** Resets the TCP connection instead of closing it cleanly. */
  reset(): void {
    const socket = this.req?.socket;
    if (socket && 'resetAndDestroy' in socket) socket.resetAndDestroy();
    else this.close();
  }

  private async nextChange(deadline: number): Promise<void> {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out; raw stream so far: ${JSON.stringify(this.raw.slice(-300))}`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, left);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private feed(chunk: string): void {
    this.raw += chunk;
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buffer.slice(0, newline);
      const width = this.buffer.startsWith('\r\n', newline) ? 2 : 1;
      this.buffer = this.buffer.slice(newline + width);
      this.line(line);
    }
    this.wake();
  }

  private line(line: string): void {
    if (line === '') {
      const { event, data } = this.pending;
      this.pending = { event: '', data: [] };
      if (data.length === 0) return;
      this.events.push({ id: this.lastEventId, event: event || 'message', data: data.join('\n') });
      return;
    }
    if (line.startsWith(':')) {
      this.comments++;
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.pending.event = value;
    else if (field === 'data') this.pending.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
  }

  private finish(): void {
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
