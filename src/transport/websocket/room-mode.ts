import type { WebSocket } from 'ws';
import type { Principal } from '../../auth/principal.js';
import type { NodeContext } from '../../context.js';
import { CloseCode } from '../../core/errors.js';
import type { Subscription } from '../../core/hub.js';
import type { OutboundPublication } from '../../core/outbound.js';
import { WebSocketConnection } from './connection.js';

/** Close code for "the broker is down, come back later" (RFC 6455 1013, Try Again Later). */
const TRY_AGAIN_LATER = 1013;

/**
 * The seed's simple rooms (SPEC §3a): every text message is one JSON value,
 * published to the room and delivered verbatim to every other member.
 */
export class RoomConnection extends WebSocketConnection {
  readonly tracksPresence = true;

  constructor(
    ctx: NodeContext,
    ws: WebSocket,
    id: string,
    principal: Principal,
    private readonly room: string,
  ) {
    super(ctx, ws, id, principal);
  }

  start(): void {
    const hub = this.ctx.hub;
    hub
      .subscribe(this, this.room, {}, (subscription) => this.subscriptions.set(this.room, subscription))
      .then((subscription) => {
        if (subscription && this.closed) hub.unsubscribe(subscription);
      })
      .catch(() => this.close(TRY_AGAIN_LATER, 'broker unavailable'));
  }

  deliver(pub: OutboundPublication): void {
    if (pub.pub.sender !== this.id) this.writeFrame(pub.roomFrame);
  }

  /** Room mode carries no positions, so there is nothing to tell a member about a gap. */
  reset(_subscription: Subscription): void {}

  protected handleMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) return this.close(CloseCode.unsupportedData, 'binary frames are not accepted');
    const text = data.toString('utf8');
    try {
      JSON.parse(text);
    } catch {
      return this.close(CloseCode.invalidPayload, 'message must be JSON');
    }
    if (!this.principal.canPublish(this.room)) return this.close(CloseCode.forbidden, 'publish not permitted');
    // Room mode has no answers, so a publish the broker refuses closes the connection rather than vanish.
    this.ctx.hub.publish({ channel: this.room, data: text, sender: this.id }).catch(() => this.close(TRY_AGAIN_LATER, 'broker unavailable'));
  }
}
