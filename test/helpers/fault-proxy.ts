import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy that can misbehave on command (TESTPLAN §6.2), to put between
 * a client and a node or a node and its broker:
 *   pass       — forward bytes both ways
 *   reset      — destroy every open pair now (new connections still pass)
 *   blackhole  — keep sockets open but stop forwarding (a silent partition)
 *   latency    — forward after `latencyMs`
 */
export type ProxyMode = 'pass' | 'blackhole' | 'latency';

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
