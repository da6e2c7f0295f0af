/**
 * herald/client — the herald.v1 client for browsers and Node ≥ 20 (SPEC §8).
 *
 * An explicit state machine (connecting → connected → disconnected, and
 * closed for good), one reconnect policy object, and subscriptions as plain
 * objects that remember the last position they delivered, so that after any
 * reconnect the application sees each publication once and in order — or an
 * onReset when history could not fill the gap.
 */
import { ReconnectPolicy, type ReconnectOptions } from './reconnect.js';
import { Subscription, type Publication, type PresenceMember, type SubscribeOptions } from './subscription.js';
import { AUTH_CLOSE_CODES, HeraldError } from './errors.js';
import { refreshDelay, tokenExpiry } from './token-expiry.js';

export { HeraldError, ReconnectPolicy, Subscription };
export type { Publication, PresenceMember, ReconnectOptions, SubscribeOptions };
export type { ResetInfo, HistoryOptions } from './subscription.js';

export type ClientState = 'connecting' | 'connected' | 'disconnected' | 'closed';

export interface HeraldClientOptions {
  /** A JWT sent as the first message of every connection. */
  token?: string;
  /** Called before every (re)connect for a fresh token; wins over `token`. */
  getToken?: () => Promise<string>;
  /** Milliseconds a command may wait for its answer (default 10 s). */
  commandTimeout?: number;
  /** Milliseconds a connection attempt may take before it is abandoned and retried (default 10 s). */
  connectTimeout?: number;
  /** Extra milliseconds past the server's ping interval before the connection counts as dead. */
  pingGrace?: number;
  reconnect?: ReconnectOptions;
  /** A WebSocket implementation; defaults to the global one, or the `ws` package in Node. */
  WebSocket?: WebSocketConstructor;
}

/** The parts of the WHATWG WebSocket this client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** `ws` only: drop the TCP connection without a close handshake. */
  terminate?(): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

type StateListener = (state: ClientState) => void;
type ErrorListener = (error: Error) => void;

interface PendingCommand {
  resolve(answer: ServerAnswer): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/** An answer or push from the server; fields vary by `type`. */
export interface ServerAnswer {
  type: string;
  id?: number;
  [field: string]: unknown;
}

const SUBPROTOCOL = 'herald.v1';
const OPEN = 1;
const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export class HeraldClient {
  private stateValue: ClientState = 'disconnected';
  private socket: WebSocketLike | undefined;
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly pending = new Map<number, PendingCommand>();
  private readonly stateListeners = new Set<StateListener>();
  private readonly errorListeners = new Set<ErrorListener>();
  private readonly policy: ReconnectPolicy;
  private nextCommandId = 1;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Connect timeout while connecting, then the dead-server timer while open. */
  private deadTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private pingIntervalMs = 0;
  /** Client id the server gave this connection (from `connected`). */
  clientId: string | undefined;
  /** User the token named (from `authed`). */
  user: string | undefined;

  constructor(
    readonly url: string,
    private readonly options: HeraldClientOptions = {},
  ) {
    this.policy = new ReconnectPolicy(options.reconnect);
    void this.connect();
  }

  get state(): ClientState {
    return this.stateValue;
  }

  on(event: 'state', listener: StateListener): () => void;
  on(event: 'error', listener: ErrorListener): () => void;
  on(event: 'state' | 'error', listener: StateListener | ErrorListener): () => void {
    const set = (event === 'state' ? this.stateListeners : this.errorListeners) as Set<typeof listener>;
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Subscribes now (or as soon as connected); re-subscribes after every reconnect from the last position seen. */
  subscribe(channel: string, options: SubscribeOptions): Subscription {
    if (this.subscriptions.has(channel)) throw new Error(`already subscribed to ${channel}`);
    const subscription = new Subscription(this, channel, options);
    this.subscriptions.set(channel, subscription);
    if (this.stateValue === 'connected') subscription.sendSubscribe();
    return subscription;
  }

  /** Publishes without subscribing; resolves to the position. */
  async publish(channel: string, data: unknown, options: { event?: string } = {}): Promise<string> {
    const answer = await this.command({ type: 'publish', channel, data, ...(options.event === undefined ? {} : { event: options.event }) });
    return answer.position as string;
  }

  /** Closes for good: no reconnect, every subscription ends. */
  close(): void {
    this.setState('closed');
    this.clearTimers();
    this.failPending(new Error('client closed'));
    for (const subscription of this.subscriptions.values()) subscription.end();
    this.subscriptions.clear();
    const socket = this.socket;
    this.socket = undefined;
    socket?.close(1000, 'client closed');
  }

  /** Sends a command and resolves with its answer; rejects on an error answer, a timeout, or a lost connection. */
  command(body: Record<string, unknown>, requireConnected = true): Promise<ServerAnswer> {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN || (requireConnected && this.stateValue !== 'connected')) {
      return Promise.reject(new HeraldError('unavailable', 'not connected'));
    }
    const id = this.nextCommandId++;
    return new Promise((resolve, reject) => {
      const timeout = this.options.commandTimeout ?? DEFAULT_COMMAND_TIMEOUT_MS;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new HeraldError('timeout', `no answer to ${String(body.type)} within ${timeout} ms`));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer });
      socket.send(JSON.stringify({ id, ...body }));
    });
  }

  /** Called by a Subscription that unsubscribed, so no memory is kept for it. */
  forget(subscription: Subscription): void {
    if (this.subscriptions.get(subscription.channel) === subscription) this.subscriptions.delete(subscription.channel);
  }

  // ---- connection lifecycle ----

  private async connect(): Promise<void> {
    if (this.stateValue === 'closed') return;
    this.setState('connecting');
    let token: string | undefined;
    try {
      token = this.options.getToken ? await this.options.getToken() : this.options.token;
      const WebSocketImpl = this.options.WebSocket ?? (await defaultWebSocket());
      if ((this.stateValue as ClientState) === 'closed') return; // closed while awaiting the token
      const socket = new WebSocketImpl(this.url, [SUBPROTOCOL]);
      this.socket = socket;
      socket.onopen = () => void this.onOpen(socket, token);
      socket.onmessage = (event) => this.onMessage(socket, event.data);
      socket.onclose = (event) => this.onClose(socket, event.code, event.reason);
      socket.onerror = () => {};
      const connectTimeout = this.options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_MS;
      this.deadTimer = setTimeout(() => this.abandon(socket, `no connection within ${connectTimeout} ms`), connectTimeout);
    } catch (err) {
      this.emitError(err as Error);
      this.scheduleReconnect();
    }
  }

  private async onOpen(socket: WebSocketLike, token: string | undefined): Promise<void> {
    if (socket !== this.socket) return;
    this.armDeadTimer();
    try {
      if (token !== undefined) await this.authenticate(token);
    } catch (err) {
      this.emitError(err as Error);
      // A refused token ends here (4401); keys the server cannot reach, or a timeout, are worth another try.
      const refused = err instanceof HeraldError && (err.code === 'unauthorized' || err.code === 'forbidden');
      socket.close(refused ? 4401 : 1000, refused ? 'auth failed' : 'auth not possible now');
      return;
    }
    if (socket !== this.socket) return;
    this.scheduleTokenRefresh(token);
    this.setState('connected');
    this.policy.connected();
    for (const subscription of this.subscriptions.values()) subscription.sendSubscribe();
  }

  private onMessage(socket: WebSocketLike, raw: unknown): void {
    if (socket !== this.socket) return;
    this.armDeadTimer();
    let message: ServerAnswer;
    try {
      message = JSON.parse(String(raw)) as ServerAnswer;
    } catch {
      return;
    }
    if (typeof message.id === 'number') return this.settle(message.id, message);
    switch (message.type) {
      case 'connected':
        this.clientId = message.client as string;
        this.pingIntervalMs = Number(message.pingInterval) * 1000 || 0;
        this.armDeadTimer();
        return;
      case 'ping':
        socket.send('{"type":"pong"}');
        return;
      case 'message':
        return this.subscriptions.get(message.channel as string)?.receive(message);
      case 'join':
      case 'leave':
        return this.subscriptions.get(message.channel as string)?.presenceEvent(message);
      case 'reset':
        return this.subscriptions.get(message.channel as string)?.resetFromServer(message);
      case 'error':
        return this.emitError(new HeraldError(String(message.code), String(message.message)));
    }
  }

  private onClose(socket: WebSocketLike, code: number, reason: string): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    clearTimeout(this.deadTimer);
    clearTimeout(this.refreshTimer);
    const closed = new HeraldError('unavailable', `connection closed (${code}${reason ? ` ${reason}` : ''})`);
    this.failPending(closed);
    for (const subscription of this.subscriptions.values()) subscription.disconnected();
    if (this.stateValue === 'closed') return;
    if (AUTH_CLOSE_CODES.has(code) && !this.options.getToken) {
      // The same token would be refused again: reconnecting forever helps nobody.
      this.emitError(new HeraldError(code === 4403 ? 'forbidden' : 'unauthorized', closed.message));
      this.close();
      return;
    }
    this.setState('disconnected');
    this.scheduleReconnect();
  }

  private async authenticate(token: string): Promise<void> {
    const authed = await this.command({ type: 'auth', token }, false);
    this.user = (authed.user as string | null) ?? undefined;
  }

  /** Asks getToken for a new token shortly before this one expires and sends it on the open connection. */
  private scheduleTokenRefresh(token: string | undefined): void {
    clearTimeout(this.refreshTimer);
    const exp = token === undefined || !this.options.getToken ? undefined : tokenExpiry(token);
    if (exp === undefined) return;
    const socket = this.socket;
    this.refreshTimer = setTimeout(async () => {
      try {
        const fresh = await this.options.getToken!();
        if (socket !== this.socket) return;
        await this.authenticate(fresh);
        this.scheduleTokenRefresh(fresh);
      } catch (err) {
        // The server closes 4401 at exp; the reconnect then asks getToken again.
        this.emitError(err as Error);
      }
    }, refreshDelay(exp));
  }

  /**
   * A subscribe went unanswered: the connection cannot be trusted (the
   * server may or may not have subscribed, and asking again on it would be
   * refused as a duplicate). Drop it; the reconnect re-subscribes every
   * channel from its last position, so nothing is missed.
   */
  restartConnection(why: string): void {
    if (this.socket) this.abandon(this.socket, why);
  }

  /** Gives up on a socket that cannot be trusted any more (never opened, or the server went silent). */
  private abandon(socket: WebSocketLike, why: string): void {
    if (socket !== this.socket) return;
    this.emitError(new HeraldError('unavailable', why));
    // terminate(): a close handshake on a dead link would wait for ws' 30 s close timeout.
    if (socket.terminate) socket.terminate();
    else socket.close(4000, why);
    this.onClose(socket, 1006, why);
  }

  private clearTimers(): void {
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.deadTimer);
    clearTimeout(this.refreshTimer);
  }

  private scheduleReconnect(): void {
    if (this.stateValue === 'closed') return;
    if (this.stateValue !== 'disconnected') this.setState('disconnected');
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => void this.connect(), this.policy.nextDelay());
  }

  /** A server that stops pinging is dead even if TCP says otherwise: drop it and reconnect. */
  private armDeadTimer(): void {
    clearTimeout(this.deadTimer);
    if (this.pingIntervalMs <= 0) return;
    const grace = this.options.pingGrace ?? this.pingIntervalMs / 2 + 1000;
    const socket = this.socket;
    if (!socket) return;
    this.deadTimer = setTimeout(() => this.abandon(socket, 'no ping from server'), this.pingIntervalMs + grace);
  }

  private settle(id: number, answer: ServerAnswer): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if (answer.type === 'error') pending.reject(new HeraldError(String(answer.code), String(answer.message)));
    else pending.resolve(answer);
  }

  private failPending(error: Error): void {
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.pending.clear();
  }

  private setState(state: ClientState): void {
    if (this.stateValue === state || this.stateValue === 'closed') return;
    this.stateValue = state;
    for (const listener of this.stateListeners) listener(state);
  }

  emitError(error: Error): void {
    for (const listener of this.errorListeners) listener(error);
  }
}

/** The global WebSocket (browsers, Node ≥ 22), else the `ws` package (Node 20). */
async function defaultWebSocket(): Promise<WebSocketConstructor> {
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global) return global;
  const moduleName = 'ws';
  const ws = (await import(/* @vite-ignore */ moduleName)) as { default: WebSocketConstructor };
  return ws.default;
}
