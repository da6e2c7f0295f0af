import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import { UNAUTHENTICATED, type Principal } from '../../auth/principal.js';
import type { Drainable, NodeContext } from '../../context.js';
import { CloseCode, HeraldError } from '../../core/errors.js';
import type { Subscriber, Subscription } from '../../core/hub.js';
import type { OutboundPublication } from '../../core/outbound.js';
import type { Position } from '../../core/position.js';
import { encodeTextFrame } from '../../protocol/frame.js';
import { MAX_STRIKES, type BucketState } from '../../core/token-bucket.js';
import type { DeadlineMember } from '../deadlines.js';
import type { HeartbeatMember } from '../heartbeat.js';
import { overOutboundLimit, writeBatched, type Batchable } from '../write-batch.js';

/** Back-pointer from a ws WebSocket to its connection, so listeners can be shared functions. */
const CONNECTION = Symbol('herald.connection');
type TaggedWebSocket = WebSocket & { [CONNECTION]?: WebSocketConnection };

/** A slow consumer that cannot even take its close frame is cut off after this long. */
export const SLOW_CONSUMER_GRACE_MS = 1000;

/**
 * How a token refused in a message (first-message auth, or a refresh) ends
 * the connection, by the refusal's code — shared by both modes. Keys
 * unreachable is not the token's fault: 1013 has the client come back later,
 * where 4401 stops it; a user over its connection limit may retry once
 * another of its connections closed.
 */
export const TOKEN_REFUSAL_CLOSES: Partial<Record<string, readonly [code: number, reason: string]>> = {
  unauthorized: [CloseCode.unauthorized, 'invalid token'],
  unavailable: [CloseCode.tryAgainLater, 'token keys unavailable'],
  rate_limited: [CloseCode.rateLimited, 'too many connections for this user'],
  forbidden: [CloseCode.forbidden, 'a refreshed token must be for the same user'],
};

/**
 * What room mode and protocol mode share: writing pre-built frames with
 * per-tick batching, the outbound-buffer limit, heartbeats, and releasing
 * every subscription when the socket goes away.
 */
export abstract class WebSocketConnection implements Subscriber, HeartbeatMember, DeadlineMember, Batchable, Drainable {
  batchedBytes = 0;
  readonly stream: Socket;
  readonly subscriptions = new Map<string, Subscription>();
  abstract readonly tracksPresence: boolean;
  protected lastSeen = Date.now();
  protected closed = false;
  /** No token yet: only a first `auth` message is accepted until the auth deadline (SPEC §6). */
  protected awaitingAuth: boolean;
  protected principal: Principal;
  /** Herald is closing this connection for cause; later input is ignored. */
  private refused = false;
  private readonly bucket: BucketState;

  constructor(
    protected readonly ctx: NodeContext,
    protected readonly ws: WebSocket,
    readonly id: string,
    principal: Principal | undefined,
  ) {
    this.stream = (ws as unknown as { _socket: Socket })._socket;
    this.principal = principal ?? UNAUTHENTICATED;
    this.awaitingAuth = principal === undefined;
    this.bucket = ctx.messageBucket.initialState(this.lastSeen);
    if (principal === undefined) ctx.deadlines.set(this, this.lastSeen + ctx.settings['auth-timeout'] * 1000);
    else if (principal.expiresAt !== undefined) ctx.deadlines.set(this, principal.expiresAt);
    (ws as TaggedWebSocket)[CONNECTION] = this;
    ws.on('message', onSocketMessage);
    ws.on('pong', onSocketActivity);
    ws.on('ping', onSocketActivity);
    ws.on('close', onSocketClose);
    ws.on('error', onSocketError);
    ctx.websockets.add(this);
    ctx.heartbeat.add(this);
  }

  get user(): string | undefined {
    return this.principal.user;
  }

  abstract deliver(pub: OutboundPublication, subscription: Subscription): void;
  abstract reset(subscription: Subscription, reason: string, position: Position): void;
  protected abstract handleMessage(data: Buffer, isBinary: boolean): void;

  /** Writes one complete frame, batched with others in this tick. */
  writeFrame(frame: Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    writeBatched(this, frame);
    if (overOutboundLimit(this, this.ctx.settings['max-outbound-buffer'])) this.dropSlowConsumer();
  }

  sendText(text: string): void {
    this.writeFrame(encodeTextFrame(Buffer.from(text)));
  }

  close(code: number, reason: string): void {
    if (code !== CloseCode.goingAway) this.refused = true;
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.countClose(code);
    this.ws.close(code, reason);
  }

  countClose(code: number): void {
    this.ctx.metrics.closes.inc({ code: String(code) });
  }

  drain(): void {
    this.close(CloseCode.goingAway, 'server shutting down');
  }

  terminate(): void {
    this.ws.terminate();
  }

  /** The auth deadline passed without a token, or the token expired without a refresh. */
  onDeadline(): void {
    if (this.awaitingAuth) this.close(CloseCode.authTimeout, 'authentication timeout');
    else this.close(CloseCode.unauthorized, 'token expired');
  }

  /** Verifies a token sent in a message and adopts it; a refresh must be for the same user. */
  protected async adoptToken(token: unknown): Promise<Principal> {
    if (typeof token !== 'string') throw new HeraldError('bad_request', '"token" must be a string');
    const principal = await this.ctx.auth.verify(token);
    if (!this.awaitingAuth && this.ctx.auth.required && principal.user !== this.principal.user) {
      throw new HeraldError('forbidden', 'a refreshed token must be for the same user');
    }
    if (this.closed) return principal;
    if (this.awaitingAuth && principal.user !== undefined && !this.ctx.connectionsPerUser.holdWhileOpen(principal.user, this.stream)) {
      this.ctx.metrics.rejects.inc({ reason: 'user_connection_limit' });
      throw new HeraldError('rate_limited', 'too many connections for this user');
    }
    this.principal = principal;
    this.awaitingAuth = false;
    if (principal.expiresAt !== undefined) this.ctx.deadlines.set(this, principal.expiresAt);
    else this.ctx.deadlines.delete(this);
    return principal;
  }

  /**
   * Token-bucket check for one inbound message. Returns false when it must
   * be refused; continued abuse closes the connection with 4429.
   */
  protected withinRateLimit(): boolean {
    if (this.ctx.messageBucket.take(this.bucket, this.lastSeen)) return true;
    this.ctx.metrics.rejects.inc({ reason: 'rate_limited' });
    if (this.bucket.strikes >= MAX_STRIKES) this.close(CloseCode.rateLimited, 'rate limit exceeded');
    return false;
  }

  heartbeat(now: number): void {
    if (now - this.lastSeen > 2 * this.ctx.heartbeat.intervalMs) {
      this.ctx.metrics.closes.inc({ code: 'no_pong' });
      this.ctx.log.debug({ client: this.id }, 'heartbeat timeout');
      this.ws.terminate();
      return;
    }
    if (this.ws.readyState === WebSocket.OPEN) this.sendPing();
  }

  protected sendPing(): void {
    this.ws.ping();
  }

  markActive(): void {
    this.lastSeen = Date.now();
  }

  onMessage(data: Buffer, isBinary: boolean): void {
    this.lastSeen = Date.now();
    // Once Herald closes the connection for cause (bad token, rate limit…), what the peer sent after is moot:
    // above all, messages queued behind a refused first-message auth must not each be verified again.
    // (A peer's own close, or a drain, still lets messages sent before it through.)
    if (this.refused) return;
    try {
      this.handleMessage(data, isBinary);
    } catch (err) {
      this.ctx.log.error({ err, client: this.id }, 'message handler failed');
      this.close(1011, 'internal error');
    }
  }

  onClose(code: number): void {
    if (this.closed) return;
    this.closed = true;
    for (const subscription of this.subscriptions.values()) this.ctx.hub.unsubscribe(subscription);
    this.subscriptions.clear();
    this.ctx.websockets.delete(this);
    this.ctx.heartbeat.delete(this);
    this.ctx.deadlines.delete(this);
    this.ctx.log.debug({ client: this.id, code }, 'websocket closed');
  }

  private dropSlowConsumer(): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ctx.metrics.drops.inc({ reason: 'slow_consumer' });
    this.close(CloseCode.slowConsumer, 'slow consumer');
    // It is not reading, so it may never take the close frame either.
    setTimeout(() => this.ws.terminate(), SLOW_CONSUMER_GRACE_MS).unref();
  }
}

function connectionOf(ws: WebSocket): WebSocketConnection | undefined {
  return (ws as TaggedWebSocket)[CONNECTION];
}

function onSocketMessage(this: WebSocket, data: Buffer, isBinary: boolean): void {
  connectionOf(this)?.onMessage(data, isBinary);
}

function onSocketActivity(this: WebSocket): void {
  connectionOf(this)?.markActive();
}

function onSocketClose(this: WebSocket, code: number): void {
  connectionOf(this)?.onClose(code);
}

function onSocketError(this: WebSocket, err: Error): void {
  // ws closes the socket itself (1002/1007/1008/1009 or a reset); 'close' follows and frees everything.
  // A protocol violation carries the close code ws sends: count it like the closes Herald decides.
  const code = wsCloseCode(err);
  if (code !== undefined) connectionOf(this)?.countClose(code);
}

/** ws tags its protocol errors with the close code it sends, under a private `Symbol('status-code')`. */
function wsCloseCode(err: Error): number | undefined {
  for (const symbol of Object.getOwnPropertySymbols(err)) {
    const value = (err as unknown as Record<symbol, unknown>)[symbol];
    if (symbol.description === 'status-code' && typeof value === 'number') return value;
  }
  return undefined;
}
