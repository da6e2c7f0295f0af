import type { Redis } from 'ioredis';
import type { PresenceInfo, PresenceStore } from '../core/presence.js';
import { parsePresenceInfo } from './envelope.js';
import type { RedisKeys } from './redis-keys.js';

/** The commands RedisBroker defines on its connection (ioredis defineCommand). */
export interface PresenceCommands {
  heraldPresenceAdd(hash: string, expiry: string, ttlMs: number, ...clientInfoPairs: string[]): Promise<unknown>;
  heraldPresenceRemove(hash: string, expiry: string, client: string): Promise<unknown>;
  heraldPresenceList(hash: string, expiry: string): Promise<string[]>;
}

/**
 * Presence shared by every node through Redis (SPEC §3b, issue 4 §3). Each
 * node remembers its own clients and re-adds them every `ttl / 3`, so:
 * a crashed node's clients expire within `ttl`; and after Redis lost its data
 * (restart without persistence) presence is rebuilt by the next refresh.
 */
export class RedisPresenceStore implements PresenceStore {
  /** This node's clients per channel, as the JSON stored in Redis. */
  private readonly localByChannel = new Map<string, Map<string, string>>();

  constructor(
    private readonly redis: () => Redis & PresenceCommands,
    private readonly keys: RedisKeys,
    readonly ttlMs: number,
  ) {}

  async add(channel: string, info: PresenceInfo): Promise<void> {
    const json = JSON.stringify(info);
    let clients = this.localByChannel.get(channel);
    if (!clients) this.localByChannel.set(channel, (clients = new Map()));
    clients.set(info.client, json);
    await this.redis().heraldPresenceAdd(this.keys.presence(channel), this.keys.presenceExpiry(channel), this.ttlMs, info.client, json);
  }

  async remove(channel: string, client: string): Promise<void> {
    const clients = this.localByChannel.get(channel);
    if (clients) {
      clients.delete(client);
      if (clients.size === 0) this.localByChannel.delete(channel);
    }
    await this.redis().heraldPresenceRemove(this.keys.presence(channel), this.keys.presenceExpiry(channel), client);
  }

  async list(channel: string): Promise<PresenceInfo[]> {
    const flat = await this.redis().heraldPresenceList(this.keys.presence(channel), this.keys.presenceExpiry(channel));
    const clients: PresenceInfo[] = [];
    for (let i = 1; i < flat.length; i += 2) {
      const info = parsePresenceInfo(flat[i]!);
      if (info) clients.push(info);
    }
    return clients;
  }

  /** Re-adds every local client (one script call per channel, pipelined). */
  async refresh(): Promise<void> {
    if (this.localByChannel.size === 0) return;
    const pipeline = this.redis().pipeline() as unknown as PresenceCommands & { exec(): Promise<unknown> };
    for (const [channel, clients] of this.localByChannel) {
      const pairs: string[] = [];
      for (const [client, json] of clients) pairs.push(client, json);
      void pipeline.heraldPresenceAdd(this.keys.presence(channel), this.keys.presenceExpiry(channel), this.ttlMs, ...pairs);
    }
    await pipeline.exec();
  }

  /** Channels with local presence (for leak tests). */
  get localChannelCount(): number {
    return this.localByChannel.size;
  }
}
