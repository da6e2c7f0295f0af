import { DeliverPolicy, type JetStreamClient, type JetStreamManager, type KV } from 'nats';
import { unavailable } from '../core/errors.js';
import type { PresenceInfo, PresenceStore } from '../core/presence.js';
import { parsePresenceInfo } from './envelope.js';
import { readStored } from './nats-read.js';
import type { NatsSubjects } from './nats-subjects.js';

export interface PresenceHandles {
  readonly kv: KV;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
}

const textDecoder = new TextDecoder();

/**
 * Presence in a JetStream KV bucket whose entries expire after the bucket's
 * TTL; every node re-puts its own clients every `ttl / 3`, so a crashed
 * node's clients disappear within the TTL, and a bucket lost with the server's
 * storage is rebuilt by the next refresh. Listing reads the last entry per key
 * of the channel straight from the bucket's stream.
 */
export class NatsPresenceStore implements PresenceStore {
  private readonly localByChannel = new Map<string, Map<string, string>>();

  constructor(
    private readonly handles: () => PresenceHandles | undefined,
    private readonly subjects: NatsSubjects,
    readonly ttlMs: number,
    private readonly timeoutMs: number,
  ) {}

  async add(channel: string, info: PresenceInfo): Promise<void> {
    const json = JSON.stringify(info);
    let clients = this.localByChannel.get(channel);
    if (!clients) this.localByChannel.set(channel, (clients = new Map()));
    clients.set(info.client, json);
    await this.requireHandles().kv.put(this.subjects.presenceKey(channel, info.client), json);
  }

  async remove(channel: string, client: string): Promise<void> {
    const clients = this.localByChannel.get(channel);
    if (clients) {
      clients.delete(client);
      if (clients.size === 0) this.localByChannel.delete(channel);
    }
    await this.requireHandles().kv.delete(this.subjects.presenceKey(channel, client));
  }

  async list(channel: string): Promise<PresenceInfo[]> {
    const { js, jsm } = this.requireHandles();
    const byKey = new Map<string, PresenceInfo | undefined>();
    const bucket = this.subjects.presenceBucket;
    // The bucket keeps one message per key, so "all" is the current entries. (nats-server 2.9's
    // last-per-subject delivery repeated one key instead of the others under concurrent puts.)
    const config = { filter_subject: `$KV.${bucket}.${this.subjects.presenceKeys(channel)}`, deliver_policy: DeliverPolicy.All };
    try {
      await readStored(js, jsm, `KV_${bucket}`, config, this.timeoutMs, (msg) => {
        const operation = msg.headers?.get('KV-Operation');
        const removed = operation === 'DEL' || operation === 'PURGE';
        byKey.set(msg.subject, removed ? undefined : parsePresenceInfo(textDecoder.decode(msg.data)));
        return true;
      });
    } catch {
      throw unavailable('broker unavailable: nats presence read failed');
    }
    return [...byKey.values()].filter((info): info is PresenceInfo => info !== undefined);
  }

  async refresh(): Promise<void> {
    const bucket = this.handles()?.kv;
    if (!bucket) return;
    const puts: Promise<unknown>[] = [];
    for (const [channel, clients] of this.localByChannel) {
      for (const [client, json] of clients) puts.push(bucket.put(this.subjects.presenceKey(channel, client), json));
    }
    await Promise.all(puts);
  }

  private requireHandles(): PresenceHandles {
    const handles = this.handles();
    if (!handles) throw unavailable('broker unavailable: nats presence not ready');
    return handles;
  }
}
