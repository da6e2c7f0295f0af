import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Real `redis-server` / `nats-server` processes for cluster tests
 * (TESTPLAN §6.2): each on a free port of 127.0.0.1 with its own data
 * directory, never the machine's shared instances. A missing binary makes the
 * test fail (spawn ENOENT), never skip.
 */
abstract class BrokerProcess {
  private child: ChildProcess | undefined;
  private output = '';

  protected constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  protected abstract command(): { binary: string; args: string[]; readyLine: RegExp };

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Starts the server (again, on the same port and directory) and resolves once it says it is ready. */
  async launch(timeoutMs = 10_000): Promise<void> {
    const { binary, args, readyLine } = this.command();
    // detached: its own process group, so teardown can kill the group.
    const child = spawn(binary, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.output = '';
    liveChildren.add(child);
    child.once('exit', () => liveChildren.delete(child));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`${binary} not ready within ${timeoutMs} ms:\n${this.output}`)), timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      const read = (chunk: Buffer) => {
        this.output += chunk;
        if (readyLine.test(this.output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', read);
      child.stderr!.on('data', read);
      child.once('error', (err) => fail(new Error(`cannot start ${binary} (is it installed and on PATH?): ${err.message}`)));
      child.once('close', (code, signal) => fail(new Error(`${binary} exited (${code ?? signal}) before it was ready:\n${this.output}`)));
    });
  }

  /** SIGKILL (or another signal) to the whole process group; resolves once it exited. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      this.child = undefined;
      return;
    }
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    process.kill(-child.pid!, signal);
    await exited;
    this.child = undefined;
  }

  /** Sends a signal without waiting (SIGSTOP / SIGCONT). */
  signal(signal: NodeJS.Signals): void {
    if (this.child?.pid) process.kill(-this.child.pid, signal);
  }

  async stop(): Promise<void> {
    if (this.child?.pid) {
      try {
        process.kill(-this.child.pid, 'SIGCONT');
      } catch {
        // already gone
      }
    }
    await this.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class RedisProcess extends BrokerProcess {
  private constructor(
    port: number,
    dir: string,
    private readonly extraArgs: string[],
  ) {
    super(port, dir);
  }

  /** `extraArgs` e.g. ['--appendonly', 'yes', '--appendfsync', 'always'] for persistence. */
  static async start(extraArgs: string[] = [], port?: number): Promise<RedisProcess> {
    const server = new RedisProcess(port ?? (await freePort()), mkdtempSync(join(tmpdir(), 'herald-redis-')), extraArgs);
    await server.launch();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  protected command() {
    return {
      binary: 'redis-server',
      args: ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, ...this.extraArgs],
      readyLine: /Ready to accept connections/,
    };
  }
}

export class NatsProcess extends BrokerProcess {
  private constructor(
    port: number,
    dir: string,
    /** HTTP monitoring port (/connz, /subsz). */
    readonly monitorPort: number,
  ) {
    super(port, dir);
  }

  static async start(): Promise<NatsProcess> {
    const server = new NatsProcess(await freePort(), mkdtempSync(join(tmpdir(), 'herald-nats-')), await freePort());
    await server.launch();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Deletes the JetStream storage (while stopped): the next launch starts with no streams. */
  wipeStorage(): void {
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir);
  }

  /** GET a monitoring endpoint, e.g. `connz?subs=1`. */
  async monitor<T>(path: string): Promise<T> {
    const response = await fetch(`http://127.0.0.1:${this.monitorPort}/${path}`);
    return (await response.json()) as T;
  }

  protected command() {
    return {
      binary: 'nats-server',
      args: ['-a', '127.0.0.1', '-p', String(this.port), '-m', String(this.monitorPort), '-js', '-sd', this.dir],
      readyLine: /Server is ready/,
    };
  }
}

const liveChildren = new Set<ChildProcess>();
// A test that dies half-way must not leave brokers behind.
process.once('exit', () => {
  for (const child of liveChildren) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
