import { newEpoch, type Position } from '../core/position.js';
import { MemoryPresenceStore, type PresenceEvent } from '../core/presence.js';
import type { HistoryQuery, HistoryResult, Publication, PublishRequest } from '../core/publication.js';
import { RingBuffer } from '../core/ring-buffer.js';
import type { Broker, BrokerListener, HistoryLimits } from './broker.js';

interface ChannelStream {
  readonly epoch: string;
  top: number;
  /**
   * Allocated on the first publication: reads and subscribes of a channel
   * nobody publishes to (any name a client cares to ask for) create a stream
   * for its epoch, and it should cost a few bytes until --history-ttl, not a
   * buffer of --history-size slots.
   */
  recent: RingBuffer<Publication> | undefined;
  expiresAt: number;
}

/**
 * The embedded broker of a single node: positions and history in this
 * process. When a stream's TTL passes its publications are freed. If nobody
 * here is subscribed the whole stream goes, and the next publication starts
 * a new epoch (a client resuming from the old one gets `reset`). If the
 * channel has live subscribers the position (epoch, top offset) stays, so a
 * quiet chat room does not reset everyone on its next message; only a resume
 * from before the freed publications gets `reset` ("history expired").
 */
export class MemoryBroker implements Broker {
  readonly kind = 'memory';
  readonly presence = new MemoryPresenceStore();
  /** One process, no link to lose. */
  readonly stats = { reconnects: 0, probeTimeouts: 0 };
  private readonly streams = new Map<string, ChannelStream>();
  private readonly subscribedChannels = new Set<string>();
  private listener: BrokerListener | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(private readonly limits: HistoryLimits) {}

  async start(listener: BrokerListener): Promise<void> {
    this.listener = listener;
    const ttlMs = this.limits.ttlSeconds * 1000;
    const sweepEvery = Math.min(5000, Math.max(50, ttlMs / 2));
    this.sweepTimer = setInterval(() => this.freeExpiredStreams(), sweepEvery);
    this.sweepTimer.unref();
  }

  async subscribe(channel: string): Promise<void> {
    this.subscribedChannels.add(channel);
  }

  async unsubscribe(channel: string): Promise<void> {
    this.subscribedChannels.delete(channel);
  }

  async publish(request: PublishRequest): Promise<Position> {
    const stream = this.liveStream(request.channel) ?? this.newStream(request.channel);
    const pub: Publication = {
      channel: request.channel,
      event: request.event,
      data: request.data,
      sender: request.sender,
      offset: ++stream.top,
      epoch: stream.epoch,
    };
    (stream.recent ??= new RingBuffer(this.limits.size)).push(pub);
    stream.expiresAt = Date.now() + this.limits.ttlSeconds * 1000;
    if (this.subscribedChannels.has(request.channel)) this.listener?.onPublication(pub);
    return { offset: pub.offset, epoch: pub.epoch };
  }

  async publishPresence(event: PresenceEvent): Promise<void> {
    if (this.subscribedChannels.has(event.channel)) this.listener?.onPresence(event);
  }

  async history(channel: string, query: HistoryQuery): Promise<HistoryResult> {
    const stream = this.liveStream(channel) ?? this.newStream(channel);
    const position = { offset: stream.top, epoch: stream.epoch };
    const limit = query.limit ?? Number.MAX_SAFE_INTEGER;
    const recent = stream.recent;
    if (!recent) return { publications: [], position };
    const oldestOffset = stream.top - recent.length + 1;
    let from = 0;
    if (query.since) {
      if (query.since.epoch !== stream.epoch) return { publications: [], position };
      from = query.since.offset + 1 - oldestOffset;
    }
    return { publications: recent.slice(from, limit), position };
  }

  unreadyReason(): string | undefined {
    return undefined;
  }

  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.listener = undefined;
  }

  /** Number of channels holding a position; exposed for leak tests and metrics. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Number of channels still holding publications (within --history-ttl). */
  get historyCount(): number {
    let count = 0;
    for (const stream of this.streams.values()) if (stream.recent !== undefined) count++;
    return count;
  }

  private liveStream(channel: string): ChannelStream | undefined {
    const stream = this.streams.get(channel);
    if (stream && stream.expiresAt <= Date.now()) return this.expire(channel, stream);
    return stream;
  }

  /** Frees an expired stream's publications, and the stream itself unless the channel has live subscribers. */
  private expire(channel: string, stream: ChannelStream): ChannelStream | undefined {
    if (this.subscribedChannels.has(channel)) {
      stream.recent = undefined;
      return stream;
    }
    this.streams.delete(channel);
    return undefined;
  }

  private newStream(channel: string): ChannelStream {
    const stream: ChannelStream = {
      epoch: newEpoch(),
      top: 0,
      recent: undefined,
      expiresAt: Date.now() + this.limits.ttlSeconds * 1000,
    };
    this.streams.set(channel, stream);
    return stream;
  }

  private freeExpiredStreams(): void {
    const now = Date.now();
    for (const [channel, stream] of this.streams) {
      if (stream.expiresAt <= now) this.expire(channel, stream);
    }
  }
}
