import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { ANONYMOUS, type Principal } from '../../auth/principal.js';
import type { NodeContext } from '../../context.js';
import { CloseCode, HeraldError } from '../../core/errors.js';
import { isValidChannelName } from '../../core/channel-name.js';
import { SUBPROTOCOL } from '../../protocol/messages.js';
import { ProtocolConnection } from './protocol-mode.js';
import { RoomConnection } from './room-mode.js';
import { corkUntilFlush } from '../write-batch.js';

/** Fragments per message and buffered chunks: ws defaults (16384 / 262144) are far above what a 64 KiB message needs. */
export const MAX_FRAGMENTS = 1024;
export const MAX_BUFFERED_CHUNKS = 16384;
/** How long a closing handshake may take before the socket is destroyed. */
export const CLOSE_TIMEOUT_MS = 5000;
/** Room for a herald.v1 command around its `data`: id, type, channel (≤ 255), event (≤ 128), keys and quotes. */
export const PROTOCOL_ENVELOPE_BYTES = 4096;

/**
 * Accepts WebSocket upgrades on /ws. Everything that can refuse (path,
 * draining, origin, token) runs before ws touches the socket, and the socket
 * has an error listener before any async step, so a reset at any stage
 * cannot crash the process.
 */
export class WebSocketGateway {
  private readonly wss: WebSocketServer;
  /**
   * herald.v1 frames wrap `data` in a command envelope, so they may exceed
   * --max-message-size by PROTOCOL_ENVELOPE_BYTES: a publish whose data is
   * over the limit is then answered `too_large` instead of closing with 1009.
   */
  private readonly protocolWss: WebSocketServer;

  constructor(private readonly ctx: NodeContext) {
    this.wss = createWebSocketServer(ctx.settings['max-message-size']);
    this.protocolWss = createWebSocketServer(ctx.settings['max-message-size'] + PROTOCOL_ENVELOPE_BYTES);
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', destroyQuietly);
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/ws') return refuse(socket, 404, 'Not Found');
    if (this.ctx.draining()) return refuse(socket, 503, 'Service Unavailable');
    if (!this.ctx.origins.allows(req)) {
      this.ctx.metrics.rejects.inc({ reason: 'origin' });
      return refuse(socket, 403, 'Forbidden');
    }
    const room = url.searchParams.get('room');
    if (room !== null && room !== '' && !isValidChannelName(room)) return refuse(socket, 400, 'Bad Request');
    const ip = req.socket.remoteAddress ?? '';
    if (!this.ctx.connectionsPerIp.holdWhileOpen(ip, socket)) {
      this.ctx.metrics.rejects.inc({ reason: 'connection_limit' });
      return refuse(socket, 429, 'Too Many Requests', 'Retry-After: 5\r\n');
    }
    const token = url.searchParams.get('token');
    this.authenticate(token).then(
      (principal) => {
        if (socket.destroyed) return;
        if (principal?.user !== undefined && !this.ctx.connectionsPerUser.holdWhileOpen(principal.user, socket)) {
          this.ctx.metrics.rejects.inc({ reason: 'user_connection_limit' });
          return refuse(socket, 429, 'Too Many Requests', 'Retry-After: 5\r\n');
        }
        const wss = offersSubprotocol(req) ? this.protocolWss : this.wss;
        corkUntilFlush(socket);
        wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, ip, principal, room));
      },
      (err: unknown) => {
        const code = err instanceof HeraldError ? err.code : 'unauthorized';
        this.ctx.metrics.rejects.inc({ reason: code });
        if (code === 'forbidden') refuse(socket, 403, 'Forbidden');
        else if (code === 'unavailable') refuse(socket, 503, 'Service Unavailable', 'Retry-After: 5\r\n');
        else refuse(socket, 401, 'Unauthorized');
      },
    );
  }

  /**
   * A token on the upgrade is checked before the socket opens (bad → 401).
   * Without one, `undefined` means "authenticate with the first message" when
   * auth is on, and anonymous access when it is off.
   */
  private async authenticate(token: string | null): Promise<Principal | undefined> {
    if (token !== null) return this.ctx.auth.verify(token);
    return this.ctx.auth.required ? undefined : ANONYMOUS;
  }

  private accept(ws: WebSocket, ip: string, principal: Principal | undefined, room: string | null): void {
    const id = this.ctx.nextClientId();
    this.ctx.log.debug({ client: id, ip, mode: ws.protocol || 'room' }, 'websocket open');
    if (ws.protocol === SUBPROTOCOL) {
      new ProtocolConnection(this.ctx, ws, id, principal).start();
      return;
    }
    if (!room) {
      this.ctx.metrics.closes.inc({ code: String(CloseCode.roomRequired) });
      ws.on('error', ignoreError);
      ws.close(CloseCode.roomRequired, 'Room ID required');
      return;
    }
    new RoomConnection(this.ctx, ws, id, principal, room).start();
  }

  close(): void {
    this.wss.close();
    this.protocolWss.close();
  }
}

function createWebSocketServer(maxPayload: number): WebSocketServer {
  return new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false,
    maxPayload,
    maxFragments: MAX_FRAGMENTS,
    maxBufferedChunks: MAX_BUFFERED_CHUNKS,
    closeTimeout: CLOSE_TIMEOUT_MS,
    handleProtocols: (protocols: Set<string>) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  } as ConstructorParameters<typeof WebSocketServer>[0]);
}

function offersSubprotocol(req: IncomingMessage): boolean {
  const header = req.headers['sec-websocket-protocol'];
  return typeof header === 'string' && header.split(',').some((p) => p.trim() === SUBPROTOCOL);
}

function refuse(socket: Duplex, status: number, text: string, extraHeaders = ''): void {
  if (!socket.writable) return void socket.destroy();
  socket.end(`HTTP/1.1 ${status} ${text}\r\n${extraHeaders}Connection: close\r\nContent-Length: 0\r\n\r\n`);
}

function destroyQuietly(this: Duplex): void {
  this.destroy();
}


/** A socket already being closed for a policy reason; its errors need no handling beyond not crashing. */
function ignoreError(): void {}
