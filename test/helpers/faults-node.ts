import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import type { Child } from '../../bench/process.js';

/**
 * Helpers of the node-level fault tests (TESTPLAN T13, T14, T21, T22): a
 * Herald node as a child process with its own Node flags, its /metrics and
 * open files read from outside, proxies that partition or fail over, and raw
 * WebSocket peers that stop reading or ignore the closing handshake.
 */

const buildRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The repository root (the build tree — dist/ or a private one — lives directly inside it). */
export const repoRoot = join(buildRoot, '..');

export interface NodeChild {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly url: string;
  readonly wsUrl: string;
  /** Everything the node wrote to stdout and stderr so far. */
  output(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** ws:// URL of the V8 inspector, when started with `inspect: true`. */
  readonly inspectorUrl?: string;
}

const liveNodes = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveNodes) child.kill('SIGKILL');
});

/**
 * `herald serve` in a child process on 127.0.0.1 and a free port. Run from
 * the shared dist/ (npm test) this is bin/herald itself; run from a private
 * build directory it is the same one-line entry over that build's CLI, so
 * the child runs the code under test; it must log at info or lower (the
 * port is read from its "herald listening" line). `nodeFlags` go to node itself
 * (e.g. --max-old-space-size); `inspect` opens the V8 inspector on a free
 * loopback port so a test can force a full GC from outside (forceGc).
 */
export async function startNodeChild(args: readonly string[], options: { nodeFlags?: readonly string[]; inspect?: boolean } = {}): Promise<NodeChild> {
  const cliArgs = ['serve', '--host', '127.0.0.1', '--port', '0', ...args];
  const entry =
    basename(buildRoot) === 'dist'
      ? [join(repoRoot, 'bin', 'herald')]
      : ['--input-type=module', '-e', `import { main } from ${JSON.stringify(join(buildRoot, 'src', 'cli', 'main.js'))}; main(process.argv.slice(1)).catch((err) => { console.error(err); process.exit(1); });`];
  const flags = [...(options.nodeFlags ?? []), ...(options.inspect ? ['--inspect=127.0.0.1:0'] : [])];
  const child = spawn(process.execPath, [...flags, ...entry, ...cliArgs], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  liveNodes.add(child);
  let output = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      liveNodes.delete(child);
      resolve({ code, signal });
    }),
  );
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk));
  const found = await new Promise<{ port: number; inspectorUrl?: string }>((resolve, reject) => {
    const look = () => {
      const port = /"port":(\d+)[^\n]*herald listening/.exec(output);
      const inspector = /Debugger listening on (ws:\/\/\S+)/.exec(output);
      if (port && (!options.inspect || inspector)) resolve({ port: Number(port[1]), inspectorUrl: inspector?.[1] });
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    void exited.then(({ code, signal }) => reject(new Error(`herald exited (${code ?? signal}) before listening:\n${output}`)));
    setTimeout(() => reject(new Error(`herald did not log "herald listening" (at --log-level info or lower) within 20 s:\n${output}`)), 20_000).unref();
  });
  const url = `http://127.0.0.1:${found.port}`;
  return { child, pid: child.pid!, port: found.port, url, wsUrl: `ws://127.0.0.1:${found.port}/ws`, output: () => output, exited, inspectorUrl: found.inspectorUrl };
}

/** Lines a node logged that mean it crashed or leaked an error (TESTPLAN §7 shared criteria). */
export function crashLines(output: string): string[] {
  return output.split('\n').filter((line) => /uncaughtException|unhandledRejection|UnhandledPromiseRejection|FATAL ERROR|heap out of memory/.test(line));
}

/** JSON log lines of a node child. */
export function logLines(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/**
 * Every sample of a Prometheus text page, keyed `name` or `name{labels}`
 * exactly as printed, e.g. `herald_closes_total{code="4008"}`.
 */
export async function scrape(url: string): Promise<Map<string, number>> {
  const response = await fetch(`${url}/metrics`);
  if (!response.ok) throw new Error(`/metrics: ${response.status}`);
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** Open file descriptors of a process (this one by default): the shared "fds back to baseline" criterion. */
export function openFds(pid: number | 'self' = 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * Forces full garbage collections in a node started with `inspect: true`,
 * through the V8 inspector protocol (HeapProfiler.collectGarbage): nothing
 * is added to the product for it.
 */
export async function forceGc(inspectorUrl: string, rounds = 2): Promise<void> {
  const ws = new WebSocket(inspectorUrl);
  await once(ws, 'open');
  let id = 0;
  const call = (method: string) =>
    new Promise<void>((resolve, reject) => {
      const mine = ++id;
      const onMessage = (data: WebSocket.RawData) => {
        const message = JSON.parse(String(data)) as { id?: number; error?: unknown };
        if (message.id !== mine) return;
        ws.off('message', onMessage);
        if (message.error) reject(new Error(JSON.stringify(message.error)));
        else resolve();
      };
      ws.on('message', onMessage);
      ws.send(JSON.stringify({ id: mine, method }));
    });
  try {
    for (let i = 0; i < rounds; i++) await call('HeapProfiler.collectGarbage');
  } finally {
    ws.close();
  }
}

/**
 * A raw client that completes a WebSocket upgrade and then does only what
 * the test says: nothing is read or answered unless the test does it.
 * `path` e.g. `/ws?room=x`; `subprotocol` e.g. `herald.v1`.
 */
export async function rawWebSocket(port: number, path: string, subprotocol?: string): Promise<{ socket: Socket; head: Buffer }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  const protocol = subprotocol ? `Sec-WebSocket-Protocol: ${subprotocol}\r\n` : '';
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${protocol}\r\n`,
  );
  let head = Buffer.alloc(0);
  while (!head.includes('\r\n\r\n')) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    head = Buffer.concat([head, chunk]);
  }
  if (!/^HTTP\/1.1 101/.test(head.toString('latin1'))) throw new Error(`upgrade refused: ${head.toString('latin1').split('\r\n')[0]}`);
  return { socket, head };
}

/** A masked client text frame (zero mask key), for raw sockets. */
export function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const length = payload.length;
  const header = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = Buffer.alloc(header + 4 + length);
  frame[0] = 0x81;
  if (length < 126) frame[1] = 0x80 | length;
  else if (length < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  payload.copy(frame, header + 4);
  return frame;
}

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
}

/**
 * A TCP proxy that can partition the path the way a vanished peer does:
 * `partition()` stops reading on both sides and forwards nothing, so the
 * node's writes pile up in the kernel buffers and then in its own queue —
 * unlike FaultProxy's blackhole, which keeps reading (and dropping) and so
 * looks like a perfectly healthy reader to the node.
 */
export class PartitionProxy {
  private readonly pairs = new Set<Pair>();
  private partitioned = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<PartitionProxy> {
    let proxy: PartitionProxy | undefined;
    const server = createServer((client) => proxy!.accept(client, targetPort));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new PartitionProxy(server, (server.address() as AddressInfo).port);
    return proxy;
  }

  get connections(): number {
    return this.pairs.size;
  }

  partition(): void {
    this.partitioned = true;
    for (const { client, upstream } of this.pairs) {
      client.pause();
      upstream.pause();
      client.unpipe(upstream);
      upstream.unpipe(client);
    }
  }

  async close(): Promise<void> {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket, port: number): void {
    const upstream = connect(port, '127.0.0.1');
    const pair = { client, upstream };
    this.pairs.add(pair);
    const drop = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    if (this.partitioned) return;
    client.pipe(upstream);
    upstream.pipe(client);
  }
}

/**
 * A load balancer in front of several nodes: each new connection goes to the
 * first node that accepts it, so once a draining node closes its listener,
 * clients that reconnect land on the next one (TESTPLAN T21's "reconnect to B").
 */
export class FailoverProxy {
  private readonly pairs = new Set<Pair>();
  /** How many connections went to each target port. */
  readonly routed = new Map<number, number>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPorts: readonly number[]): Promise<FailoverProxy> {
    let proxy: FailoverProxy | undefined;
    const server = createServer((client) => proxy!.accept(client, targetPorts, 0));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new FailoverProxy(server, (server.address() as AddressInfo).port);
    return proxy;
  }

  async close(): Promise<void> {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket, targets: readonly number[], index: number): void {
    client.pause();
    client.on('error', () => client.destroy());
    const port = targets[index];
    if (port === undefined) return void client.destroy();
    const upstream = connect(port, '127.0.0.1');
    let connected = false;
    upstream.once('error', (err: NodeJS.ErrnoException) => {
      if (connected) return;
      client.removeAllListeners('error');
      if (err.code === 'ECONNREFUSED') this.accept(client, targets, index + 1);
      else client.destroy();
    });
    upstream.once('connect', () => {
      connected = true;
      this.routed.set(port, (this.routed.get(port) ?? 0) + 1);
      const pair = { client, upstream };
      this.pairs.add(pair);
      const drop = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  }
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export const mb = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MB`;

/**
 * Ends a bench load generator (bench/load/generator.ts): it drops every
 * connection and exits. Waits for the exit rather than writing to an IPC
 * channel that may be closing (which would raise an uncaught error).
 */
export async function stopGenerator(generator: Child): Promise<void> {
  const proc = generator.proc;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  if (proc.connected) {
    try {
      await generator.request({ cmd: 'close' }, 5000);
    } catch {
      // closing already
    }
  }
  const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}
