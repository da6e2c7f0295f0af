import { connect, type Socket } from 'node:net';
import { containsProbe, countWarmups, nowMicros, scanStamps } from './payload.js';
import { ChunkedReader, CLOSE_FRAME, clientFrame, FrameReader, headEnd, PONG_FRAME, upgradeRequest, type FrameSink } from './wire.js';

/**
 * How a client speaks to a server under test:
 * - `room`: plain WebSocket, one room per connection in the URL, messages are the payload;
 * - `proto`: herald.v1 — subscribe / publish commands in JSON envelopes;
 * - `sio`: Socket.IO 4 (Engine.IO 4 over a WebSocket, default namespace);
 * - `sse`: an HTTP GET event stream (publishing is an HTTP POST, see HttpPublisher).
 */
export type Dialect = 'room' | 'proto' | 'sio' | 'sse';

export interface ConnectionSpec {
  readonly dialect: Dialect;
  readonly port: number;
  /** Request path, including the room in the query for `room` and `sio`. */
  readonly path: string;
  /** herald.v1 only: the channel to subscribe to once connected (none for a publisher). */
  readonly channel?: string;
  readonly localAddress: string;
}

/** Counters shared by every client of one generator process. */
export interface Tally {
  received: number;
  /** Warm-up publications received (not measured). */
  warmups: number;
  probed: number;
  opened: number;
  failed: number;
  closed: number;
  record(latencyMicros: number): void;
}

/**
 * Every socket of a generator reads into this one buffer (net `onread`):
 * no Readable stream, no Buffer per read. Each read is handled
 * synchronously, and whatever must outlive it is copied.
 */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

const SIO_CONNECT = clientFrame(Buffer.from('40'));
const SIO_PONG = clientFrame(Buffer.from('3'));
const SIO_OPEN = 0x30; // '0' Engine.IO open packet
const SIO_PING = 0x32; // '2'
const SIO_MESSAGE = 0x34; // '4'

/** One lean subscriber or publisher connection. */
export class LoadClient implements FrameSink {
  private readonly socket: Socket;
  private head: Buffer | null = Buffer.alloc(0);
  private readonly frames: FrameReader | undefined;
  private readonly chunks: ChunkedReader | undefined;
  private open = false;
  private settled = false;
  private probed = false;
  private commandId = 0;

  constructor(
    readonly spec: ConnectionSpec,
    private readonly tally: Tally,
    private readonly onSettled: (client: LoadClient, ok: boolean) => void,
  ) {
    if (spec.dialect === 'sse') this.chunks = new ChunkedReader((buf, start, end) => this.onPayload(buf, start, end));
    else this.frames = new FrameReader(this);
    this.socket = connect({
      host: '127.0.0.1',
      port: spec.port,
      localAddress: spec.localAddress,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (bytes: number, buf: Uint8Array) => {
          this.onData((buf as Buffer).subarray(0, bytes));
          return true;
        },
      },
    });
    this.socket.on('connect', () => this.socket.write(this.request()));
    this.socket.on('error', () => {});
    this.socket.on('close', () => this.onSocketClose());
  }

  get isOpen(): boolean {
    return this.open;
  }

  /** Publishes one payload (JSON text) in this client's room or channel. */
  publish(payload: string, channel: string): void {
    if (!this.open) return;
    switch (this.spec.dialect) {
      case 'room':
        this.socket.write(clientFrame(Buffer.from(payload)));
        return;
      case 'proto':
        this.socket.write(clientFrame(Buffer.from(`{"id":${++this.commandId},"type":"publish","channel":"${channel}","data":${payload}}`)));
        return;
      case 'sio':
        this.socket.write(clientFrame(Buffer.from(`42["m",${payload}]`)));
        return;
      case 'sse':
        throw new Error('SSE streams do not publish; use HttpPublisher');
    }
  }

  close(): void {
    if (this.spec.dialect !== 'sse' && this.open) this.socket.end(CLOSE_FRAME);
    else this.socket.end();
    this.socket.destroySoon();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private request(): string {
    const host = `127.0.0.1:${this.spec.port}`;
    if (this.spec.dialect === 'sse') return `GET ${this.spec.path} HTTP/1.1\r\nHost: ${host}\r\nAccept: text/event-stream\r\n\r\n`;
    return upgradeRequest(host, this.spec.path, this.spec.dialect === 'proto' ? 'herald.v1' : undefined);
  }

  private onData(chunk: Buffer): void {
    if (this.head !== null) {
      const buf = this.head.length === 0 ? chunk : Buffer.concat([this.head, chunk]);
      const end = headEnd(buf);
      if (end < 0) {
        this.head = Buffer.from(buf);
        return;
      }
      this.head = null;
      const status = buf.toString('latin1', 9, 12);
      const expected = this.spec.dialect === 'sse' ? '200' : '101';
      if (status !== expected) {
        this.fail();
        return;
      }
      if (this.spec.dialect === 'room' || this.spec.dialect === 'sse') this.settle(true);
      if (end < buf.length) this.onBody(buf.subarray(end));
      return;
    }
    this.onBody(chunk);
  }

  private onBody(chunk: Buffer): void {
    if (this.frames) this.frames.push(chunk);
    else this.chunks!.push(chunk);
  }

  onPayload(buf: Buffer, start: number, end: number): void {
    const dialect = this.spec.dialect;
    if (dialect === 'sio' && !this.handleEngineIo(buf, start, end)) return;
    if (dialect === 'proto' && !this.open) {
      // The first push is {"type":"connected",…}: subscribe now, or be ready to publish.
      if (this.spec.channel !== undefined) {
        this.socket.write(clientFrame(Buffer.from(`{"id":${++this.commandId},"type":"subscribe","channel":"${this.spec.channel}"}`)));
      }
      this.settle(true);
      return;
    }
    const stamps = scanStamps(buf, start, end, nowMicros(), this.tally.record);
    if (stamps > 0) {
      this.tally.received += stamps;
    } else if (this.probed) {
      this.tally.warmups += countWarmups(buf, start, end);
    } else if (containsProbe(buf, start, end)) {
      this.probed = true;
      this.tally.probed++;
    }
  }

  /** Engine.IO housekeeping; true when the payload is a Socket.IO event to scan. */
  private handleEngineIo(buf: Buffer, start: number, end: number): boolean {
    const type = buf[start];
    if (type === SIO_PING) {
      this.socket.write(SIO_PONG);
      return false;
    }
    if (type === SIO_OPEN) {
      this.socket.write(SIO_CONNECT);
      return false;
    }
    if (type === SIO_MESSAGE && !this.open) {
      // "40{sid}" answers our namespace connect.
      if (end - start >= 2 && buf[start + 1] === SIO_OPEN) this.settle(true);
      return false;
    }
    return type === SIO_MESSAGE;
  }

  onPing(): void {
    this.socket.write(PONG_FRAME);
  }

  onClose(): void {
    this.socket.end();
  }

  private settle(ok: boolean): void {
    if (this.settled) return;
    this.settled = true;
    this.open = ok;
    if (ok) this.tally.opened++;
    else this.tally.failed++;
    this.onSettled(this, ok);
  }

  private fail(): void {
    this.settle(false);
    this.socket.destroy();
  }

  private onSocketClose(): void {
    if (!this.settled) return this.settle(false);
    if (this.open) {
      this.open = false;
      this.tally.closed++;
    }
  }
}

/**
 * Publishes over HTTP/1.1 keep-alive (POST /api/publish), pipelined, for
 * the SSE scenario. Responses are read and dropped; their count tells when
 * the server has taken every publication.
 */
export class HttpPublisher {
  private readonly socket: Socket;
  answered = 0;
  private ready: Promise<void>;

  constructor(port: number, localAddress: string) {
    this.socket = connect({ host: '127.0.0.1', port, localAddress, noDelay: true });
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
    this.socket.on('data', (chunk: Buffer) => {
      let at = chunk.indexOf('HTTP/1.1 ');
      while (at >= 0) {
        this.answered++;
        at = chunk.indexOf('HTTP/1.1 ', at + 9);
      }
    });
    this.socket.on('error', () => {});
  }

  whenConnected(): Promise<void> {
    return this.ready;
  }

  publish(payload: string, channel: string): void {
    const body = `{"channel":"${channel}","data":${payload}}`;
    this.socket.write(
      `POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }

  close(): void {
    this.socket.destroy();
  }
}
