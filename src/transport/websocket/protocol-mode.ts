import type { WebSocket } from 'ws';
import type { Principal } from '../../auth/principal.js';
import type { NodeContext } from '../../context.js';
import { assertChannelName } from '../../core/channel-name.js';
import { badRequest, CloseCode, HeraldError } from '../../core/errors.js';
import type { Subscription } from '../../core/hub.js';
import { encodeHistoryEntry, type OutboundPublication } from '../../core/outbound.js';
import { formatPosition, parsePosition, type Position } from '../../core/position.js';
import type { PresenceEvent } from '../../core/presence.js';
import { encodeTextFrame } from '../../protocol/frame.js';
import { parseEventName, parseHistoryQuery } from '../../protocol/fields.js';
import { jsonNestsDeeperThan, MAX_JSON_DEPTH } from '../../protocol/json-depth.js';
import { TOKEN_REFUSAL_CLOSES, WebSocketConnection } from './connection.js';

const PING_FRAME = encodeTextFrame(Buffer.from('{"type":"ping"}'));

type Command = Record<string, unknown> & { type: string; id: number };

/**
 * herald.v1 (SPEC §3b): several channels per connection, acknowledged
 * commands with correlation ids, recovery with `since`, presence.
 */
export class ProtocolConnection extends WebSocketConnection {
  readonly tracksPresence = true;
  /**
   * Subscribes still reading history, by channel. A second subscribe to the
   * channel is refused, the subscription limit counts them, and an
   * unsubscribe waits for them — otherwise it would answer `not_found` and the
   * subscription would go live afterwards, never to be released.
   */
  private readonly subscribing = new Map<string, Promise<void>>();
  /** While a first-message token is verified, later commands wait for the outcome instead of being refused. */
  private authenticating: Promise<void> | undefined;

  constructor(ctx: NodeContext, ws: WebSocket, id: string, principal: Principal | undefined) {
    super(ctx, ws, id, principal);
  }

  start(): void {
    const user = this.user === undefined ? '' : `,"user":${JSON.stringify(this.user)}`;
    this.sendText(`{"type":"connected","client":"${this.id}"${user},"pingInterval":${this.ctx.settings['ping-interval']}}`);
  }

  deliver(pub: OutboundPublication): void {
    this.writeFrame(pub.protocolFrame);
  }

  reset(subscription: Subscription, reason: string, position: Position): void {
    this.sendReset(subscription.channel, reason, position);
  }

  presence(event: PresenceEvent): void {
    const user = event.info.user === undefined ? '' : `,"user":${JSON.stringify(event.info.user)}`;
    this.sendText(`{"type":"${event.type}","channel":${JSON.stringify(event.channel)},"client":${JSON.stringify(event.info.client)}${user}}`);
  }

  protected override sendPing(): void {
    super.sendPing();
    this.writeFrame(PING_FRAME);
  }

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
      return this.close(CloseCode.invalidPayload, 'frame must be JSON');
    }
    const command = typeof message === 'object' && message !== null && !Array.isArray(message) ? (message as Record<string, unknown>) : undefined;
    if (command?.type === 'pong') return;
    const id = typeof command?.id === 'number' && Number.isSafeInteger(command.id) ? command.id : undefined;
    // Every frame that earns an answer counts, also the refused ones: frames without an id must not bypass the rate.
    if (!this.withinRateLimit()) return this.sendError(id, new HeraldError('rate_limited', 'too many commands; slow down'));
    if (!command) return this.sendError(undefined, badRequest('frame must be a JSON object'));
    if (id === undefined) return this.sendError(undefined, badRequest('command needs a numeric "id"'));
    if (jsonNestsDeeperThan(text)) return this.sendError(id, badRequest(`frame nests deeper than ${MAX_JSON_DEPTH} levels`));
    if (this.awaitingAuth && command.type !== 'auth') {
      return this.sendError(id, new HeraldError('unauthorized', 'authenticate first: {"type":"auth","token"}'));
    }
    const done = this.dispatch(command as Command).catch((err: unknown) => this.sendError(id, err));
    if (this.awaitingAuth) this.authenticating = done.finally(() => (this.authenticating = undefined));
  }

  private async dispatch(command: Command): Promise<void> {
    switch (command.type) {
      case 'subscribe':
        return this.subscribe(command);
      case 'unsubscribe':
        return this.unsubscribe(command);
      case 'publish':
        return this.publish(command);
      case 'history':
        return this.history(command);
      case 'presence':
        return this.listPresence(command);
      case 'auth':
        return this.authenticate(command);
      default:
        // `type` is untrusted: String() of an object may throw ({"toString":1}) or recurse.
        throw badRequest(typeof command.type === 'string' ? `unknown command type ${JSON.stringify(command.type.slice(0, 64))}` : '"type" must be a string');
    }
  }

  private async subscribe(command: Command): Promise<void> {
    const channel = assertChannelName(command.channel);
    if (!this.principal.canSubscribe(channel)) throw new HeraldError('forbidden', `not permitted to subscribe to ${channel}`);
    if (this.subscriptions.has(channel) || this.subscribing.has(channel)) throw badRequest(`already subscribed to ${channel}`);
    const limit = this.ctx.settings['max-subscriptions'];
    if (this.subscriptions.size + this.subscribing.size >= limit) throw badRequest(`subscription limit reached (${limit})`);
    if (command.presence !== undefined && typeof command.presence !== 'boolean') throw badRequest('"presence" must be a boolean');
    if (command.since !== undefined && typeof command.since !== 'string') throw badRequest('"since" must be a position string');
    const since = command.since === undefined ? undefined : parsePosition(command.since);
    // A malformed `since` is answered like an unrecoverable one: a reset, never an error (TESTPLAN P10).
    const sinceOrImpossible = command.since !== undefined && since === undefined ? { offset: -1, epoch: '-' } : since;
    const attempt = this.ctx.hub.subscribe(
      this,
      channel,
      { since: sinceOrImpossible, presence: command.presence === true },
      (subscription, outcome) => {
        this.subscribing.delete(channel);
        this.subscriptions.set(channel, subscription);
        // `outcome.position` is where the stream starts: the catch-up and live publications that follow come after it.
        const position = formatPosition(outcome.position);
        this.sendText(`{"id":${command.id},"type":"subscribed","channel":${JSON.stringify(channel)},"position":"${position}","recovered":${outcome.recovered}}`);
        if (outcome.resetReason !== undefined) this.sendReset(channel, outcome.resetReason, outcome.position);
      },
    );
    const settled = attempt.then(ignore, ignore);
    this.subscribing.set(channel, settled);
    void settled.then(() => {
      if (this.subscribing.get(channel) === settled) this.subscribing.delete(channel);
    });
    const subscription = await attempt;
    if (subscription && this.closed) this.ctx.hub.unsubscribe(subscription);
  }

  private async unsubscribe(command: Command): Promise<void> {
    const channel = assertChannelName(command.channel);
    const inFlight = this.subscribing.get(channel);
    if (inFlight) await inFlight;
    const subscription = this.subscriptions.get(channel);
    if (!subscription) throw new HeraldError('not_found', `not subscribed to ${channel}`);
    this.subscriptions.delete(channel);
    this.ctx.hub.unsubscribe(subscription);
    this.sendText(`{"id":${command.id},"type":"unsubscribed","channel":${JSON.stringify(channel)}}`);
  }

  private async publish(command: Command): Promise<void> {
    const channel = assertChannelName(command.channel);
    if (!('data' in command) || command.data === undefined) throw badRequest('"data" is required');
    const event = parseEventName(command.event);
    if (!this.principal.canPublish(channel)) throw new HeraldError('forbidden', `not permitted to publish to ${channel}`);
    const data = JSON.stringify(command.data);
    if (Buffer.byteLength(data) > this.ctx.settings['max-message-size']) throw new HeraldError('too_large', 'data exceeds --max-message-size');
    const position = await this.ctx.hub.publish({ channel, event, data });
    this.sendText(`{"id":${command.id},"type":"published","channel":${JSON.stringify(channel)},"position":"${formatPosition(position)}"}`);
  }

  private async history(command: Command): Promise<void> {
    const channel = assertChannelName(command.channel);
    if (!this.principal.canSubscribe(channel)) throw new HeraldError('forbidden', `not permitted to read ${channel}`);
    const { since, limit } = parseHistoryQuery(command.since, command.limit);
    const result = await this.ctx.hub.history(channel, since, limit);
    const publications = result.publications.map(encodeHistoryEntry).join(',');
    this.sendText(`{"id":${command.id},"type":"history","channel":${JSON.stringify(channel)},"publications":[${publications}],"position":"${formatPosition(result.position)}"}`);
  }

  private async listPresence(command: Command): Promise<void> {
    const channel = assertChannelName(command.channel);
    if (!this.principal.canSubscribe(channel)) throw new HeraldError('forbidden', `not permitted to see presence of ${channel}`);
    const clients = await this.ctx.hub.presence(channel);
    this.sendText(JSON.stringify({ id: command.id, type: 'presence', channel, clients }));
  }

  /** First-message auth (a bad token closes 4401) or a refresh on a live connection (a bad token is an error). */
  private async authenticate(command: Command): Promise<void> {
    const firstMessage = this.awaitingAuth;
    let principal: Principal;
    try {
      principal = await this.adoptToken(command.token);
    } catch (err) {
      const closing = firstMessage && err instanceof HeraldError ? TOKEN_REFUSAL_CLOSES[err.code] : undefined;
      if (closing !== undefined) {
        this.sendError(command.id, err);
        return this.close(...closing);
      }
      throw err;
    }
    // A refreshed token that no longer permits a channel held here: its permissions apply from now on, and
    // the connection holds no way to drop one subscription on the server's initiative (SPEC §3b), so it closes.
    const revoked = firstMessage ? undefined : [...this.subscriptions.keys(), ...this.subscribing.keys()].find((channel) => !principal.canSubscribe(channel));
    if (revoked !== undefined) {
      this.sendError(command.id, new HeraldError('forbidden', `the refreshed token does not permit ${revoked}`));
      return this.close(CloseCode.forbidden, 'token no longer permits a subscribed channel');
    }
    this.sendText(JSON.stringify({ id: command.id, type: 'authed', user: principal.user ?? null }));
  }

  private sendReset(channel: string, reason: string, position: Position): void {
    this.sendText(`{"type":"reset","channel":${JSON.stringify(channel)},"reason":${JSON.stringify(reason)},"position":"${formatPosition(position)}"}`);
  }

  private sendError(id: number | undefined, err: unknown): void {
    const error = err instanceof HeraldError ? err : new HeraldError('unavailable', 'temporarily unavailable');
    if (!(err instanceof HeraldError)) this.ctx.log.warn({ err, client: this.id }, 'command failed');
    this.ctx.metrics.rejects.inc({ reason: error.code });
    const idPart = id === undefined ? '' : `"id":${id},`;
    this.sendText(`{${idPart}"type":"error","code":"${error.code}","message":${JSON.stringify(error.message)}}`);
  }
}

function ignore(): void {}
