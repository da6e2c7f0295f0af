import type { KV } from 'nats';
import type { PresenceInfo, PresenceStore } from '../core/presence.js';
import { parsePresenceInfo } from './envelope.js';
import type { NatsSubjects } from './nats-subjects.js';

/**
 * Presence in a JetStream KV bucket whose entries expire after the bucket's
 * TTL; every node re-puts its own clients every `ttl / 3`, so a crashed
 * node's clients disappear within the TTL, and a bucket lost with the server's
 * storage is rebuilt by the next refresh.
 */
export class NatsPresenceStore implements PresenceStore {
  private readonly localByChannel = new Map<string, Map<string, string>>();

  constructor(
    private readonly bucket: () => KV | undefined,
    private readonly subjects: NatsSubjects,
    readonly ttlMs: number,
    private readonly timeoutMs: number,
  ) {}

  async add(channel: string, info: PresenceInfo): Promise<void> {
    const json = JSON.stringify(info);
    let clients = this.localByChannel.get(channel);
    if (!clients) this.localByChannel.set(channel, (clients = new Map()));
    clients.set(info.client, json);
    await this.requireBucket().put(this.subjects.presenceKey(channel, info.client), json);
  }

  async remove(channel: string, client: string): Promise<void> {
    const clients = this.localByChannel.get(channel);
    if (clients) {
      clients.delete(client);
      if (clients.size === 0) this.localByChannel.delete(channel);
    }
    await this.requireBucket().delete(this.subjects.presenceKey(channel, client));
  }

  async list(channel: string): Promise<PresenceInfo[]> {
    const bucket = this.requireBucket();
    const clients: PresenceInfo[] = [];
    // A watcher replays the last value of every matching key, then says it is initialized.
    let initialized = false;
    let watcher: { stop(): void } | undefined;
    const iterator = await bucket.watch({
      key: this.subjects.presenceKeys(channel),
      initializedFn: () => {
        initialized = true;
        watcher?.stop();
      },
    });
    watcher = iterator;
    if (initialized) iterator.stop();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      iterator.stop();
    }, this.timeoutMs);
    try {
      for await (const entry of iterator) {
        if (entry.operation !== 'PUT') continue;
        const info = parsePresenceInfo(entry.string());
        if (info) clients.push(info);
      }
    } finally {
      clearTimeout(timer);
    }
    if (timedOut) throw new Error('presence list timed out');
    return clients;
  }

  async refresh(): Promise<void> {
    const bucket = this.bucket();
    if (!bucket) return;
    const puts: Promise<unknown>[] = [];
    for (const [channel, clients] of this.localByChannel) {
      for (const [client, json] of clients) puts.push(bucket.put(this.subjects.presenceKey(channel, client), json));
    }
    await Promise.all(puts);
  }

  private requireBucket(): KV {
    const bucket = this.bucket();
    if (!bucket) throw new Error('presence bucket not ready');
    return bucket;
  }
}
