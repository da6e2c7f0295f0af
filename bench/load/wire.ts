/**
 * Just enough of the client side of RFC 6455 and HTTP/1.1 for a load
 * generator that must cost far less than the server it measures: no
 * per-message allocation beyond what a socket read already allocates, a
 * zero mask key (legal: the key is sent, XOR with zero leaves the payload
 * as is), no validation of what the server sends beyond framing.
 */

const OPCODE_TEXT = 0x1;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;
const OPCODE_PONG = 0xa;

/** A fixed key: the server only has to echo its hash, and it is the same for every client. */
const WEBSOCKET_KEY = 'aGVyYWxkLWJlbmNoLWtleQ==';

export function upgradeRequest(host: string, path: string, subprotocol: string | undefined): string {
  const protocol = subprotocol === undefined ? '' : `Sec-WebSocket-Protocol: ${subprotocol}\r\n`;
  return (
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${WEBSOCKET_KEY}\r\nSec-WebSocket-Version: 13\r\n${protocol}\r\n`
  );
}

/** A masked client frame (mask key 0000) carrying `payload`. */
export function clientFrame(payload: Buffer, opcode = OPCODE_TEXT): Buffer {
  const length = payload.length;
  const headerLength = (length < 126 ? 2 : length < 65536 ? 4 : 10) + 4;
  const frame = Buffer.allocUnsafe(headerLength + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else if (length < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(0, 2);
    frame.writeUInt32BE(length, 6);
  }
  frame.writeUInt32BE(0, headerLength - 4);
  payload.copy(frame, headerLength);
  return frame;
}

export const PONG_FRAME = clientFrame(Buffer.alloc(0), OPCODE_PONG);
export const CLOSE_FRAME = clientFrame(Buffer.from([0x03, 0xe8]), OPCODE_CLOSE);

export interface FrameSink {
  /** A text (or continuation/binary) payload: bytes [start, end) of `buf`. */
  onPayload(buf: Buffer, start: number, end: number): void;
  onPing(): void;
  onClose(): void;
}

/**
 * Splits a stream of server frames (never masked) into payloads. Bytes of
 * an incomplete frame are kept until the rest arrives.
 */
export class FrameReader {
  private carry: Buffer | null = null;

  constructor(private readonly sink: FrameSink) {}

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.carry !== null) {
      buf = Buffer.concat([this.carry, chunk]);
      this.carry = null;
    }
    let offset = 0;
    const total = buf.length;
    while (total - offset >= 2) {
      const opcode = buf[offset]! & 0x0f;
      let length = buf[offset + 1]! & 0x7f;
      let header = 2;
      if (length === 126) {
        if (total - offset < 4) break;
        length = buf.readUInt16BE(offset + 2);
        header = 4;
      } else if (length === 127) {
        if (total - offset < 10) break;
        length = buf.readUInt32BE(offset + 6);
        header = 10;
      }
      const end = offset + header + length;
      if (end > total) break;
      if (opcode === OPCODE_PING) this.sink.onPing();
      else if (opcode === OPCODE_CLOSE) this.sink.onClose();
      else if (opcode !== OPCODE_PONG) this.sink.onPayload(buf, offset + header, end);
      offset = end;
    }
    // Copied: the chunk may be the generator's shared read buffer, reused by the next read.
    if (offset < total) this.carry = Buffer.from(buf.subarray(offset));
  }
}

/** Where an HTTP response head ends (after CRLFCRLF), or -1. */
export function headEnd(buf: Buffer): number {
  const at = buf.indexOf('\r\n\r\n');
  return at < 0 ? -1 : at + 4;
}

/**
 * De-chunks an HTTP/1.1 chunked body and hands each complete chunk to the
 * sink. Herald and the SSE peers write each event as one chunk, so a chunk
 * holds whole events.
 */
export class ChunkedReader {
  private carry: Buffer | null = null;

  constructor(private readonly onChunk: (buf: Buffer, start: number, end: number) => void) {}

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.carry !== null) {
      buf = Buffer.concat([this.carry, chunk]);
      this.carry = null;
    }
    let offset = 0;
    const total = buf.length;
    while (offset < total) {
      const lineEnd = buf.indexOf(CRLF, offset);
      if (lineEnd < 0) break;
      const size = parseInt(buf.toString('latin1', offset, lineEnd), 16);
      if (!Number.isFinite(size)) throw new Error('bad chunk size');
      const start = lineEnd + 2;
      const end = start + size;
      if (end + 2 > total) break;
      if (size > 0) this.onChunk(buf, start, end);
      offset = end + 2;
    }
    // Copied: the chunk may be the generator's shared read buffer, reused by the next read.
    if (offset < total) this.carry = Buffer.from(buf.subarray(offset));
  }
}

const CRLF = Buffer.from('\r\n');
