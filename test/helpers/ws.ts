import { once } from 'node:events';
import WebSocket from 'ws';

/**
 * A ws client that records every text message, so tests await what they
 * expect ("the next message", "a message matching …") instead of sleeping.
 */
export class TestSocket {
  readonly messages: string[] = [];
  closeCode: number | undefined;
  closeReason = '';
  private waiters: (() => void)[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      if (!isBinary) this.messages.push(data.toString());
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        this.wake();
        resolve({ code, reason: this.closeReason });
      });
    });
    ws.on('error', () => this.wake());
  }

  static async open(url: string, protocol?: string, options: WebSocket.ClientOptions = {}): Promise<TestSocket> {
    const ws = new WebSocket(url, protocol ? [protocol] : [], options);
    const socket = new TestSocket(ws);
    await Promise.race([
      once(ws, 'open'),
      once(ws, 'unexpected-response').then(([, res]) => {
        throw new Error(`upgrade refused: ${(res as { statusCode: number }).statusCode}`);
      }),
    ]);
    return socket;
  }

  send(value: unknown): void {
    this.ws.send(typeof value === 'string' ? value : JSON.stringify(value));
  }

  /** Resolves with the first message (from `from` on) that satisfies `match`. */
  async waitFor(match: (text: string) => boolean, from = 0, timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.messages.length; i++) if (match(this.messages[i]!)) return this.messages[i]!;
      if (this.closeCode !== undefined) throw new Error(`socket closed (${this.closeCode}) before the expected message`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for a message; got ${JSON.stringify(this.messages.slice(-5))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits until `count` messages have arrived in total. */
  async waitForCount(count: number, timeoutMs = 5000): Promise<string[]> {
    await this.waitFor(() => this.messages.length >= count, 0, timeoutMs).catch(async (err) => {
      if (this.messages.length < count) throw err;
    });
    return this.messages.slice(0, count);
  }

  /** Waits for the next JSON message with the given `type` (protocol mode). */
  async next<T = Record<string, unknown>>(type: string, from = 0, timeoutMs = 5000): Promise<T> {
    const text = await this.waitFor((t) => {
      try {
        return JSON.parse(t).type === type;
      } catch {
        return false;
      }
    }, from, timeoutMs);
    return JSON.parse(text) as T;
  }

  close(): void {
    this.ws.close();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
