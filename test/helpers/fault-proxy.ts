import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy that can misbehave on command (TESTPLAN §6.2), to put between
 * a client and a node or a node and its broker:
 *   pass       — forward bytes both ways
 *   reset      — destroy every open pair now (new connections still pass)
 *   blackhole  — keep sockets open and reading, but drop everything: to the
 *                sender this looks like a healthy reader that never answers
 *   partition  — stop reading on both sides and forward nothing, the way a
 *                vanished peer behaves: the sender's writes pile up in the
 *                kernel buffers and then in its own queue
 *   latency    — forward after `latencyMs`
 */
export type ProxyMode = 'pass' | 'blackhole' | 'partition' | 'latency';

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
}

export class FaultProxy {
  private mode: ProxyMode = 'pass';
  private latencyMs = 0;
  private readonly pairs = new Set<Pair>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<FaultProxy> {
    let proxy: FaultProxy | undefined;
    const server = createServer((client) => proxy!.accept(client, targetPort, targetHost));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new FaultProxy(server, (server.address() as AddressInfo).port);
    return proxy;
  }

  get connections(): number {
    return this.pairs.size;
  }

  setMode(mode: ProxyMode, latencyMs = 0): void {
    this.mode = mode;
    this.latencyMs = latencyMs;
    for (const pair of this.pairs) this.applyFlow(pair);
  }

  /** Destroys every open connection through the proxy (a TCP reset both ways). */
  resetAll(): void {
    for (const { client, upstream } of this.pairs) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    this.pairs.clear();
  }

  async close(): Promise<void> {
    this.resetAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket, port: number, host: string): void {
    const upstream = connect(port, host);
    const pair = { client, upstream };
    this.pairs.add(pair);
    const drop = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.on('data', (chunk) => this.forward(chunk, upstream));
    upstream.on('data', (chunk) => this.forward(chunk, client));
    this.applyFlow(pair);
  }

  /** A partition stops reading (what arrived meanwhile flows on once the mode changes back). */
  private applyFlow({ client, upstream }: Pair): void {
    for (const socket of [client, upstream]) {
      if (this.mode === 'partition') socket.pause();
      else socket.resume();
    }
  }

  private forward(chunk: Buffer, to: Socket): void {
    if (this.mode === 'blackhole') return;
    if (this.mode === 'latency') {
      setTimeout(() => to.writable && to.write(chunk), this.latencyMs);
      return;
    }
    if (to.writable) to.write(chunk);
  }
}
