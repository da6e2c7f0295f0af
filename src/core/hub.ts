import type { Broker, BrokerListener } from '../broker/broker.js';
import { HeraldError, unavailable } from './errors.js';
import { OutboundPublication } from './outbound.js';
import type { Position } from './position.js';
import type { PresenceEvent, PresenceInfo } from './presence.js';
import { isRecovered, type HistoryResult, type Publication, type PublishRequest } from './publication.js';

/** A connection or stream that receives publications. Implemented by the transports. */
export interface Subscriber {
  readonly id: string;
  readonly user?: string;
  /** Whether this subscriber shows up in presence (WebSocket clients do; SSE readers do not). */
  readonly tracksPresence: boolean;
  deliver(pub: OutboundPublication, subscription: Subscription): void;
  /** The live stream of a channel broke and could not be repaired from history. */
  reset(subscription: Subscription, reason: string, position: Position): void;
  presence?(event: PresenceEvent, subscription: Subscription): void;
}

export interface SubscribeOptions {
  readonly since?: Position;
  /** Receive join/leave events for this channel. */
  readonly presence?: boolean;
}

export interface SubscribeOutcome {
  /** The position the subscriber is at once subscribed: catch-up and live publications follow it. */
  readonly position: Position;
  /** True only when `since` was given and every publication after it was recovered. */
  readonly recovered: boolean;
  /** Why recovery failed, when `since` was given and it did. */
  readonly resetReason?: string;
}

/** One subscriber in one channel. */
export class Subscription {
  /** Live publications that arrive while history is being read; null once live. */
  pending: Publication[] | null = [];
  active = true;
  constructor(
    readonly subscriber: Subscriber,
    readonly channel: string,
    readonly wantsPresence: boolean,
  ) {}
}

class HubChannel {
  readonly subscriptions = new Set<Subscription>();
  readonly presenceWatchers = new Set<Subscription>();
  /** Last offset and epoch seen on the live path: used to drop duplicates and to detect gaps. */
  epoch: string | undefined;
  lastOffset = 0;
  /** While repairing a gap from history, live publications wait here. */
  repairBuffer: Publication[] | null = null;
  constructor(
    readonly name: string,
    readonly brokerSubscribed: Promise<void>,
  ) {}
}

export interface HubStats {
  publications: number;
  deliveries: number;
  resets: number;
}

export interface HubOptions {
  readonly historySize: number;
}

/**
 * Knows channels, subscribers and positions; talks to the broker through
 * its interface only. Transports call subscribe/unsubscribe/publish and
 * implement Subscriber; nothing here knows about sockets.
 */
export class Hub implements BrokerListener {
  private readonly channels = new Map<string, HubChannel>();
  readonly stats: HubStats = { publications: 0, deliveries: 0, resets: 0 };
  private brokerWasDown = false;

  constructor(
    readonly broker: Broker,
    private readonly options: HubOptions,
    private readonly onError: (err: unknown, context: string) => void = () => {},
  ) {}

  start(): Promise<void> {
    return this.broker.start(this);
  }

  get channelCount(): number {
    return this.channels.size;
  }

  /** Channels with local subscribers and their counts (GET /api/channels). */
  listChannels(): { channel: string; subscribers: number }[] {
    return [...this.channels.values()].map((ch) => ({ channel: ch.name, subscribers: ch.subscriptions.size }));
  }

  subscriberCount(channel: string): number {
    return this.channels.get(channel)?.subscriptions.size ?? 0;
  }

  async publish(request: PublishRequest): Promise<Position> {
    this.ensureReady();
    const position = await this.broker.publish(request);
    this.stats.publications++;
    return position;
  }

  history(channel: string, since: Position | undefined, limit: number | undefined): Promise<HistoryResult> {
    this.ensureReady();
    return this.broker.history(channel, { since, limit });
  }

  presence(channel: string): Promise<PresenceInfo[]> {
    this.ensureReady();
    return this.broker.presence.list(channel);
  }

  /**
   * Subscribe, then read history, then merge: live publications that arrive
   * meanwhile are buffered on the subscription and replayed after the
   * recovered ones, de-duplicated by offset, so the subscriber sees every
   * offset once and in order. `announce` runs synchronously right before the
   * catch-up is delivered, so the transport's "subscribed" answer always
   * precedes the first publication.
   */
  async subscribe(
    subscriber: Subscriber,
    channelName: string,
    options: SubscribeOptions,
    announce: (subscription: Subscription, outcome: SubscribeOutcome) => void,
  ): Promise<Subscription | undefined> {
    this.ensureReady();
    const channel = this.channelFor(channelName);
    const subscription = new Subscription(subscriber, channelName, options.presence === true);
    channel.subscriptions.add(subscription);
    let result: HistoryResult;
    try {
      await channel.brokerSubscribed;
      result = await this.broker.history(channelName, options.since ? { since: options.since } : { limit: 0 });
    } catch (err) {
      this.removeSubscription(channel, subscription);
      throw err instanceof HeraldError ? err : unavailable('broker unavailable');
    }
    if (!subscription.active) return undefined;

    const since = options.since;
    const recovered = since !== undefined && isRecovered(since, result);
    const catchUp = recovered ? result.publications : [];
    let lastOffset = recovered && catchUp.length > 0 ? catchUp[catchUp.length - 1]!.offset : result.position.offset;
    let epoch = result.position.epoch;
    const pending = subscription.pending ?? [];
    subscription.pending = null;
    for (const pub of pending) {
      if (pub.epoch === epoch && pub.offset <= lastOffset) continue;
      catchUp.push(pub);
      lastOffset = pub.offset;
      epoch = pub.epoch;
    }
    if (channel.epoch === undefined) {
      channel.epoch = epoch;
      channel.lastOffset = lastOffset;
    }

    const outcome: SubscribeOutcome = {
      // Where this subscriber's stream starts: every publication delivered after the answer comes after it.
      position: recovered ? since : result.position,
      recovered,
      resetReason: since === undefined || recovered ? undefined : resetReason(since, result),
    };
    announce(subscription, outcome);
    for (const pub of catchUp) subscriber.deliver(new OutboundPublication(pub), subscription);
    this.stats.deliveries += catchUp.length;

    if (subscription.wantsPresence) channel.presenceWatchers.add(subscription);
    if (subscriber.tracksPresence) this.announcePresence('join', channelName, subscriber);
    return subscription;
  }

  unsubscribe(subscription: Subscription): void {
    if (!subscription.active) return;
    const channel = this.channels.get(subscription.channel);
    if (channel) this.removeSubscription(channel, subscription);
    if (subscription.subscriber.tracksPresence && subscription.pending === null) {
      this.announcePresence('leave', subscription.channel, subscription.subscriber);
    }
  }

  // ---- BrokerListener: the live path ----

  onPublication(pub: Publication): void {
    const channel = this.channels.get(pub.channel);
    if (!channel) return;
    if (channel.repairBuffer) {
      channel.repairBuffer.push(pub);
      return;
    }
    if (channel.epoch === pub.epoch) {
      if (pub.offset <= channel.lastOffset) return; // a stale duplicate
      if (pub.offset > channel.lastOffset + 1) {
        this.repairGap(channel, pub);
        return;
      }
    } else if (channel.epoch !== undefined) {
      // The history behind the old epoch is gone: whoever holds an old position must be told.
      this.resetChannel(channel, 'epoch changed', { offset: pub.offset - 1, epoch: pub.epoch });
    }
    this.fanOut(channel, pub);
  }

  onPresence(event: PresenceEvent): void {
    const channel = this.channels.get(event.channel);
    if (!channel) return;
    for (const subscription of channel.presenceWatchers) {
      if (subscription.subscriber.id !== event.info.client) subscription.subscriber.presence?.(event, subscription);
    }
  }

  onStateChange(ready: boolean): void {
    if (!ready) {
      this.brokerWasDown = true;
      return;
    }
    if (!this.brokerWasDown) return;
    this.brokerWasDown = false;
    // Publications may have been missed while cut off: check every channel against history.
    for (const channel of this.channels.values()) {
      if (channel.epoch !== undefined && channel.repairBuffer === null) this.repairGap(channel, undefined);
    }
  }

  private fanOut(channel: HubChannel, pub: Publication): void {
    channel.epoch = pub.epoch;
    channel.lastOffset = pub.offset;
    const outbound = new OutboundPublication(pub);
    let delivered = 0;
    for (const subscription of channel.subscriptions) {
      if (subscription.pending) {
        subscription.pending.push(pub);
      } else {
        subscription.subscriber.deliver(outbound, subscription);
        delivered++;
      }
    }
    this.stats.deliveries += delivered;
  }

  /**
   * The live stream skipped offsets (or the broker reconnected): read the
   * missing run from history and deliver it before anything newer; if history
   * cannot fill it, every local subscriber gets an explicit reset.
   */
  private repairGap(channel: HubChannel, trigger: Publication | undefined): void {
    channel.repairBuffer = trigger ? [trigger] : [];
    const since: Position = { offset: channel.lastOffset, epoch: channel.epoch! };
    this.broker.history(channel.name, { since }).then(
      (result) => {
        const buffered = channel.repairBuffer ?? [];
        channel.repairBuffer = null;
        if (isRecovered(since, result)) {
          for (const pub of result.publications) this.fanOut(channel, pub);
        } else {
          this.resetChannel(channel, resetReason(since, result), result.position);
          channel.epoch = result.position.epoch;
          channel.lastOffset = result.position.offset;
        }
        for (const pub of buffered) this.onPublication(pub);
      },
      (err) => {
        // History unreachable: tell subscribers rather than deliver across a silent gap.
        const buffered = channel.repairBuffer ?? [];
        channel.repairBuffer = null;
        this.onError(err, 'gap repair');
        const top = buffered.length > 0 ? buffered[0]! : undefined;
        this.resetChannel(channel, 'history unavailable', top ? { offset: top.offset - 1, epoch: top.epoch } : since);
        if (top) {
          channel.epoch = top.epoch;
          channel.lastOffset = top.offset - 1;
        }
        for (const pub of buffered) this.onPublication(pub);
      },
    );
  }

  private resetChannel(channel: HubChannel, reason: string, position: Position): void {
    for (const subscription of channel.subscriptions) {
      if (subscription.pending === null) subscription.subscriber.reset(subscription, reason, position);
    }
    this.stats.resets++;
  }

  private channelFor(name: string): HubChannel {
    let channel = this.channels.get(name);
    if (!channel) {
      const subscribed = this.broker.subscribe(name);
      subscribed.catch(() => {}); // awaited by each subscriber; this only prevents an unhandled rejection
      channel = new HubChannel(name, subscribed);
      this.channels.set(name, channel);
    }
    return channel;
  }

  private removeSubscription(channel: HubChannel, subscription: Subscription): void {
    subscription.active = false;
    channel.subscriptions.delete(subscription);
    channel.presenceWatchers.delete(subscription);
    if (channel.subscriptions.size === 0 && this.channels.get(channel.name) === channel) {
      this.channels.delete(channel.name);
      this.broker.unsubscribe(channel.name).catch((err) => this.onError(err, 'broker unsubscribe'));
    }
  }

  private announcePresence(type: 'join' | 'leave', channel: string, subscriber: Subscriber): void {
    const info: PresenceInfo = subscriber.user === undefined ? { client: subscriber.id } : { client: subscriber.id, user: subscriber.user };
    const presence = this.broker.presence;
    const stored = type === 'join' ? presence.add(channel, info) : presence.remove(channel, subscriber.id);
    stored
      .then(() => this.broker.publishPresence({ type, channel, info }))
      .catch((err) => this.onError(err, `presence ${type}`));
  }

  private ensureReady(): void {
    const reason = this.broker.unreadyReason();
    if (reason !== undefined) throw unavailable(`broker unavailable: ${reason}`);
  }
}

function resetReason(since: Position, result: HistoryResult): string {
  if (since.offset < 0) return 'invalid position';
  if (since.epoch !== result.position.epoch) return 'epoch changed';
  if (since.offset > result.position.offset) return 'position ahead of history';
  return 'history expired';
}

