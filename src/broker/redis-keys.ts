/**
 * Redis key and PUB/SUB channel names for one Herald cluster. Every name of
 * a channel carries the channel in a `{…}` hash tag (channel names cannot
 * contain braces), so all of a channel's keys map to one Redis Cluster slot.
 */
export class RedisKeys {
  private readonly pubsubPrefix: string;

  constructor(readonly prefix: string) {
    this.pubsubPrefix = `${prefix}:{`;
  }

  /** Hash with the channel's epoch (`e`) and top offset (`s`). */
  meta(channel: string): string {
    return `${this.prefix}:{${channel}}:meta`;
  }

  /** Stream of the last `history-size` publications; entry ids are the offsets. */
  stream(channel: string): string {
    return `${this.prefix}:{${channel}}:stream`;
  }

  presence(channel: string): string {
    return `${this.prefix}:{${channel}}:presence`;
  }

  presenceExpiry(channel: string): string {
    return `${this.prefix}:{${channel}}:presence-expiry`;
  }

  /** PUB/SUB channel carrying the channel's publications and presence events. */
  pubsub(channel: string): string {
    return `${this.pubsubPrefix}${channel}}`;
  }

  /** The Herald channel of a PUB/SUB channel name, or undefined if it is not one of ours. */
  channelOfPubsub(name: string): string | undefined {
    if (!name.startsWith(this.pubsubPrefix) || !name.endsWith('}')) return undefined;
    return name.slice(this.pubsubPrefix.length, -1);
  }

  /** Where a node sends its liveness probes to itself. */
  probe(nodeId: string): string {
    return `${this.prefix}:probe:${nodeId}`;
  }
}
