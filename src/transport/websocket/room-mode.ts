import type { WebSocket } from 'ws';
import type { Principal } from '../../auth/principal.js';
import type { NodeContext } from '../../context.js';
import { CloseCode, HeraldError } from '../../core/errors.js';
import type { Subscription } from '../../core/hub.js';
import type { OutboundPublication } from '../../core/outbound.js';
import { jsonNestsDeeperThan } from '../../protocol/json-depth.js';
import { TOKEN_REFUSAL_CLOSES, WebSocketConnection } from './connection.js';


/**
 * The seed's simple rooms (SPEC §3a): every text message is one JSON value,
 * published to the room and delivered verbatim to every other member.
 */
export class RoomConnection extends WebSocketConnection {
  readonly tracksPresence = true;

  /** While a first-message token is being verified, later messages wait for the outcome. */
  private authenticating: Promise<void> | undefined;

  constructor(
    ctx: NodeContext,
    ws: WebSocket,
    id: string,
    principal: Principal | undefined,
    private readonly room: string,
  ) {
    super(ctx, ws, id, principal);
  }

  /** Joins the room now, or after the first-message `auth` when no token came with the upgrade. */
  start(): void {
    if (!this.awaitingAuth) this.join();
  }

  private join(): void {
    if (!this.principal.canSubscribe(this.room)) return this.close(CloseCode.forbidden, 'not permitted to join this room');
    const hub = this.ctx.hub;
    hub
      .subscribe(this, this.room, {}, (subscription) => this.subscriptions.set(this.room, subscription))
      .then((subscription) => {
        if (subscription && this.closed) hub.unsubscribe(subscription);
      })
      .catch(() => this.close(CloseCode.tryAgainLater, 'broker unavailable'));
  }

  /** SPEC §6: room mode accepts {"type":"auth","token"} as its first message. */
  private authenticateFirstMessage(message: unknown): void {
    const token = (message as { type?: unknown; token?: unknown } | null)?.type === 'auth' ? (message as { token?: unknown }).token : undefined;
    if (typeof token !== 'string') return this.close(CloseCode.unauthorized, 'first message must be {"type":"auth","token"}');
    this.authenticating = this.adoptToken(token).then(
      (principal) => {
        this.authenticating = undefined;
        this.sendText(JSON.stringify({ type: 'authed', user: principal.user ?? null }));
        this.join();
      },
      (err: unknown) => {
        this.authenticating = undefined;
        this.refuseToken(err);
      },
    );
  }

  /**
   * SPEC §6: a connection stays past its token's expiry when the client sends
   * a fresh token. In room mode that is the same {"type":"auth","token"}
   * message; it is never published, which would hand the token to every
   * member. Room mode has no error replies, so a refused refresh closes.
   */
  private refreshToken(token: string): void {
    this.authenticating = this.adoptToken(token).then(
      (principal) => {
        this.authenticating = undefined;
        if (!principal.canSubscribe(this.room)) return this.close(CloseCode.forbidden, 'not permitted to join this room');
        this.sendText(JSON.stringify({ type: 'authed', user: principal.user ?? null }));
      },
      (err: unknown) => {
        this.authenticating = undefined;
        this.refuseToken(err);
      },
    );
  }

  /** Room mode has no error replies: a token that cannot be accepted closes, with a code that says whether to retry. */
  private refuseToken(err: unknown): void {
    const code = err instanceof HeraldError ? err.code : 'unauthorized';
    this.ctx.metrics.rejects.inc({ reason: code });
    this.close(...(TOKEN_REFUSAL_CLOSES[code] ?? TOKEN_REFUSAL_CLOSES.unauthorized!));
  }

  deliver(pub: OutboundPublication): void {
    if (pub.pub.sender !== this.id) this.writeFrame(pub.roomFrame);
  }

  /** Room mode carries no positions, so there is nothing to tell a member about a gap. */
  reset(_subscription: Subscription): void {}

  protected handleMessage(data: Buffer, isBinary: boolean): void {
    if (this.authenticating) {
      void this.authenticating.then(() => this.onMessage(data, isBinary));
      return;
    }
    if (isBinary) return this.close(CloseCode.unsupportedData, 'binary frames are not accepted');
    const text = data.toString('utf8');
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return this.close(CloseCode.invalidPayload, 'message must be JSON');
    }
    if (jsonNestsDeeperThan(text)) return this.close(CloseCode.invalidPayload, 'message nests too deeply');
    if (this.awaitingAuth) return this.authenticateFirstMessage(message);
    // Room mode has no error replies, so a message over the rate is refused by closing 4429, never dropped silently.
    if (!this.withinRateLimit()) return this.close(CloseCode.rateLimited, 'rate limit exceeded');
    if (this.ctx.auth.required && isAuthMessage(message)) return this.refreshToken(message.token);
    if (!this.principal.canPublish(this.room)) return this.close(CloseCode.forbidden, 'publish not permitted');
    // Room mode has no answers, so a publish the broker refuses closes the connection rather than vanish.
    this.ctx.hub.publish({ channel: this.room, data: text, sender: this.id }).catch(() => this.close(CloseCode.tryAgainLater, 'broker unavailable'));
  }
}

function isAuthMessage(message: unknown): message is { type: 'auth'; token: string } {
  const candidate = message as { type?: unknown; token?: unknown } | null;
  return typeof candidate === 'object' && candidate !== null && candidate.type === 'auth' && typeof candidate.token === 'string';
}
