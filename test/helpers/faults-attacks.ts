import { connect, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Shared pieces of the attack tests (TESTPLAN T01–T11): raw HTTP exchanges
 * with timings, a raw WebSocket peer that builds any frame (masked or not,
 * RSV bits, reserved opcodes, lying lengths) and parses the server's frames,
 * latency percentiles, open file descriptors, a forced GC, a crash watch for
 * this process and `herald serve` as a child process.
 */

export const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

export const upgradeRequest = (path: string, extra = '', method = 'GET') =>
  `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${WS_KEY}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

export interface RawAnswer {
  /** Status of the answer, 0 when the socket closed without one. */
  readonly status: number;
  /** The status line and headers. */
  readonly head: string;
  /** Milliseconds from the write to the end of the answer's headers (or the close). */
  readonly ms: number;
}

/** Writes `bytes` on a fresh connection and resolves once the answer's headers arrived (or the socket closed); then destroys it. */
export function rawExchange(port: number, bytes: string | Buffer, timeoutMs = 10_000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    let started = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      const head = answer.split('\r\n\r\n')[0] ?? '';
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, ms: performance.now() - started });
      socket.destroy();
    };
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (answer.includes('\r\n\r\n')) done();
    });
    socket.on('close', done);
    socket.on('error', () => {});
    socket.once('connect', () => {
      started = performance.now();
      socket.write(bytes);
    });
  });
}

export function openRaw(port: number, options: { allowHalfOpen?: boolean } = {}): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // noDelay: frames written one by one must not wait for Nagle and a delayed ACK (40 ms each).
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: options.allowHalfOpen ?? false, noDelay: true }, () => resolve(socket));
    socket.once('error', reject);
  });
}

// ---- WebSocket frames ----

export interface FrameSpec {
  readonly opcode: number;
  readonly payload?: Buffer;
  readonly fin?: boolean;
  /** RSV1..3 as the three bits 0b100, 0b010, 0b001. */
  readonly rsv?: number;
  readonly masked?: boolean;
  /** A length to announce instead of the payload's (a lie, or 2^63). */
  readonly announce?: bigint;
}

/** One client frame (RFC 6455 §5.2), masked unless told otherwise. */
export function encodeFrame(spec: FrameSpec): Buffer {
  const payload = spec.payload ?? Buffer.alloc(0);
  const masked = spec.masked ?? true;
  const length = spec.announce ?? BigInt(payload.length);
  const first = ((spec.fin ?? true) ? 0x80 : 0) | ((spec.rsv ?? 0) << 4) | spec.opcode;
  let head: Buffer;
  if (length < 126n) head = Buffer.from([first, (masked ? 0x80 : 0) | Number(length)]);
  else if (length < 65536n) {
    head = Buffer.from([first, (masked ? 0x80 : 0) | 126, 0, 0]);
    head.writeUInt16BE(Number(length), 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = first;
    head[1] = (masked ? 0x80 : 0) | 127;
    head.writeBigUInt64BE(length, 2);
  }
  if (!masked) return Buffer.concat([head, payload]);
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const body = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) body[i] = payload[i]! ^ mask[i % 4]!;
  return Buffer.concat([head, mask, body]);
}

export const closePayload = (code: number, reason = '') => {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  return payload;
};

export interface ServerFrame {
  readonly opcode: number;
  readonly payload: Buffer;
}

/**
 * A WebSocket peer over a raw socket: the upgrade is done by hand, frames go
 * out exactly as built, and the server's (unmasked) frames are parsed.
 */
export class RawWebSocket {
  readonly frames: ServerFrame[] = [];
  /** The code of the server's close frame (1005 for an empty one); undefined until one arrives. */
  closeCode: number | undefined;
  /** performance.now() when the close frame arrived / the TCP connection ended. */
  closeFrameAt: number | undefined;
  closedAt: number | undefined;
  readonly closed: Promise<void>;
  private buffer: Buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  /** The 101 answer's status line and headers. */
  upgradeHead = '';
  /** Like a real client, answer the server's close frame with one (off: a peer that ignores it). */
  answerClose = true;
  private closeFrameSent = false;

  private constructor(
    readonly socket: Socket,
    readonly protocol: string | undefined,
  ) {
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.closedAt = performance.now();
        this.wake();
        resolve();
      }),
    );
  }

  /** Upgrades `path` ('/ws?room=x' or '/ws' with `protocol`); rejects unless the answer is 101. */
  static async open(port: number, path: string, options: { protocol?: string; allowHalfOpen?: boolean; extraHeaders?: string; answerClose?: boolean } = {}): Promise<RawWebSocket> {
    const socket = await openRaw(port, { allowHalfOpen: options.allowHalfOpen });
    socket.removeAllListeners('error');
    socket.on('error', () => {});
    const peer = new RawWebSocket(socket, options.protocol);
    peer.answerClose = options.answerClose ?? true;
    const extra = (options.protocol ? `Sec-WebSocket-Protocol: ${options.protocol}\r\n` : '') + (options.extraHeaders ?? '');
    let head = Buffer.alloc(0);
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        socket.off('close', onClose);
        const status = head.subarray(0, end).toString('latin1');
        peer.upgradeHead = status;
        if (!status.startsWith('HTTP/1.1 101')) return reject(new Error(`upgrade refused: ${status.split('\r\n')[0]}`));
        socket.on('data', (more: Buffer) => peer.feed(more));
        peer.feed(head.subarray(end + 4));
        resolve();
      };
      const onClose = () => reject(new Error('closed during the upgrade'));
      socket.on('data', onData);
      socket.once('close', onClose);
      socket.write(upgradeRequest(path, extra));
    });
    return peer;
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.write(bytes);
  }

  /** Sends a close frame (only the first one goes out, as RFC 6455 §5.5.1 wants). */
  sendClose(code?: number, reason = ''): void {
    if (this.closeFrameSent) return;
    this.closeFrameSent = true;
    this.send({ opcode: 0x8, payload: code === undefined ? Buffer.alloc(0) : closePayload(code, reason) });
  }

  send(spec: FrameSpec): void {
    this.write(encodeFrame(spec));
  }

  sendText(text: string): void {
    this.send({ opcode: 0x1, payload: Buffer.from(text) });
  }

  get texts(): string[] {
    return this.frames.filter((f) => f.opcode === 0x1).map((f) => f.payload.toString('utf8'));
  }

  /** Resolves once `condition` holds (re-checked on every frame and on close). */
  async waitUntil(condition: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what} not met within ${timeoutMs} ms (close ${this.closeCode}, ${this.frames.length} frames)`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  private feed(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      if (this.buffer.length < 2) break;
      const opcode = this.buffer[0]! & 0x0f;
      let length = this.buffer[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (this.buffer.length < 4) break;
        length = this.buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (this.buffer.length < 10) break;
        length = Number(this.buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (this.buffer.length < offset + length) break;
      const payload = this.buffer.subarray(offset, offset + length);
      this.buffer = this.buffer.subarray(offset + length);
      this.frames.push({ opcode, payload });
      if (opcode === 0x8 && this.closeCode === undefined) {
        this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.closeFrameAt = performance.now();
        if (this.answerClose) this.sendClose(this.closeCode === 1005 ? undefined : this.closeCode);
      }
    }
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

// ---- measurements ----

let gcFunction: (() => void) | undefined;

/** A full GC, without needing --expose-gc on the command line. */
export function collectGarbage(): void {
  if (!gcFunction) {
    setFlagsFromString('--expose-gc');
    gcFunction = runInNewContext('gc') as () => void;
  }
  gcFunction();
  gcFunction();
}

/** Heap in use after a full GC, in bytes. */
export async function settledHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    collectGarbage();
  }
  return process.memoryUsage().heapUsed;
}

/** Timers alive in this process (for "timers back to baseline"). */
export function activeTimers(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
}

/**
 * Records uncaught exceptions and unhandled rejections in this process (the
 * node under test runs here): the invariant of every attack row is that
 * there are none. `stop()` removes the listeners.
 */
export function watchCrashes(): { readonly errors: unknown[]; stop(): void } {
  const errors: unknown[] = [];
  const onException = (err: unknown) => errors.push(err);
  const onRejection = (reason: unknown) => errors.push(reason);
  process.on('uncaughtExceptionMonitor', onException);
  process.on('unhandledRejection', onRejection);
  return {
    errors,
    stop() {
      process.off('uncaughtExceptionMonitor', onException);
      process.off('unhandledRejection', onRejection);
    },
  };
}

// ---- herald serve as a child process ----

