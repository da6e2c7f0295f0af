import { randomBytes } from 'node:crypto';
import {
  connect,
  DeliverPolicy,
  DiscardPolicy,
  headers,
  nanos,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type KV,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type StreamConfig,
  type Subscription as NatsSubscription,
} from 'nats';
import type { Logger } from 'pino';
import { unavailable, type HeraldError } from '../core/errors.js';
import { newEpoch, type Position } from '../core/position.js';
import type { PresenceEvent } from '../core/presence.js';
import type { HistoryQuery, HistoryResult, Publication, PublishRequest } from '../core/publication.js';
import type { Broker, BrokerListener, HistoryLimits } from './broker.js';
import { decodeEnvelope, decodePresenceEvent, encodeEnvelope, encodePresenceEvent } from './envelope.js';
import { LivenessProbe } from './liveness-probe.js';
import { NatsPresenceStore } from './nats-presence.js';
import { readStored } from './nats-read.js';
import { NatsSubjects } from './nats-subjects.js';

export interface NatsBrokerOptions {
  readonly servers: string[];
  readonly limits: HistoryLimits;
  readonly prefix?: string;
  readonly probeIntervalMs?: number;
  readonly commandTimeoutMs?: number;
  readonly presenceTtlMs?: number;
  readonly startTimeoutMs?: number;
  readonly log?: Logger;
}

/** `preparing` = connected, making sure the stream and the presence bucket exist. */
type LinkState = 'connecting' | 'preparing' | 'ready' | 'down';

/** The last stored message of a channel: its stream sequence and Herald position. */
interface ChannelTop {
  readonly seq: number;
  readonly offset: number;
  readonly epoch: string;
  readonly pub?: Publication;
}

const OFFSET_HEADER = 'Herald-Offset';
const EPOCH_HEADER = 'Herald-Epoch';
/** JetStream error codes (nats-server errors.json). */
const WRONG_LAST_SEQUENCE = 10071;
const NO_MESSAGE_FOUND = 10037;
const STREAM_NOT_FOUND = 10059;
const STREAM_NAME_IN_USE = 10058;
/** Optimistic publish attempts before a contended publish is refused. */
const MAX_PUBLISH_ATTEMPTS = 32;
const MAX_CACHED_TOPS = 10_000;
const DEFAULT_START_TIMEOUT_MS = 5000;

/**
 * Many nodes on NATS (SPEC §7; design in docs/scaling.md).
 *
 * - History: one JetStream stream captures `<prefix>.h.<channel>`, keeping
 *   `history-size + 1` messages per subject for `history-ttl`.
 * - Positions: the stream sequence is global, so each message carries its
 *   channel offset and epoch in headers, and a node publishes offset n+1 with
 *   `Nats-Expected-Last-Subject-Sequence` = the sequence of offset n. Exactly
 *   one publisher wins each offset; a loser re-reads the top and retries.
 *   A channel with no stored message starts a new epoch (history lost).
 * - Fan-out: the stream republishes every *stored* message to
 *   `<prefix>.r.<channel>` in stream order; a node holds one core
 *   subscription per channel with local subscribers. Presence events use the
 *   same subject (without position headers).
 * - Fail fast: a publish is acknowledged only after JetStream stored it;
 *   anything else is refused.
 */
export class NatsBroker implements Broker {
  readonly kind = 'nats';
  readonly presence: NatsPresenceStore;
  readonly stats = { reconnects: 0, probeTimeouts: 0, publishConflicts: 0 };
  private readonly subjects: NatsSubjects;
  private readonly probeSubject: string;
  private readonly timeoutMs: number;
  private readonly ttlMs: number;
  private readonly log: Logger | undefined;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private bucket: KV | undefined;
  private state: LinkState = 'connecting';
  private downReason: string | undefined;
  private connected = false;
  private preparing: Promise<void> | undefined;
  private listener: BrokerListener | undefined;
  private reportedReady = false;
  private readyWaiters: (() => void)[] = [];
  private readonly subscriptions = new Map<string, NatsSubscription>();
  /** Last known top per channel, so an uncontended publish needs one round trip. */
  private readonly tops = new Map<string, ChannelTop>();
  /** Publishes of one channel from this node run one after another (each needs the previous sequence). */
  private readonly publishQueues = new Map<string, Promise<unknown>>();
  private readonly probe: LivenessProbe;
  private retryTimer: NodeJS.Timeout | undefined;
  private presenceTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: NatsBrokerOptions) {
    this.subjects = new NatsSubjects(options.prefix ?? 'herald');
    this.probeSubject = this.subjects.probe(randomBytes(6).toString('hex'));
    this.timeoutMs = options.commandTimeoutMs ?? 1000;
    this.ttlMs = Math.max(1, Math.round(options.limits.ttlSeconds * 1000));
    this.log = options.log?.child({ broker: 'nats' });
    this.presence = new NatsPresenceStore(
      () => (this.state === 'ready' && this.bucket ? { kv: this.bucket, js: this.js!, jsm: this.jsm! } : undefined),
      this.subjects,
      options.presenceTtlMs ?? 60_000,
      this.timeoutMs,
    );
    this.probe = new LivenessProbe(options.probeIntervalMs ?? 5000, {
      active: () => this.state === 'ready',
      send: (sequence) => this.nc?.publish(this.probeSubject, String(sequence)),
      onTimeout: () => this.reconnectStarved(),
    });
  }

  async start(listener: BrokerListener): Promise<void> {
    this.listener = listener;
    const probeIntervalMs = this.options.probeIntervalMs ?? 5000;
    connect({
      servers: this.options.servers,
      name: 'herald',
      reconnect: true,
      maxReconnectAttempts: -1,
      waitOnFirstConnect: true,
      reconnectTimeWait: 250,
      reconnectJitter: 100,
      timeout: Math.max(1000, this.timeoutMs * 2),
      pingInterval: Math.max(1000, probeIntervalMs),
      maxPingOut: 2,
    }).then(
      (nc) => this.onConnected(nc),
      (err: Error) => this.log?.error({ err: err.message }, 'nats connect failed'),
    );
    this.probe.start();
    // A node whose stream setup failed (JetStream not ready yet) retries it.
    this.retryTimer = setInterval(() => {
      if (this.state === 'down' && this.connected && !this.closed) void this.prepare();
    }, probeIntervalMs);
    this.retryTimer.unref();
    this.presenceTimer = setInterval(() => this.refreshPresence(), Math.max(250, this.presence.ttlMs / 3));
    this.presenceTimer.unref();

    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), this.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
      this.readyWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    if (!ready) this.log?.warn({ reason: this.unreadyReason() }, 'nats not ready yet; starting unready and retrying');
  }

  async subscribe(channel: string): Promise<void> {
    this.requireReady();
    const nc = this.nc!;
    if (!this.subscriptions.has(channel)) {
      const subscription = nc.subscribe(this.subjects.live(channel), {
        callback: (err, msg) => {
          if (!err) this.onLive(channel, msg);
        },
      });
      this.subscriptions.set(channel, subscription);
    }
    // The server must have the subscription before the hub reads history, or a publication could fall between.
    try {
      await withTimeout(nc.flush(), this.timeoutMs);
    } catch (err) {
      throw this.refusal('subscribe', err);
    }
  }

  async unsubscribe(channel: string): Promise<void> {
    const subscription = this.subscriptions.get(channel);
    this.subscriptions.delete(channel);
    subscription?.unsubscribe();
  }

  async publish(request: PublishRequest): Promise<Position> {
    this.requireReady();
    const channel = request.channel;
    const previous = this.publishQueues.get(channel) ?? Promise.resolve();
    const run = () => this.publishNow(request);
    const result = previous.then(run, run);
    const tail = result.catch(() => undefined);
    this.publishQueues.set(channel, tail);
    void tail.then(() => {
      if (this.publishQueues.get(channel) === tail) this.publishQueues.delete(channel);
    });
    return result;
  }

  async publishPresence(event: PresenceEvent): Promise<void> {
    this.requireReady();
    this.nc!.publish(this.subjects.live(event.channel), encodePresenceEvent(event));
  }

  async history(channel: string, query: HistoryQuery): Promise<HistoryResult> {
    this.requireReady();
    const top = (await this.readTop(channel)) ?? (await this.startEpoch(channel));
    const position = { offset: top.offset, epoch: top.epoch };
    const since = query.since;
    const limit = query.limit ?? Number.MAX_SAFE_INTEGER;
    const none = { publications: [], position };
    if (limit <= 0 || top.offset === 0 || this.options.limits.size === 0) return none;
    if (since && since.epoch !== top.epoch) return none;
    // The stream keeps one message more than history-size (room for the epoch marker); show history-size.
    const oldest = Math.max(1, top.offset - this.options.limits.size + 1);
    const from = Math.max(oldest, since ? since.offset + 1 : 1);
    if (from > top.offset) return none;
    if (from === top.offset && top.pub) return { publications: [top.pub], position };
    const publications = await this.readRange(channel, top, from, limit);
    return { publications, position };
  }

  unreadyReason(): string | undefined {
    if (this.closed) return 'closed';
    if (this.state !== 'ready') return this.downReason ?? `nats ${this.state}`;
    return undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.probe.stop();
    clearInterval(this.retryTimer);
    clearInterval(this.presenceTimer);
    this.listener = undefined;
    await this.nc?.close().catch(() => undefined);
  }

  // ---- positions and history ----

  private async publishNow(request: PublishRequest): Promise<Position> {
    this.requireReady();
    const channel = request.channel;
    const subject = this.subjects.history(channel);
    const payload = encodeEnvelope(request);
    for (let attempt = 0; attempt < MAX_PUBLISH_ATTEMPTS; attempt++) {
      const top = this.tops.get(channel) ?? (await this.readTop(channel)) ?? { seq: 0, offset: 0, epoch: newEpoch() };
      const offset = top.offset + 1;
      try {
        const ack = await this.js!.publish(subject, payload, {
          headers: positionHeaders(offset, top.epoch),
          expect: { lastSubjectSequence: top.seq },
          timeout: this.timeoutMs,
        });
        this.rememberTop(channel, { seq: ack.seq, offset, epoch: top.epoch });
        return { offset, epoch: top.epoch };
      } catch (err) {
        this.tops.delete(channel);
        if (apiErrorCode(err) === WRONG_LAST_SEQUENCE) {
          this.stats.publishConflicts++;
          continue; // another node took this offset first (or history expired): re-read and retry
        }
        if (isNoResponders(err)) await this.ensureStream().catch(() => undefined);
        throw this.refusal('publish', err);
      }
    }
    throw unavailable('broker unavailable: too much contention on this channel');
  }

  /** The last stored message of a channel, or undefined when it has none (no epoch yet, or history lost). */
  private async readTop(channel: string): Promise<ChannelTop | undefined> {
    let stored;
    try {
      stored = await this.jsm!.streams.getMessage(this.subjects.stream, { last_by_subj: this.subjects.history(channel) });
    } catch (err) {
      const code = apiErrorCode(err);
      if (code === NO_MESSAGE_FOUND) return undefined;
      if (code === STREAM_NOT_FOUND) {
        await this.ensureStream().catch(() => undefined);
        return undefined;
      }
      throw this.refusal('history', err);
    }
    const top = decodeStored(channel, stored.seq, stored.header, stored.data);
    if (!top) throw unavailable('broker unavailable: malformed history entry');
    this.rememberTop(channel, top);
    return top;
  }

  /**
   * Gives an empty channel an epoch now, with a marker message at offset 0, so
   * that a subscriber reading the empty channel and the first publication
   * agree on the epoch (the memory and Redis brokers do the same).
   */
  private async startEpoch(channel: string): Promise<ChannelTop> {
    for (let attempt = 0; attempt < MAX_PUBLISH_ATTEMPTS; attempt++) {
      const epoch = newEpoch();
      try {
        const ack = await this.js!.publish(this.subjects.history(channel), '', {
          headers: positionHeaders(0, epoch),
          expect: { lastSubjectSequence: 0 },
          timeout: this.timeoutMs,
        });
        const top = { seq: ack.seq, offset: 0, epoch };
        this.rememberTop(channel, top);
        return top;
      } catch (err) {
        if (apiErrorCode(err) !== WRONG_LAST_SEQUENCE) throw this.refusal('history', err);
        const top = await this.readTop(channel);
        if (top) return top;
      }
    }
    throw unavailable('broker unavailable: too much contention on this channel');
  }

  /**
   * Reads a channel's stored publications from `from` up to `top` with a
   * short-lived consumer filtered on the channel's subject. Messages stored
   * after `top` are ignored, so the run ends exactly at the returned top.
   */
  private async readRange(channel: string, top: ChannelTop, from: number, limit: number): Promise<Publication[]> {
    const publications: Publication[] = [];
    const config = { filter_subject: this.subjects.history(channel), deliver_policy: DeliverPolicy.All };
    try {
      await readStored(this.js!, this.jsm!, this.subjects.stream, config, this.timeoutMs, (msg) => {
        if (msg.seq > top.seq) return false;
        const stored = decodeStored(channel, msg.seq, msg.headers, msg.data);
        if (stored?.pub && stored.epoch === top.epoch && stored.offset >= from) publications.push(stored.pub);
        return msg.seq < top.seq && publications.length < limit;
      });
    } catch (err) {
      throw this.refusal('history', err);
    }
    return publications;
  }

  private rememberTop(channel: string, top: ChannelTop): void {
    this.tops.delete(channel);
    this.tops.set(channel, top);
    if (this.tops.size > MAX_CACHED_TOPS) this.tops.delete(this.tops.keys().next().value!);
  }

  // ---- connection ----

  private async onConnected(nc: NatsConnection): Promise<void> {
    if (this.closed) {
      await nc.close();
      return;
    }
    this.nc = nc;
    this.connected = true;
    this.js = nc.jetstream({ timeout: this.timeoutMs });
    nc.subscribe(this.probeSubject, {
      callback: (err, msg) => {
        if (!err) this.probe.received(Number(msg.string()));
      },
    });
    void this.watchStatus(nc);
    await this.prepare();
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const status of nc.status()) {
      switch (status.type) {
        case 'disconnect':
          this.connected = false;
          this.setDown('nats connection lost');
          break;
        case 'staleConnection':
          this.setDown('nats connection stale');
          break;
        case 'reconnect':
          this.connected = true;
          this.stats.reconnects++;
          void this.prepare();
          break;
      }
    }
  }

  /** After every (re)connect: make sure the stream and bucket exist (storage may be gone), then report ready. */
  private prepare(): Promise<void> {
    return (this.preparing ??= (async () => {
      this.state = 'preparing';
      try {
        const nc = this.nc!;
        this.jsm ??= await nc.jetstreamManager({ timeout: this.timeoutMs, checkAPI: false });
        await this.ensureStream();
        this.bucket = await this.js!.views
          .kv(this.subjects.presenceBucket, { ttl: this.presence.ttlMs, history: 1, timeout: this.timeoutMs })
          // Created by another node with other settings: use it as it is (its TTL wins).
          .catch(() => this.js!.views.kv(this.subjects.presenceBucket, { bindOnly: true, timeout: this.timeoutMs }));
        await withTimeout(nc.flush(), this.timeoutMs);
      } catch (err) {
        this.setDown(`nats jetstream unavailable: ${(err as Error).message}`);
        return;
      } finally {
        this.preparing = undefined;
      }
      if (!this.connected || this.closed) return;
      this.state = 'ready';
      this.downReason = undefined;
      this.probe.reset();
      this.log?.info({ channels: this.subscriptions.size }, 'nats ready');
      this.refreshPresence();
      this.updateReadiness();
    })());
  }

  private async ensureStream(): Promise<void> {
    const config: Partial<StreamConfig> & { name: string } = {
      name: this.subjects.stream,
      subjects: [this.subjects.historyWildcard],
      max_msgs_per_subject: this.options.limits.size + 1,
      max_age: nanos(this.ttlMs),
      republish: { src: this.subjects.historyWildcard, dest: this.subjects.liveWildcard },
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      num_replicas: 1,
    };
    try {
      await this.jsm!.streams.add(config);
    } catch (err) {
      if (apiErrorCode(err) !== STREAM_NAME_IN_USE) throw err;
      await this.jsm!.streams.update(config.name, config);
    }
  }

  private setDown(reason: string): void {
    if (this.state !== 'ready' && this.downReason === reason) return;
    if (this.state === 'ready') this.log?.warn({ reason }, 'nats unavailable');
    this.state = this.state === 'connecting' ? 'connecting' : 'down';
    this.downReason = reason;
    this.tops.clear();
    this.probe.reset();
    this.updateReadiness();
  }

  /**
   * Core NATS drops messages silently for a slow or cut-off subscriber; a lost
   * probe forces a reconnect, after which the hub re-checks every channel.
   */
  private reconnectStarved(): void {
    this.stats.probeTimeouts++;
    this.setDown('nats probe timed out');
    this.nc?.reconnect().catch(() => undefined);
  }

  private onLive(channel: string, msg: Msg): void {
    const listener = this.listener;
    if (!listener) return;
    const offsetText = msg.headers?.get(OFFSET_HEADER);
    if (!offsetText) {
      const event = decodePresenceEvent(channel, msg.string());
      if (event) listener.onPresence(event);
      return;
    }
    const stored = decodeStored(channel, 0, msg.headers, msg.data);
    if (stored?.pub) listener.onPublication(stored.pub);
  }

  private refreshPresence(): void {
    if (this.state !== 'ready') return;
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

  private requireReady(): void {
    const reason = this.unreadyReason();
    if (reason !== undefined) throw unavailable(`broker unavailable: ${reason}`);
  }

  private refusal(what: string, err: unknown): HeraldError {
    this.log?.debug({ err: (err as Error)?.message, what }, 'nats request refused');
    return unavailable(`broker unavailable: nats ${what} failed`);
  }
}

function positionHeaders(offset: number, epoch: string): MsgHdrs {
  const h = headers();
  h.set(OFFSET_HEADER, String(offset));
  h.set(EPOCH_HEADER, epoch);
  return h;
}

/** A stored (or republished) message as a channel top; `pub` is absent for the epoch marker. */
function decodeStored(channel: string, seq: number, h: MsgHdrs | undefined, data: Uint8Array): ChannelTop | undefined {
  const offset = Number(h?.get(OFFSET_HEADER));
  const epoch = h?.get(EPOCH_HEADER) ?? '';
  if (!Number.isSafeInteger(offset) || offset < 0 || epoch === '') return undefined;
  if (offset === 0) return { seq, offset, epoch };
  const fields = decodeEnvelope(textDecoder.decode(data));
  if (!fields) return undefined;
  return { seq, offset, epoch, pub: { channel, event: fields.event, data: fields.data, sender: fields.sender, offset, epoch } };
}

const textDecoder = new TextDecoder();

function apiErrorCode(err: unknown): number | undefined {
  return (err as { api_error?: { err_code?: number } })?.api_error?.err_code;
}

function isNoResponders(err: unknown): boolean {
  return (err as { code?: string })?.code === '503';
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
