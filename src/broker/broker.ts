import type { Position } from '../core/position.js';
import type { PresenceEvent, PresenceStore } from '../core/presence.js';
import type { HistoryQuery, HistoryResult, Publication, PublishRequest } from '../core/publication.js';

/** What the hub hears from a broker. */
export interface BrokerListener {
  /** A publication on a channel this node subscribed to, in offset order per channel. */
  onPublication(pub: Publication): void;
  onPresence(event: PresenceEvent): void;
  /**
   * The broker lost or regained its connection. After a reconnect the hub
   * re-checks every channel's position, because publications may have been
   * missed while the node was cut off.
   */
  onStateChange(ready: boolean, reason?: string): void;
}

export interface HistoryLimits {
  /** Publications kept per channel (0 = none kept, positions still assigned). */
  readonly size: number;
  /** Seconds a channel's history lives after its last publication. */
  readonly ttlSeconds: number;
}

/** Counters a broker keeps as plain numbers; /metrics reads them at scrape time. */
export interface BrokerStats {
  /** Times the subscriber link came back and this node's channels were subscribed again. */
  readonly reconnects: number;
  /** Liveness probes that never came back: a subscription open but starved, restarted. */
  readonly probeTimeouts: number;
}

/**
 * The one seam between the hub and the outside world (SPEC §7). Memory,
 * Redis and NATS implement it; the hub never knows which one it runs on.
 */
export interface Broker {
  readonly kind: string;
  readonly presence: PresenceStore;
  readonly stats: BrokerStats;
  start(listener: BrokerListener): Promise<void>;
  /** Start receiving publications of `channel` on this node (called on the first local subscriber). */
  subscribe(channel: string): Promise<void>;
  /** Stop receiving them (called when the last local subscriber leaves). */
  unsubscribe(channel: string): Promise<void>;
  /** Assign the next position, store in history, deliver to every subscribed node. Rejects when it cannot. */
  publish(request: PublishRequest): Promise<Position>;
  publishPresence(event: PresenceEvent): Promise<void>;
  history(channel: string, query: HistoryQuery): Promise<HistoryResult>;
  /** `undefined` when ready, else why not. */
  unreadyReason(): string | undefined;
  close(): Promise<void>;
}
