/**
 * NATS names for one Herald cluster. A channel becomes one subject token:
 * characters outside [A-Za-z0-9_-] (including `.`, the token separator, and
 * `=`, the escape) are written `=XX` in hex, so every channel name maps to a
 * distinct, valid subject token and KV key part.
 */
export class NatsSubjects {
  /** JetStream stream holding the history of every channel. */
  readonly stream: string;
  /** KV bucket holding presence entries. */
  readonly presenceBucket: string;

  constructor(readonly prefix: string) {
    this.stream = `${prefix.toUpperCase()}_HISTORY`;
    this.presenceBucket = `${prefix}_presence`;
  }

  /** Where publications are stored (captured by the stream). */
  history(channel: string): string {
    return `${this.prefix}.h.${channelToken(channel)}`;
  }

  get historyWildcard(): string {
    return `${this.prefix}.h.>`;
  }

  /** Where the stream republishes each stored publication, and where presence events go. */
  live(channel: string): string {
    return `${this.prefix}.r.${channelToken(channel)}`;
  }

  get liveWildcard(): string {
    return `${this.prefix}.r.>`;
  }

  probe(nodeId: string): string {
    return `${this.prefix}.probe.${nodeId}`;
  }

  presenceKey(channel: string, client: string): string {
    return `${channelToken(channel)}.${channelToken(client)}`;
  }

  presenceKeys(channel: string): string {
    return `${channelToken(channel)}.*`;
  }
}

export function channelToken(channel: string): string {
  return channel.replace(/[^A-Za-z0-9_-]/g, (c) => '=' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'));
}
