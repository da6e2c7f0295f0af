import type { Logger } from 'pino';
import type { Authenticator } from './auth/principal.js';
import type { OriginPolicy } from './auth/origin.js';
import type { Settings } from './config/schema.js';
import type { Hub } from './core/hub.js';
import type { HeraldMetrics } from './metrics.js';
import type { TokenBucket } from './core/token-bucket.js';
import type { ConnectionCounter } from './transport/connection-counter.js';
import type { DeadlineSweep } from './transport/deadlines.js';
import type { HeartbeatSweep } from './transport/heartbeat.js';

/** Something the node must close on shutdown. */
export interface Drainable {
  /** Ask the client to go away politely (WebSocket 1001, SSE retry hint + end). */
  drain(): void;
  /** Cut it off now. */
  terminate(): void;
}

/** What every transport of one node shares. Built once in server.ts. */
export interface NodeContext {
  readonly settings: Settings;
  readonly hub: Hub;
  readonly log: Logger;
  readonly metrics: HeraldMetrics;
  readonly heartbeat: HeartbeatSweep;
  /** First-message auth deadlines and token expiry. */
  readonly deadlines: DeadlineSweep;
  readonly connectionsPerIp: ConnectionCounter;
  /** By the token's `sub`; anonymous connections are not counted. */
  readonly connectionsPerUser: ConnectionCounter;
  /** Rate of room messages / protocol commands per connection. */
  readonly messageBucket: TokenBucket;
  readonly auth: Authenticator;
  readonly origins: OriginPolicy;
  readonly websockets: Set<Drainable>;
  readonly streams: Set<Drainable>;
  readonly draining: () => boolean;
  nextClientId(): string;
}
