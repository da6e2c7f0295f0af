import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP load balancer in front of several nodes, for tests where clients must
 * reconnect "through the load balancer" to another node. Each new connection
 * goes to the next upstream in turn (`round-robin`) or always to the first
 * one that accepts (`failover`); an upstream that refuses is skipped, as a
 * balancer with passive health checks does, so once a node dies or closes
 * its listener, reconnects land on the others. When either side closes, the
 * other is closed too.
 */
export class Balancer {
  /** How many connections went to each upstream port. */
  readonly routed = new Map<number, number>();
  private next = 0;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly upstreams: readonly number[],
    private readonly order: 'round-robin' | 'failover',
  ) {}

  static async start(upstreamPorts: readonly number[], order: 'round-robin' | 'failover' = 'round-robin'): Promise<Balancer> {
    let balancer: Balancer | undefined;
    const server = createServer((client) => balancer!.accept(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    balancer = new Balancer(server, (server.address() as AddressInfo).port, upstreamPorts, order);
    return balancer;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private accept(client: Socket): void {
    this.track(client);
    client.on('error', () => client.destroy());
    client.pause();
    const first = this.order === 'failover' ? 0 : this.next++ % this.upstreams.length;
    const attempt = (tries: number) => {
      if (tries >= this.upstreams.length || client.destroyed) return client.destroy();
      const port = this.upstreams[(first + tries) % this.upstreams.length]!;
      const upstream = connect(port, '127.0.0.1');
      const refused = () => attempt(tries + 1);
      upstream.once('error', refused);
      upstream.once('connect', () => {
        upstream.off('error', refused);
        this.routed.set(port, (this.routed.get(port) ?? 0) + 1);
        this.track(upstream);
        upstream.on('error', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
        client.on('close', () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    attempt(0);
  }
}
