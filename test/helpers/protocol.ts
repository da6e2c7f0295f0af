import { TestSocket } from './ws.js';

export type Frame = Record<string, unknown> & { type: string };

/**
 * A herald.v1 peer over a real socket for conformance tests: `command` sends
 * with a fresh correlation id and resolves with the frame carrying that id;
 * `next` awaits pushes in arrival order (each frame is consumed once).
 */
export class ProtocolSocket {
  private nextId = 1;
  private cursor = 0;

  constructor(readonly socket: TestSocket) {}

  static async open(wsUrl: string, query = ''): Promise<ProtocolSocket> {
    const peer = new ProtocolSocket(await TestSocket.open(wsUrl + query, 'herald.v1'));
    await peer.next('connected');
    return peer;
  }

  get frames(): Frame[] {
    return this.socket.messages.map((text) => JSON.parse(text) as Frame);
  }

  /** Sends `body` with the next id (unless it has one) and resolves with the answer or error bearing that id. */
  async command(body: Record<string, unknown>, timeoutMs = 5000): Promise<Frame> {
    const id = typeof body.id === 'number' ? body.id : this.nextId++;
    this.socket.send({ id, ...body });
    const text = await this.socket.waitFor((t) => (JSON.parse(t) as { id?: unknown }).id === id, 0, timeoutMs);
    return JSON.parse(text) as Frame;
  }

  /** The next frame of `type` (matching `where`) after the last one `next` returned. */
  async next(type: string, where: (frame: Frame) => boolean = () => true, timeoutMs = 5000): Promise<Frame> {
    let index = -1;
    await this.socket.waitFor(
      (text) => {
        const frame = JSON.parse(text) as Frame;
        return frame.type === type && where(frame);
      },
      this.cursor,
      timeoutMs,
    );
    for (let i = this.cursor; i < this.socket.messages.length; i++) {
      const frame = JSON.parse(this.socket.messages[i]!) as Frame;
      if (frame.type === type && where(frame)) {
        index = i;
        break;
      }
    }
    this.cursor = index + 1;
    return JSON.parse(this.socket.messages[index]!) as Frame;
  }

  /** Every `message` push for `channel` received so far. */
  messagesIn(channel: string): Frame[] {
    return this.frames.filter((f) => f.type === 'message' && f.channel === channel);
  }

  /** Resolves once `count` messages for `channel` have arrived. */
  async waitForMessages(channel: string, count: number, timeoutMs = 5000): Promise<Frame[]> {
    await this.socket.waitFor(() => this.messagesIn(channel).length >= count, 0, timeoutMs);
    return this.messagesIn(channel);
  }

  send(value: unknown): void {
    this.socket.send(value);
  }

  close(): void {
    this.socket.close();
  }
}

export function offsetOf(position: unknown): number {
  return Number(String(position).split(':')[0]);
}

export function epochOf(position: unknown): string {
  return String(position).split(':')[1] ?? '';
}
