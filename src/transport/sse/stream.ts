import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from '../../auth/principal.js';
import type { Drainable, NodeContext } from '../../context.js';
import type { Subscriber, Subscription } from '../../core/hub.js';
import type { OutboundPublication } from '../../core/outbound.js';
import { formatPosition, type Position } from '../../core/position.js';
import type { DeadlineMember } from '../deadlines.js';
import type { HeartbeatMember } from '../heartbeat.js';
import { encodeHttpChunk } from '../../protocol/frame.js';
import { overOutboundLimit, writeBatched, type Batchable } from '../write-batch.js';
import { formatStreamId, type ResumePoint } from './last-event-id.js';

const PING_COMMENT = Buffer.from(': ping\n\n');
/** A stream whose reader stopped reading is destroyed this long after it was told to go. */
const SLOW_READER_GRACE_MS = 1000;
/** A position no history can satisfy: how a malformed Last-Event-ID becomes a reset (SPEC §4). */
const UNRECOVERABLE: Position = { offset: -1, epoch: '-' };

/**
 * The response headers of an event stream (SPEC §4). `connection` is
 * keep-alive for a stream, close for an answer that sends the reader
 * elsewhere; HTTP/2 forbids connection-specific headers, so it is left out there.
 */
export function eventStreamHeaders(req: IncomingMessage, extraHeaders: Record<string, string>, connection: 'keep-alive' | 'close'): Record<string, string> {
  return {
    ...extraHeaders,
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache, no-transform',
    ...(req.httpVersionMajor === 1 ? { Connection: connection } : {}),
    'X-Accel-Buffering': 'no',
  };
}

/**
 * One Server-Sent Events response (SPEC §4), subscribed to one or more
 * channels. Single-channel streams write each publication's shared bytes
 * as they are; multiplexed streams prefix their own id line.
 */
export class SseStream implements Subscriber, HeartbeatMember, DeadlineMember, Batchable, Drainable {
  batchedBytes = 0;
  readonly tracksPresence = false;
  private readonly subscriptions: Subscription[] = [];
  private readonly positions = new Map<string, string>();
  private ended = false;
  /** The socket itself when writes can skip res.write (see writeToSocket); null when they cannot, undefined until known. */
  private chunkedSocket: Batchable | null | undefined;

  constructor(
    private readonly ctx: NodeContext,
    private readonly req: IncomingMessage,
    readonly stream: ServerResponse,
    readonly id: string,
    private readonly principal: Principal,
    private readonly channels: readonly string[],
  ) {}

  get user(): string | undefined {
    return this.principal.user;
  }

  async start(resume: Map<string, ResumePoint>, extraHeaders: Record<string, string>): Promise<void> {
    const res = this.stream;
    res.writeHead(200, eventStreamHeaders(this.req, extraHeaders, 'keep-alive'));
    res.write(`retry: ${this.ctx.settings['sse-retry']}\nevent: connected\ndata: {"status":"ok","client":"${this.id}"}\n\n`);
    if (this.req.httpVersionMajor === 1) this.req.socket.setNoDelay(true);
    res.on('close', () => this.onClose());
    res.on('error', () => this.onClose());
    this.ctx.streams.add(this);
    this.ctx.heartbeat.add(this);
    if (this.principal.expiresAt !== undefined) this.ctx.deadlines.set(this, this.principal.expiresAt);
    this.ctx.log.debug({ client: this.id, channels: this.channels.length }, 'sse open');
    // Until a channel is subscribed, ids carry the position it resumes from: a
    // stream cut while a later channel is still subscribing must not forget it.
    for (const [channel, since] of resume) if (since !== 'invalid') this.positions.set(channel, formatPosition(since));

    try {
      for (const channel of this.channels) {
        const since = resume.get(channel);
        const subscription = await this.ctx.hub.subscribe(this, channel, { since: since === 'invalid' ? UNRECOVERABLE : since }, (subscription, outcome) => {
          this.subscriptions.push(subscription);
          this.positions.set(channel, formatPosition(outcome.position));
          if (outcome.resetReason !== undefined) this.writeReset(channel, outcome.resetReason);
        });
        if (!subscription) return;
        if (this.ended) return void this.ctx.hub.unsubscribe(subscription);
      }
      // An id-only block sets the browser's Last-Event-ID without firing an event,
      // so a reconnect before the first publication still resumes from here.
      this.write(Buffer.from(`id: ${formatStreamId(this.channels, this.positions)}\n\n`));
    } catch {
      // Never answer 503 to an EventSource (it would stop retrying): end with a retry hint instead.
      this.drain();
    }
  }

  deliver(pub: OutboundPublication): void {
    this.positions.set(pub.pub.channel, pub.position);
    if (this.channels.length === 1) {
      if (this.writable() && this.chunkedSocket) this.writeToSocket(this.chunkedSocket, pub.sseEventChunk);
      else this.write(pub.sseEvent);
      return;
    }
    this.write(Buffer.concat([Buffer.from(`id: ${formatStreamId(this.channels, this.positions)}\n`), pub.sseBody]));
  }

  reset(subscription: Subscription, reason: string, position: Position): void {
    this.positions.set(subscription.channel, formatPosition(position));
    this.writeReset(subscription.channel, reason);
  }

  heartbeat(): void {
    this.write(PING_COMMENT);
  }

  /** The token expired: SSE has no close codes, so say it in an event (TESTPLAN §5), then end. */
  onDeadline(): void {
    this.endWith('event: disconnect\ndata: {"code":4401,"reason":"token expired","reconnect":true}\n\n');
  }

  drain(): void {
    if (this.ended) return;
    if (!this.stream.writableEnded) {
      // HTTP/1.1: close the connection after the last chunk too, or the browser's reconnect reuses it (keep-alive) and
      // comes straight back to this node instead of through the load balancer to another (TESTPLAN T21).
      const socket = this.req.httpVersionMajor === 1 ? this.req.socket : undefined;
      this.stream.end(`retry: ${this.ctx.settings['sse-retry']}\n\n`, () => socket?.end());
    }
    this.onClose();
  }

  terminate(): void {
    this.stream.destroy();
    this.onClose();
  }

  private writeReset(channel: string, reason: string): void {
    const position = this.positions.get(channel);
    const data = JSON.stringify({ channel, reason, position });
    this.write(Buffer.from(`id: ${formatStreamId(this.channels, this.positions)}\nevent: reset\ndata: ${data}\n\n`));
  }

  private write(bytes: Buffer): void {
    if (!this.writable()) return;
    if (this.chunkedSocket) return this.writeToSocket(this.chunkedSocket, encodeHttpChunk(bytes));
    writeBatched(this, bytes);
    if (overOutboundLimit(this, this.ctx.settings['max-outbound-buffer'])) this.dropSlowReader();
  }

  private writable(): boolean {
    if (this.ended || this.stream.writableEnded) return false;
    // Decided at the first write, once the head is out: an HTTP/1.1 chunked response that owns its socket.
    if (this.chunkedSocket === undefined) {
      const res = this.stream;
      this.chunkedSocket = this.req.httpVersionMajor === 1 && res.headersSent && res.chunkedEncoding && res.socket ? { batchedBytes: 0, stream: res.socket } : null;
    }
    return true;
  }

  /**
   * HTTP/1.1 chunked streams bypass res.write, which makes four socket writes
   * per event (size, CRLF, data, CRLF): the event goes to the socket as one
   * pre-framed chunk, shared by every stream of the channel. The response is
   * the socket's current message (res.socket is only set then), so these
   * bytes keep their place among Node's own writes, and res.end() still
   * writes the last chunk.
   */
  private writeToSocket(socket: Batchable, chunk: Buffer): void {
    writeBatched(socket, chunk);
    if (overOutboundLimit(socket, this.ctx.settings['max-outbound-buffer'])) this.dropSlowReader();
  }

  private dropSlowReader(): void {
    this.ctx.metrics.drops.inc({ reason: 'slow_consumer' });
    this.ctx.metrics.closes.inc({ code: '4008' });
    this.endWith('event: disconnect\ndata: {"code":4008,"reason":"slow consumer","reconnect":true}\n\n');
  }

  /** Ends the stream with a last word; a reader that is not reading is cut off after a grace period. */
  private endWith(text: string): void {
    if (this.ended) return;
    if (!this.stream.writableEnded) this.stream.end(text);
    setTimeout(() => this.stream.destroy(), SLOW_READER_GRACE_MS).unref();
    this.onClose();
  }

  private onClose(): void {
    if (this.ended) return;
    this.ended = true;
    for (const subscription of this.subscriptions) this.ctx.hub.unsubscribe(subscription);
    this.subscriptions.length = 0;
    this.ctx.streams.delete(this);
    this.ctx.heartbeat.delete(this);
    this.ctx.deadlines.delete(this);
    this.ctx.log.debug({ client: this.id }, 'sse closed');
  }
}
