/** Who is in a channel (SPEC §3b presence, GET /api/presence/:channel). */
export interface PresenceInfo {
  readonly client: string;
  readonly user?: string;
}

export interface PresenceEvent {
  readonly type: 'join' | 'leave';
  readonly channel: string;
  readonly info: PresenceInfo;
}

/**
 * Storage for presence, separate from fan-out so that a cluster can keep it
 * in Redis (with expiry for crashed nodes) while a single node keeps it here.
 */
export interface PresenceStore {
  add(channel: string, info: PresenceInfo): Promise<void>;
  remove(channel: string, client: string): Promise<void>;
  list(channel: string): Promise<PresenceInfo[]>;
}

export class MemoryPresenceStore implements PresenceStore {
  private readonly clientsByChannel = new Map<string, Map<string, PresenceInfo>>();

  async add(channel: string, info: PresenceInfo): Promise<void> {
    let clients = this.clientsByChannel.get(channel);
    if (!clients) this.clientsByChannel.set(channel, (clients = new Map()));
    clients.set(info.client, info);
  }

  async remove(channel: string, client: string): Promise<void> {
    const clients = this.clientsByChannel.get(channel);
    if (!clients) return;
    clients.delete(client);
    if (clients.size === 0) this.clientsByChannel.delete(channel);
  }

  async list(channel: string): Promise<PresenceInfo[]> {
    return [...(this.clientsByChannel.get(channel)?.values() ?? [])];
  }

  get channelCount(): number {
    return this.clientsByChannel.size;
  }
}
