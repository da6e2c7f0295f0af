import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { canPin, GENERATOR_CPU, sleep } from './process.js';

/**
 * A private, throw-away redis-server on a free loopback port for the
 * two-node scenario (never the shared one on 6379): no persistence, pinned
 * to the generator core so it does not share the server core.
 */
export class PrivateRedis {
  private constructor(
    private readonly proc: ChildProcess,
    readonly port: number,
  ) {}

  static available(): boolean {
    return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
  }

  /** Starts one on a free port, or on `port` (a restart of one that was killed). */
  static async start(port?: number): Promise<PrivateRedis> {
    port ??= await freePort();
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', '--loglevel', 'warning'];
    const proc = canPin() ? spawn('taskset', ['-c', String(GENERATOR_CPU), 'redis-server', ...args], { stdio: 'ignore' }) : spawn('redis-server', args, { stdio: 'ignore' });
    const redis = new PrivateRedis(proc, port);
    for (let i = 0; i < 100; i++) {
      if (await answersPing(port)) return redis;
      await sleep(50);
    }
    redis.stop();
    throw new Error(`redis-server did not start on port ${port}`);
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    return this.proc.pid!;
  }

  stop(): void {
    if (this.proc.exitCode === null) this.proc.kill('SIGTERM');
  }

  /** SIGKILL, as a crash: with no persistence its data is gone. */
  kill(): void {
    if (this.proc.exitCode === null) this.proc.kill('SIGKILL');
  }
}

/** A port nothing listens on right now (loopback). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
  });
}
