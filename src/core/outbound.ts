import { formatPosition } from './position.js';
import type { Publication } from './publication.js';
import { encodeHttpChunk, encodeTextFrame } from '../protocol/frame.js';

/**
 * A publication prepared for fan-out. Each wire form (room-mode frame,
 * herald.v1 frame, SSE event) is built at most once, the first time a
 * subscriber of that kind asks, and the same bytes are written to everyone.
 */
export class OutboundPublication {
  private roomFrameBytes: Buffer | undefined;
  private protocolFrameBytes: Buffer | undefined;
  private sseEventBytes: Buffer | undefined;
  private sseEventChunkBytes: Buffer | undefined;
  private sseBodyBytes: Buffer | undefined;
  private positionText: string | undefined;

  constructor(readonly pub: Publication) {}

  get position(): string {
    return (this.positionText ??= formatPosition(this.pub));
  }

  /** Room mode: the data JSON exactly as it was published. */
  get roomFrame(): Buffer {
    return (this.roomFrameBytes ??= encodeTextFrame(Buffer.from(this.pub.data)));
  }

  /** herald.v1: {"type":"message","channel","event"?,"data","position"}. */
  get protocolFrame(): Buffer {
    return (this.protocolFrameBytes ??= encodeTextFrame(Buffer.from(encodeMessagePush(this.pub, this.position))));
  }

  /** SSE on a single-channel stream: id, event and data in one chunk. */
  get sseEvent(): Buffer {
    return (this.sseEventBytes ??= Buffer.from(`id: ${this.position}\n${this.sseBodyText()}`));
  }

  /** The same, framed as an HTTP/1.1 chunk, for streams that write to their socket directly. */
  get sseEventChunk(): Buffer {
    return (this.sseEventChunkBytes ??= encodeHttpChunk(this.sseEvent));
  }

  /** SSE on a multiplexed stream: event and data only; the stream writes its own id line. */
  get sseBody(): Buffer {
    return (this.sseBodyBytes ??= Buffer.from(this.sseBodyText()));
  }

  private sseBodyText(): string {
    return `event: ${this.pub.event ?? 'message'}\ndata: ${singleLineJson(this.pub.data)}\n\n`;
  }
}

export function encodeMessagePush(pub: Publication, position: string): string {
  const event = pub.event === undefined ? '' : `,"event":${JSON.stringify(pub.event)}`;
  return `{"type":"message","channel":${JSON.stringify(pub.channel)}${event},"data":${pub.data},"position":"${position}"}`;
}

/** A publication as listed by history (HTTP and herald.v1). */
export function encodeHistoryEntry(pub: Publication): string {
  const event = pub.event === undefined ? '' : `,"event":${JSON.stringify(pub.event)}`;
  return `{"channel":${JSON.stringify(pub.channel)}${event},"data":${pub.data},"position":"${formatPosition(pub)}"}`;
}

/**
 * SSE data must be one line (SPEC §4): JSON sent pretty-printed by a room
 * client may hold raw newlines between tokens, which would start new fields.
 * Newlines inside JSON strings are always escaped, so re-serializing is safe.
 */
export function singleLineJson(json: string): string {
  return json.includes('\n') || json.includes('\r') ? JSON.stringify(JSON.parse(json)) : json;
}
