import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { unavailable, type HeraldError } from '../core/errors.js';
import { newEpoch, type Position } from '../core/position.js';
import type { PresenceEvent } from '../core/presence.js';
import type { HistoryQuery, HistoryResult, Publication, PublishRequest } from '../core/publication.js';
import type { Broker, BrokerListener, HistoryLimits } from './broker.js';
import { decodeEnvelope, decodePresenceEvent, encodeEnvelope, encodePresenceEvent } from './envelope.js';
import { LivenessProbe } from './liveness-probe.js';
import { RedisKeys } from './redis-keys.js';
import { RedisPresenceStore, type PresenceCommands } from './redis-presence.js';

/**
 * A channel's meta hash (epoch, top offset) lives this long after its last
 * publication, its history only --history-ttl: a chat room quiet for longer
 * than the history TTL keeps its epoch, so its live subscribers on every node
 * get the next message as the next offset instead of a `reset`. A resume from
 * before the expired history still gets `reset` ("history expired").
 */
const POSITION_TTL_MS = 24 * 3600 * 1000;
import { HISTORY_SCRIPT, PRESENCE_ADD_SCRIPT, PRESENCE_LIST_SCRIPT, PRESENCE_REMOVE_SCRIPT, PUBLISH_SCRIPT } from './redis-scripts.js';

export interface RedisBrokerOptions {
  /** redis://[user:pass@]host:port[/db] */
  readonly url: string;
  readonly limits: HistoryLimits;
  readonly prefix?: string;
  /** PUB/SUB liveness probe period; a probe lost for two periods restarts the subscriber connection. */
  readonly probeIntervalMs?: number;
  /** A command not answered within this is refused (publish → 503). */
  readonly commandTimeoutMs?: number;
  readonly presenceTtlMs?: number;
  /** How long start() waits for a first connection before the node starts unready. */
  readonly startTimeoutMs?: number;
  /** Per-connection overrides (tests route one connection through a fault proxy). */
  readonly commandConnection?: RedisOptions;
  readonly subscriberConnection?: RedisOptions;
  readonly log?: Logger;
}

/** Where one of the two connections is. `resubscribing` = connected, restoring its channels. */
type LinkState = 'connecting' | 'resubscribing' | 'ready' | 'down';

interface HeraldCommands extends PresenceCommands {
  heraldPublish(meta: string, stream: string, pubsub: string, envelope: string, size: number, ttlMs: number, epoch: string, positionTtlMs: number): Promise<[number, string]>;
  heraldHistory(meta: string, stream: string, epoch: string, positionTtlMs: number, fromId: string, limit: number, sinceEpoch: string): Promise<[number, string, [string, string[]][]]>;
}

/** Channels per SUBSCRIBE when restoring after a reconnect (Centrifugo batches 512). */
const RESUBSCRIBE_BATCH = 512;
const DEFAULT_START_TIMEOUT_MS = 5000;

/**
 * Many nodes on one Redis (SPEC §7, docs/scaling.md). Two connections:
 * commands (publish script, history, presence) and a subscriber that holds
 * one PUB/SUB subscription per channel with local subscribers. Both fail
 * fast: no offline queue, no retries, a command timeout — a publish is
 * either in Redis or refused, never buffered and reported as success.
 */
export class RedisBroker implements Broker {
  readonly kind = 'redis';
  readonly presence: RedisPresenceStore;
  readonly stats = { reconnects: 0, probeTimeouts: 0 };
  private readonly probe: LivenessProbe;
  private readonly keys: RedisKeys;
  private readonly probeChannel: string;
  private readonly ttlMs: number;
  /** How long a channel's position (epoch, top offset) outlives its last publication: see POSITION_TTL_MS. */
  private readonly positionTtlMs: number;
  private readonly probeIntervalMs: number;
  private readonly log: Logger | undefined;
  private commands!: Redis & HeraldCommands;
  private subscriber!: Redis;
  private commandState: LinkState = 'connecting';
  private subscriberState: LinkState = 'connecting';
  private subscriberDownReason: string | undefined;
  /** Bumped whenever the subscriber connection opens or closes, so a stale resubscribe cannot mark it ready. */
  private subscriberGeneration = 0;
  private connectedOnce = false;
  /** Channels this node wants to receive: restored after every reconnect. */
  private readonly channels = new Set<string>();
  private listener: BrokerListener | undefined;
  private reportedReady = false;
  private readyWaiters: (() => void)[] = [];
  private presenceTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: RedisBrokerOptions) {
    this.keys = new RedisKeys(options.prefix ?? 'herald');
    this.probeChannel = this.keys.probe(randomBytes(6).toString('hex'));
    this.ttlMs = Math.max(1, Math.round(options.limits.ttlSeconds * 1000));
    this.positionTtlMs = Math.max(this.ttlMs, POSITION_TTL_MS);
    this.probeIntervalMs = options.probeIntervalMs ?? 5000;
    this.log = options.log?.child({ broker: 'redis' });
    this.presence = new RedisPresenceStore(() => this.commands, this.keys, options.presenceTtlMs ?? 60_000);
    this.probe = new LivenessProbe(this.probeIntervalMs, {
      active: () => this.commandState === 'ready' && this.subscriberState === 'ready',
      send: (sequence) => this.sendProbe(sequence),
      onTimeout: () => this.restartStarvedSubscriber(),
    });
  }

  async start(listener: BrokerListener): Promise<void> {
    this.listener = listener;
    const timeout = this.options.commandTimeoutMs ?? 1000;
    const failFast: RedisOptions = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: timeout,
      connectTimeout: Math.max(1000, timeout * 2),
      keepAlive: 5000,
      // Reconnect forever, backing off to one attempt per second.
      retryStrategy: (attempt) => (this.closed ? null : Math.min(50 * attempt, 1000)),
    };
    const target = connectionOptionsOf(this.options.url);
    this.commands = new Redis({ ...target, ...failFast, connectionName: 'herald-commands', ...this.options.commandConnection }) as Redis & HeraldCommands;
    this.subscriber = new Redis({ ...target, ...failFast, autoResubscribe: false, connectionName: 'herald-subscriber', ...this.options.subscriberConnection });
    this.defineScripts();
    this.watchCommandConnection();
    this.watchSubscriberConnection();

    this.probe.start();
    this.presenceTimer = setInterval(() => this.refreshPresence(), Math.max(250, this.presence.ttlMs / 3));
    this.presenceTimer.unref();

    const startTimeout = this.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), startTimeout);
      this.readyWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
      if (this.unreadyReason() === undefined) this.updateReadiness();
    });
    if (!ready) this.log?.warn({ reason: this.unreadyReason() }, 'redis not reachable yet; starting unready and retrying');
  }

  async subscribe(channel: string): Promise<void> {
    this.channels.add(channel);
    if (this.subscriber.status !== 'ready') throw unavailable('broker unavailable: redis subscriber connection down');
    try {
      await this.subscriber.subscribe(this.keys.pubsub(channel));
    } catch (err) {
      throw this.refusal('subscribe', err);
    }
  }

  async unsubscribe(channel: string): Promise<void> {
    this.channels.delete(channel);
    // While disconnected there is nothing to undo: the channel is simply not restored.
    if (this.subscriber.status !== 'ready') return;
    await this.subscriber.unsubscribe(this.keys.pubsub(channel)).catch((err: unknown) => this.log?.debug({ err, channel }, 'unsubscribe failed'));
  }

  async publish(request: PublishRequest): Promise<Position> {
    this.requireCommands();
    const channel = request.channel;
    let reply: [number, string];
    try {
      reply = await this.commands.heraldPublish(
        this.keys.meta(channel),
        this.keys.stream(channel),
        this.keys.pubsub(channel),
        encodeEnvelope(request),
        this.options.limits.size,
        this.ttlMs,
        newEpoch(),
        this.positionTtlMs,
      );
    } catch (err) {
      throw this.refusal('publish', err);
    }
    return { offset: Number(reply[0]), epoch: String(reply[1]) };
  }

  async publishPresence(event: PresenceEvent): Promise<void> {
    this.requireCommands();
    await this.commands.publish(this.keys.pubsub(event.channel), encodePresenceEvent(event));
  }

  async history(channel: string, query: HistoryQuery): Promise<HistoryResult> {
    this.requireCommands();
    const since = query.since;
    let reply: [number, string, [string, string[]][]];
    try {
      reply = await this.commands.heraldHistory(
        this.keys.meta(channel),
        this.keys.stream(channel),
        newEpoch(),
        this.positionTtlMs,
        since ? String(since.offset + 1) : '-',
        query.limit ?? -1,
        since?.epoch ?? '',
      );
    } catch (err) {
      throw this.refusal('history', err);
    }
    const epoch = String(reply[1]);
    const publications: Publication[] = [];
    for (const [id, fields] of reply[2]) {
      const envelope = fields[fields.indexOf('d') + 1];
      const decoded = envelope === undefined ? undefined : decodeEnvelope(envelope);
      if (!decoded) continue;
      const offset = Number(id.slice(0, id.indexOf('-')));
      publications.push({ channel, event: decoded.event, data: decoded.data, sender: decoded.sender, offset, epoch });
    }
    return { publications, position: { offset: Number(reply[0]), epoch } };
  }

  unreadyReason(): string | undefined {
    if (this.closed) return 'closed';
    if (this.commandState !== 'ready') return `redis ${this.commandState === 'connecting' ? 'connecting' : 'connection down'}`;
    if (this.subscriberState !== 'ready') return this.subscriberDownReason ?? `redis subscriber ${this.subscriberState}`;
    return undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.probe.stop();
    clearInterval(this.presenceTimer);
    this.listener = undefined;
    this.subscriber?.disconnect();
    this.commands?.disconnect();
  }

  /** Channels this node holds a PUB/SUB subscription for (tests, metrics). */
  get subscribedChannelCount(): number {
    return this.channels.size;
  }

  // ---- connections ----

  private defineScripts(): void {
    this.commands.defineCommand('heraldPublish', { numberOfKeys: 2, lua: PUBLISH_SCRIPT });
    this.commands.defineCommand('heraldHistory', { numberOfKeys: 2, lua: HISTORY_SCRIPT });
    this.commands.defineCommand('heraldPresenceAdd', { numberOfKeys: 2, lua: PRESENCE_ADD_SCRIPT });
    this.commands.defineCommand('heraldPresenceRemove', { numberOfKeys: 2, lua: PRESENCE_REMOVE_SCRIPT });
    this.commands.defineCommand('heraldPresenceList', { numberOfKeys: 2, lua: PRESENCE_LIST_SCRIPT });
  }

  private watchCommandConnection(): void {
    const connection = this.commands;
    connection.on('ready', () => {
      this.commandState = 'ready';
      this.log?.info('redis command connection ready');
      this.refreshPresence();
      this.updateReadiness();
    });
    connection.on('close', () => {
      if (this.commandState === 'ready') this.log?.warn('redis command connection lost');
      if (this.commandState !== 'connecting') this.commandState = 'down';
      this.updateReadiness();
    });
    connection.on('error', (err: Error) => this.log?.debug({ err: err.message }, 'redis command connection error'));
  }

  private watchSubscriberConnection(): void {
    const connection = this.subscriber;
    connection.on('ready', () => void this.resubscribe());
    connection.on('close', () => {
      this.subscriberGeneration++;
      if (this.subscriberState === 'ready') this.log?.warn('redis subscriber connection lost');
      if (this.subscriberState !== 'connecting') this.subscriberState = 'down';
      this.probe.reset();
      this.updateReadiness();
    });
    connection.on('error', (err: Error) => this.log?.debug({ err: err.message }, 'redis subscriber connection error'));
    connection.on('message', (name: string, message: string) => this.onMessage(name, message));
  }

  /** Restores every wanted channel on a fresh subscriber connection, then reports ready. */
  private async resubscribe(): Promise<void> {
    const generation = ++this.subscriberGeneration;
    this.subscriberState = 'resubscribing';
    const names = [this.probeChannel];
    for (const channel of this.channels) names.push(this.keys.pubsub(channel));
    try {
      for (let i = 0; i < names.length; i += RESUBSCRIBE_BATCH) {
        await this.subscriber.subscribe(...names.slice(i, i + RESUBSCRIBE_BATCH));
      }
    } catch (err) {
      if (generation === this.subscriberGeneration && !this.closed) {
        this.log?.warn({ err: (err as Error).message }, 'redis resubscribe failed; reconnecting');
        this.subscriber.disconnect(true);
      }
      return;
    }
    if (generation !== this.subscriberGeneration) return;
    if (this.connectedOnce) this.stats.reconnects++;
    this.connectedOnce = true;
    this.subscriberState = 'ready';
    this.subscriberDownReason = undefined;
    this.probe.reset();
    this.log?.info({ channels: names.length - 1 }, 'redis subscriber ready');
    this.updateReadiness();
  }

  private onMessage(name: string, message: string): void {
    if (name === this.probeChannel) {
      this.probe.received(Number(message));
      return;
    }
    const channel = this.keys.channelOfPubsub(name);
    const listener = this.listener;
    if (channel === undefined || listener === undefined) return;
    if (message.charCodeAt(0) === 0x70 /* p */) {
      const pub = decodePublication(channel, message);
      if (pub) listener.onPublication(pub);
      else this.log?.warn({ channel }, 'malformed publication from redis ignored');
      return;
    }
    const event = decodePresenceEvent(channel, message);
    if (event) listener.onPresence(event);
  }

  /** The probe came not back: the subscriber connection is open but starved (centrifugo#1189). */
  private restartStarvedSubscriber(): void {
    this.stats.probeTimeouts++;
    this.log?.warn('redis PUB/SUB probe timed out; restarting the subscriber connection');
    this.subscriberState = 'down';
    this.subscriberDownReason = 'redis PUB/SUB probe timed out';
    this.updateReadiness();
    this.subscriber.disconnect(true);
  }

  private sendProbe(sequence: number): void {
    this.commands.publish(this.probeChannel, String(sequence)).catch((err: Error) => {
      this.probe.unsent(sequence);
      // A command connection that stopped answering is not "down" to ioredis; make it reconnect.
      if (/timed out/i.test(err.message) && this.commandState === 'ready' && !this.closed) {
        this.log?.warn('redis command connection stalled; reconnecting');
        this.commandState = 'down';
        this.updateReadiness();
        this.commands.disconnect(true);
      }
    });
  }

  private refreshPresence(): void {
    if (this.commandState !== 'ready') return;
    this.presence.refresh().catch((err: Error) => this.log?.debug({ err: err.message }, 'presence refresh failed'));
  }

  private updateReadiness(): void {
    const reason = this.unreadyReason();
    const ready = reason === undefined;
    if (ready) {
      const waiters = this.readyWaiters;
      this.readyWaiters = [];
      for (const wake of waiters) wake();
    }
    if (ready === this.reportedReady || this.closed) return;
    this.reportedReady = ready;
    this.listener?.onStateChange(ready, reason);
  }

  private requireCommands(): void {
    if (this.commandState !== 'ready') throw unavailable(`broker unavailable: ${this.unreadyReason() ?? 'redis'}`);
  }

  private refusal(what: string, err: unknown): HeraldError {
    this.log?.debug({ err: (err as Error)?.message, what }, 'redis command refused');
    return unavailable(`broker unavailable: redis ${what} failed`);
  }
}

/** redis[s]://[user:pass@]host[:port][/db] as ioredis options (so per-connection overrides can win). */
function connectionOptionsOf(url: string): RedisOptions {
  const parsed = new URL(url);
  const options: RedisOptions = {
    host: parsed.hostname.replace(/^\[|\]$/g, ''),
    port: parsed.port === '' ? 6379 : Number(parsed.port),
    db: parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0,
  };
  if (parsed.username) options.username = decodeURIComponent(parsed.username);
  if (parsed.password) options.password = decodeURIComponent(parsed.password);
  if (parsed.protocol === 'rediss:') options.tls = {};
  return options;
}

/** `p<offset>,<epoch>,<envelope>` as the publish script sends it. */
function decodePublication(channel: string, message: string): Publication | undefined {
  const offsetEnd = message.indexOf(',', 1);
  const epochEnd = offsetEnd < 0 ? -1 : message.indexOf(',', offsetEnd + 1);
  if (epochEnd < 0) return undefined;
  const offset = Number(message.slice(1, offsetEnd));
  const fields = decodeEnvelope(message, epochEnd + 1);
  if (!fields || !Number.isSafeInteger(offset)) return undefined;
  return { channel, event: fields.event, data: fields.data, sender: fields.sender, offset, epoch: message.slice(offsetEnd + 1, epochEnd) };
}
