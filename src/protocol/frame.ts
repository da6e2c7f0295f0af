/**
 * Builds an unmasked, unfragmented WebSocket text frame (RFC 6455 §5.2) as
 * one Buffer, so a publication is framed once and the same bytes are written
 * to every subscriber's socket. This is what ws' Sender.frame does, minus the
 * masking and option handling a server never needs on this path.
 */
export function encodeTextFrame(payload: Buffer): Buffer {
  const length = payload.length;
  const headerLength = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(headerLength + length);
  frame[0] = 0x81; // FIN + text opcode
  if (length < 126) {
    frame[1] = length;
  } else if (length < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    frame.writeUInt32BE(length >>> 0, 6);
  }
  payload.copy(frame, headerLength);
  return frame;
}

const CRLF = 0x0d0a;

/**
 * One HTTP/1.1 chunk (RFC 9112 §7.1): hex size, CRLF, data, CRLF. An SSE
 * event framed once can be written as it is to every chunked stream, in
 * one socket write instead of the four that res.write makes per event.
 */
export function encodeHttpChunk(payload: Buffer): Buffer {
  const size = payload.length.toString(16);
  const chunk = Buffer.allocUnsafe(size.length + 4 + payload.length);
  chunk.write(size, 0, 'latin1');
  chunk.writeUInt16BE(CRLF, size.length);
  payload.copy(chunk, size.length + 2);
  chunk.writeUInt16BE(CRLF, chunk.length - 2);
  return chunk;
}
