import type { Broker, BrokerListener } from '../broker/broker.js';
import { HeraldError, unavailable } from './errors.js';
import { OutboundPublication } from './outbound.js';
import type { Position } from './position.js';
import type { PresenceEvent, PresenceInfo } from './presence.js';
import { CatchUp, resetReason } from './catch-up.js';
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
  /**
   * The epoch this subscriber's stream is in, and an offset it already has
   * (where it went live, or its last reset). The live path skips publications
   * at or below it: a history reply (command connection) can overtake PUB/SUB
   * messages already published (subscriber connection), so a publication the
   * catch-up delivered may still arrive live afterwards. A publication of
   * another epoch gets a reset first.
   */
  floorEpoch = '';
  floorOffset = 0;
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
  /**
   * Epochs known to be replaced (a later one was read or received after them). Redis never brings an
   * epoch back, so their publications still in flight are stale: delivering them after the new epoch
   * would flip subscribers back and forth.
   */
  readonly retiredEpochs = new Set<string>();
  /** Epoch of the last publication that arrived on the live path (arrival order there is publish order). */
  liveEpoch: string | undefined;
  constructor(
    readonly name: string,
    readonly brokerSubscribed: Promise<void>,
  ) {}
}

export interface HubStats {
  publications: number;
  deliveries: number;
  resets: number;
  /** History re-reads of a channel: a skipped offset on the live path, a new epoch, a broker reconnect. */
  repairs: number;
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
  readonly stats: HubStats = { publications: 0, deliveries: 0, resets: 0, repairs: 0 };
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
    const since = options.since;
    let result: HistoryResult;
    const catchUp = new CatchUp();
    try {
      await channel.brokerSubscribed;
      let epochBeforeRead = channel.epoch;
      result = await this.broker.history(channelName, options.since ? { since: options.since } : { limit: 0 });
      noteRead(channel, epochBeforeRead, result);
      if (!subscription.active) return undefined;
      catchUp.startFrom(since, result);
      // Until this subscriber stands where the channel's live path stands, read again from its own position:
      // the channel's position may come from a newer read (another subscriber's, a repair), and the
      // publications in between may never arrive live again (they are in flight, or were lost).
      for (let round = 0; ; round++) {
        const unsettled = catchUp.merge(subscription.pending!, channel.retiredEpochs, round === MAX_CATCH_UP_ROUNDS);
        subscription.pending = unsettled;
        if (unsettled.length === 0) {
          if (channel.epoch === undefined) break;
          if (channel.epoch === catchUp.epoch ? catchUp.lastOffset >= channel.lastOffset : channel.retiredEpochs.has(channel.epoch)) {
            break; // in step, or ahead (the live path skips what it has), or the channel is the stale one (its repair resets it)
          }
          if (round === MAX_CATCH_UP_ROUNDS) {
            // Still behind a channel that keeps moving by reads: jump to it, and say so.
            if (channel.epoch === catchUp.epoch) catchUp.jumpTo({ offset: channel.lastOffset, epoch: channel.epoch }, 'history expired');
            break;
          }
        }
        const from = { offset: catchUp.lastOffset, epoch: catchUp.epoch };
        epochBeforeRead = channel.epoch;
        const again = await this.broker.history(channelName, { since: from });
        noteRead(channel, epochBeforeRead, again);
        // A live publication that arrived before this read and is not of its epoch is of a replaced one.
        if (unsettled.length > 0 && unsettled[0]!.epoch !== again.position.epoch) retire(channel, unsettled[0]!.epoch);
        if (!subscription.active) return undefined;
        catchUp.continueFrom(from, again);
      }
    } catch (err) {
      this.removeSubscription(channel, subscription);
      throw err instanceof HeraldError ? err : unavailable('broker unavailable');
    }
    subscription.pending = null;
    const { epoch, lastOffset } = catchUp;
    subscription.floorEpoch = epoch;
    subscription.floorOffset = lastOffset;
    if (channel.epoch === undefined) {
      channel.epoch = epoch;
      channel.lastOffset = lastOffset;
    } else if (channel.epoch !== epoch && channel.repairBuffer === null) {
      // This subscriber's reads and the channel disagree on the epoch (history was lost meanwhile): a fresh
      // read settles which one is stale and resets whoever holds it.
      this.repairGap(channel, undefined);
    }

    const recovered = since !== undefined && isRecovered(since, result);
    const outcome: SubscribeOutcome = {
      // Where this subscriber's stream starts: every publication delivered after the answer comes after it.
      position: recovered ? since : result.position,
      recovered,
      resetReason: since === undefined || recovered ? undefined : resetReason(since, result),
    };
    announce(subscription, outcome);
    for (const step of catchUp.steps) {
      if ('reset' in step) {
        subscriber.reset(subscription, step.reset, step.position);
        this.stats.resets++;
      } else {
        subscriber.deliver(new OutboundPublication(step), subscription);
        this.stats.deliveries++;
      }
    }

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
    if (channel.retiredEpochs.has(pub.epoch)) {
      this.offerToPending(channel, pub);
      return;
    }
    // Live arrival order is publish order: an epoch followed by another on the live path is surely replaced.
    const previousLiveEpoch = channel.liveEpoch;
    if (previousLiveEpoch !== undefined && previousLiveEpoch !== pub.epoch) retire(channel, previousLiveEpoch);
    channel.liveEpoch = pub.epoch;
    if (channel.epoch === pub.epoch) {
      if (pub.offset <= channel.lastOffset) {
        // Stale for the channel, whose position may come from a newer history read; a subscribe still reading may need it.
        this.offerToPending(channel, pub);
        return;
      }
      if (pub.offset > channel.lastOffset + 1) {
        this.repairGap(channel, pub);
        return;
      }
    } else if (channel.epoch !== undefined) {
      if (previousLiveEpoch !== channel.epoch) {
        // The channel's epoch came from a history read, which may be newer than this publication (one still
        // in flight from before the history was lost): a fresh read tells which of the two is current.
        this.repairGap(channel, pub);
        return;
      }
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
      } else if (pub.epoch !== subscription.floorEpoch) {
        // Its own read left it in an epoch the channel has moved past.
        this.resetSubscription(subscription, 'epoch changed', { offset: pub.offset - 1, epoch: pub.epoch });
        subscription.subscriber.deliver(outbound, subscription);
        delivered++;
      } else if (pub.offset > subscription.floorOffset) {
        subscription.subscriber.deliver(outbound, subscription);
        delivered++;
      }
    }
    this.stats.deliveries += delivered;
  }

  private offerToPending(channel: HubChannel, pub: Publication): void {
    for (const subscription of channel.subscriptions) subscription.pending?.push(pub);
  }

  /**
   * The live stream skipped offsets (or the broker reconnected): read the
   * missing run from history and deliver it before anything newer; if history
   * cannot fill it, every local subscriber gets an explicit reset.
   */
  private repairGap(channel: HubChannel, trigger: Publication | undefined): void {
    this.stats.repairs++;
    channel.repairBuffer = trigger ? [trigger] : [];
    this.readRepair(channel, trigger, 0);
  }

  private readRepair(channel: HubChannel, trigger: Publication | undefined, failures: number): void {
    const since: Position = { offset: channel.lastOffset, epoch: channel.epoch! };
    this.broker.history(channel.name, { since }).then(
      (result) => {
        const buffered = channel.repairBuffer ?? [];
        channel.repairBuffer = null;
        if (this.channels.get(channel.name) !== channel) return; // everyone left meanwhile
        if (isRecovered(since, result)) {
          for (const pub of result.publications) this.fanOut(channel, pub);
          // Subscribers whose own read left them in another epoch than the channel's learn it now.
          for (const subscription of channel.subscriptions) {
            if (subscription.pending === null && subscription.floorEpoch !== result.position.epoch) {
              this.resetSubscription(subscription, 'epoch changed', result.position);
            }
          }
        } else {
          this.resetChannel(channel, resetReason(since, result), result.position);
          channel.epoch = result.position.epoch;
          channel.lastOffset = result.position.offset;
        }
        // The channel's epoch and the trigger's arrived before the read: whichever is not the current one is gone,
        // and publications of it still in flight are stale.
        if (result.position.epoch !== since.epoch) retire(channel, since.epoch);
        if (trigger && result.position.epoch !== trigger.epoch) retire(channel, trigger.epoch);
        for (const pub of buffered) this.onPublication(pub);
      },
      (err) => {
        if (this.channels.get(channel.name) !== channel) {
          channel.repairBuffer = null;
          return;
        }
        this.onError(err, 'gap repair');
        if (this.broker.unreadyReason() !== undefined) {
          // The broker went away: its re-check once it is back repairs this channel from where it stands (what
          // was buffered meanwhile comes back from history, or a reset if the history was lost with the broker).
          channel.repairBuffer = null;
          return;
        }
        if (failures < MAX_REPAIR_RETRIES) {
          setTimeout(() => this.readRepair(channel, trigger, failures + 1), REPAIR_RETRY_MS * (failures + 1)).unref();
          return;
        }
        // History unreachable: tell subscribers rather than deliver across a silent gap.
        const buffered = channel.repairBuffer ?? [];
        channel.repairBuffer = null;
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
      if (subscription.pending !== null) continue;
      // A subscriber that went live at or past this position (its own history read was newer) missed nothing.
      if (position.epoch === subscription.floorEpoch && position.offset <= subscription.floorOffset) continue;
      this.resetSubscription(subscription, reason, position);
    }
  }

  private resetSubscription(subscription: Subscription, reason: string, position: Position): void {
    subscription.subscriber.reset(subscription, reason, position);
    subscription.floorEpoch = position.epoch;
    subscription.floorOffset = position.offset;
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
      .catch((err) => {
        // While the broker is down every join and leave fails the same way, and its outage is logged
        // once already; Redis presence entries expire on their own and nodes re-add theirs when it is back.
        if (this.broker.unreadyReason() === undefined) this.onError(err, `presence ${type}`);
      });
  }

  private ensureReady(): void {
    const reason = this.broker.unreadyReason();
    if (reason !== undefined) throw unavailable(`broker unavailable: ${reason}`);
  }
}

/** A history read answers with the broker's current state: any other epoch the channel held before the read is gone. */
function noteRead(channel: HubChannel, epochBeforeRead: string | undefined, result: HistoryResult): void {
  if (epochBeforeRead !== undefined && epochBeforeRead !== result.position.epoch) retire(channel, epochBeforeRead);
}

/** Remembers that `epoch` was replaced; a few are enough (each change replaces the one before). */
function retire(channel: HubChannel, epoch: string): void {
  channel.retiredEpochs.add(epoch);
  if (channel.retiredEpochs.size > 8) channel.retiredEpochs.delete(channel.retiredEpochs.values().next().value!);
}

/** Reads of a subscribe that must agree with the channel's live path before it goes live. */
const MAX_CATCH_UP_ROUNDS = 5;
/** A failed gap repair is retried (after 100, 200, 300 ms) while the broker stays up, before subscribers get a reset. */
const MAX_REPAIR_RETRIES = 3;
const REPAIR_RETRY_MS = 100;
