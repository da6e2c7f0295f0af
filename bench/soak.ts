/**
 * `npm run soak` (issue 8, not in CI): one `herald serve` child under
 * 10,000 room-mode WebSocket connections for 30 minutes, with churn (clients
 * leaving — half with a close handshake, half with a TCP reset — and new ones
 * arriving every second), steady publishing through the HTTP API and, with
 * `--broker redis`, a private redis-server killed and restarted every few
 * minutes. Every 10 s it samples the node's RSS, heap, connections and
 * subscriptions from /metrics; at the end all clients leave and it checks
 * that memory came back and nothing is left behind. The live heap (heap used
 * right after full GCs forced through the node's V8 inspector) is read before
 * the clients connect, once they are connected, at the end, and after they
 * left. The verdict is "flat" when the last third of the run holds no more
 * memory than the first third (within 10 %), the live heap at the end is
 * within 10 % of the live heap once connected, and nothing is left behind.
 *
 *   npm run soak -- [--minutes 30] [--warmup 5] [--connections 10000]
 *                   [--rooms 100] [--rate 50] [--churn 20]
 *                   [--broker memory|redis] [--restart-every 5]
 *                   [--malloc-arena-max N] [--report FILE]
 *
 * `--warmup N` minutes come first, at five times the churn: V8 sizes its old
 * generation to the garbage that churned connections leave there (they live
 * minutes, so they die in the old generation), and at 20 clients/s it takes
 * it some 15–20 minutes to get there — growth that is the heap settling, not
 * a leak. The warm-up is shown but not judged; the verdict is on the
 * `--minutes` after it.
 *
 * `--malloc-arena-max N` starts the node with MALLOC_ARENA_MAX=N (glibc), to
 * tell fragmentation of native memory across malloc arenas from a leak.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { forceGc } from './inspector.js';
import { sleep } from './process.js';
import { freePort, PrivateRedis } from './redis.js';

interface SoakOptions {
  minutes: number;
  connections: number;
  rooms: number;
  rate: number;
  churn: number;
  broker: 'memory' | 'redis';
  restartEveryMinutes: number;
  warmupMinutes: number;
  mallocArenaMax?: number;
  report?: string;
}

interface Sample {
  atSeconds: number;
  rssMb: number;
  heapMb: number;
  /** V8 heap reserved (used + free pages), and memory V8 tracks outside its heap (Buffers, sockets' ArrayBuffers). */
  heapTotalMb: number;
  /** Of heap total: the old generation, and the new (young) generation's semi-spaces. */
  oldSpaceMb: number;
  newSpaceMb: number;
  externalMb: number;
  connections: number;
  subscriptions: number;
  channels: number;
  delivered: number;
  event?: string;
  /** Taken during the warm-up: shown, not judged. */
  warmup?: boolean;
}

const BIN = fileURLToPath(new URL('../../bin/herald', import.meta.url));
const SAMPLE_EVERY_MS = 10_000;
const CONNECT_CONCURRENCY = 250;
/** Churn during the warm-up, as a multiple of --churn. */
const WARMUP_CHURN_FACTOR = 5;

function parseOptions(argv: string[]): SoakOptions {
  const options: SoakOptions = { minutes: 30, connections: 10_000, rooms: 100, rate: 50, churn: 20, broker: 'memory', restartEveryMinutes: 5, warmupMinutes: 5 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i]!, argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    const number = Number(value);
    switch (flag) {
      case '--minutes': options.minutes = number; break;
      case '--connections': options.connections = number; break;
      case '--rooms': options.rooms = number; break;
      case '--rate': options.rate = number; break;
      case '--churn': options.churn = number; break;
      case '--restart-every': options.restartEveryMinutes = number; break;
      case '--warmup': options.warmupMinutes = number; break;
      case '--malloc-arena-max': options.mallocArenaMax = number; break;
      case '--broker':
        if (value !== 'memory' && value !== 'redis') throw new Error('--broker is memory or redis');
        options.broker = value;
        break;
      case '--report': options.report = value; break;
      default: throw new Error(`unknown flag ${flag}`);
    }
  }
  for (const [name, value] of Object.entries(options)) {
    if (typeof value === 'number' && !(value > 0) && !(name === 'warmupMinutes' && value === 0)) throw new Error(`--${name} must be a positive number`);
  }
  return options;
}

interface SoakNode {
  readonly child: ChildProcess;
  /** The V8 inspector's ws:// URL, for forced GCs. */
  readonly inspectorUrl: string;
}

/** The node under test, in its own process so its memory is its own, with the V8 inspector on a free loopback port. */
async function startNode(port: number, brokerUrl: string | undefined, mallocArenaMax: number | undefined): Promise<SoakNode> {
  const args = ['--inspect=127.0.0.1:0', BIN, 'serve', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn', '--max-connections-per-ip', '0', '--ping-interval', '10'];
  if (brokerUrl) args.push('--broker', brokerUrl);
  const env = mallocArenaMax ? { ...process.env, MALLOC_ARENA_MAX: String(mallocArenaMax) } : process.env;
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'pipe'], env });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk;
    process.stderr.write(chunk);
  });
  for (let i = 0; i < 200; i++) {
    const inspector = /Debugger listening on (ws:\/\/\S+)/.exec(stderr);
    if (inspector && (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false))) return { child, inspectorUrl: inspector[1]! };
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error('herald did not start');
}

/** The room-mode clients: each counts what it receives; churn replaces some every second. */
class ClientPool {
  delivered = 0;
  errors = 0;
  private closed = false;
  /** Every socket this pool created and has not seen close, connecting ones included. */
  private readonly sockets = new Set<WebSocket>();
  private readonly clients: (WebSocket | undefined)[];

  constructor(
    private readonly url: string,
    private readonly rooms: number,
    size: number,
  ) {
    this.clients = new Array(size).fill(undefined);
  }

  async fill(): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < this.clients.length) await this.open(next++);
    };
    await Promise.all(Array.from({ length: CONNECT_CONCURRENCY }, worker));
  }

  /** Drops `count` random clients (half closed cleanly, half reset) and opens replacements. */
  churn(count: number): void {
    for (let i = 0; i < count; i++) {
      const index = Math.floor(Math.random() * this.clients.length);
      const client = this.clients[index];
      this.clients[index] = undefined;
      if (client) {
        if (i % 2 === 0) client.close(1000);
        else client.terminate();
      }
      void this.open(index);
    }
  }

  closeAll(): void {
    this.closed = true;
    for (const socket of this.sockets) socket.terminate();
    this.clients.fill(undefined);
  }

  private open(index: number): Promise<void> {
    return new Promise((resolve) => {
      const client = new WebSocket(`${this.url}?room=soak-${index % this.rooms}`, { perMessageDeflate: false });
      this.sockets.add(client);
      client.on('message', () => this.delivered++);
      client.on('error', () => this.errors++);
      client.once('open', () => {
        // Closed meanwhile, or a later replacement for this slot won: this one is surplus.
        if (this.closed || this.clients[index] !== undefined) return client.terminate();
        this.clients[index] = client;
        resolve();
      });
      client.once('close', () => {
        this.sockets.delete(client);
        if (this.clients[index] === client) this.clients[index] = undefined;
        resolve();
      });
    });
  }
}

async function sample(baseUrl: string, startedAt: number, delivered: number): Promise<Sample> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const sum = (name: string) =>
    text
      .split('\n')
      .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
      .reduce((total, line) => total + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
  return {
    atSeconds: Math.round((Date.now() - startedAt) / 1000),
    rssMb: sum('herald_process_resident_memory_bytes') / 2 ** 20,
    heapMb: sum('herald_nodejs_heap_size_used_bytes') / 2 ** 20,
    heapTotalMb: sum('herald_nodejs_heap_size_total_bytes') / 2 ** 20,
    oldSpaceMb: sum('herald_nodejs_heap_space_size_total_bytes{space="old"}') / 2 ** 20,
    newSpaceMb: sum('herald_nodejs_heap_space_size_total_bytes{space="new"}') / 2 ** 20,
    externalMb: sum('herald_nodejs_external_memory_bytes') / 2 ** 20,
    connections: sum('herald_connections'),
    subscriptions: sum('herald_subscriptions'),
    channels: sum('herald_channels'),
    delivered,
  };
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
}

/** Heap used right after full GCs, in MB. */
interface LiveHeap {
  beforeConnecting: number;
  connected: number;
  atEnd: number;
  afterLeave: number;
}

function renderReport(options: SoakOptions, samples: Sample[], after: Sample, live: LiveHeap, stats: { published: number; refused: number; errors: number }): { text: string; flat: boolean } {
  const running = samples.filter((s) => !s.warmup);
  const third = Math.max(1, Math.floor(running.length / 3));
  const first = running.slice(0, third);
  const last = running.slice(-third);
  const rssRatio = mean(last.map((s) => s.rssMb)) / mean(first.map((s) => s.rssMb));
  const heapRatio = mean(last.map((s) => s.heapMb)) / mean(first.map((s) => s.heapMb));
  const emptied = after.connections === 0 && after.subscriptions === 0 && after.channels === 0;
  const liveRatio = live.atEnd / live.connected;
  const flat = rssRatio <= 1.1 && heapRatio <= 1.1 && liveRatio <= 1.1 && emptied;
  const lines = [
    `Soak: ${options.minutes} min after a ${options.warmupMinutes}-min warm-up at ${WARMUP_CHURN_FACTOR} × the churn, ${options.connections} room-mode WebSockets in ${options.rooms} rooms, ` +
      `${options.churn} clients replaced per second, ${options.rate} publications/s via POST /api/publish, broker ${options.broker}` +
      (options.broker === 'redis' ? ` (killed with SIGKILL and restarted every ${options.restartEveryMinutes} min)` : '') +
      (options.mallocArenaMax ? `, node run with MALLOC_ARENA_MAX=${options.mallocArenaMax}` : ''),
    '',
    '| t (s) | RSS MB | heap used MB | heap total MB (old + new) | external MB | connections | subscriptions | channels | delivered | event |',
    '|------:|-------:|-------------:|--------------------------:|------------:|------------:|--------------:|---------:|----------:|-------|',
    ...[...samples, after].map(
      (s) =>
        `| ${s.atSeconds}${s.warmup ? ' (warm-up)' : ''} | ${s.rssMb.toFixed(1)} | ${s.heapMb.toFixed(1)} | ${s.heapTotalMb.toFixed(1)} (${s.oldSpaceMb.toFixed(1)} + ${s.newSpaceMb.toFixed(1)}) | ${s.externalMb.toFixed(1)} | ${s.connections} | ${s.subscriptions} | ${s.channels} | ${s.delivered} | ${s.event ?? ''} |`,
    ),
    '',
    `Published ${stats.published}, refused ${stats.refused} (503 while the broker was down), client errors ${stats.errors}.`,
    `Mean RSS, last third ÷ first third: ${rssRatio.toFixed(3)}; heap: ${heapRatio.toFixed(3)}.`,
    `Live heap (heap used after forced full GCs): before connecting ${live.beforeConnecting.toFixed(1)} MB, connected ${live.connected.toFixed(1)} MB, ` +
      `at the end ${live.atEnd.toFixed(1)} MB (× ${liveRatio.toFixed(3)}), after every client left ${live.afterLeave.toFixed(1)} MB.`,
    `After every client left: ${after.connections} connections, ${after.subscriptions} subscriptions, ${after.channels} channels, RSS ${after.rssMb.toFixed(1)} MB, heap ${after.heapMb.toFixed(1)} MB.`,
    `Verdict: ${flat ? 'flat' : 'NOT flat'} (last third within 10 % of the first for RSS and heap, live heap at the end within 10 % of the live heap once connected, and nothing left behind).`,
  ];
  return { text: lines.join('\n'), flat };
}

export async function runSoak(argv: string[]): Promise<boolean> {
  const options = parseOptions(argv);
  const redis = options.broker === 'redis' ? await PrivateRedis.start() : undefined;
  const port = await freePort();
  const node = await startNode(port, redis?.url, options.mallocArenaMax);
  const baseUrl = `http://127.0.0.1:${port}`;
  let redisNow = redis;
  const pool = new ClientPool(`ws://127.0.0.1:${port}/ws`, options.rooms, options.connections);
  const stats = { published: 0, refused: 0, errors: 0 };
  const samples: Sample[] = [];
  const startedAt = Date.now();
  const warmupEndsAt = startedAt + options.warmupMinutes * 60_000;
  const endsAt = warmupEndsAt + options.minutes * 60_000;
  const liveHeap = async () => {
    await forceGc(node.inspectorUrl);
    return (await sample(baseUrl, startedAt, pool.delivered)).heapMb;
  };
  const live: LiveHeap = { beforeConnecting: NaN, connected: NaN, atEnd: NaN, afterLeave: NaN };
  try {
    live.beforeConnecting = await liveHeap();
    await pool.fill();
    // Read before the warm-up: a forced GC shrinks the heap V8 sized to the churn, so one at the end of the
    // warm-up would undo it and the judged run would watch the heap grow back.
    live.connected = await liveHeap();
    let warming = options.warmupMinutes > 0;
    console.error(`soak: ${options.connections} connected in ${((Date.now() - startedAt) / 1000).toFixed(1)} s; warming up ${options.warmupMinutes} min, then running ${options.minutes} min`);
    const payload = JSON.stringify({ text: 'x'.repeat(80) });
    const publisher = setInterval(() => {
      const room = `soak-${Math.floor(Math.random() * options.rooms)}`;
      fetch(`${baseUrl}/api/publish`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: `{"channel":"${room}","data":${payload}}` }).then(
        (response) => (response.ok ? stats.published++ : stats.refused++),
        () => stats.refused++,
      );
    }, 1000 / options.rate);
    const churner = setInterval(() => pool.churn(warming ? options.churn * WARMUP_CHURN_FACTOR : options.churn), 1000);
    let nextRestart = warmupEndsAt + options.restartEveryMinutes * 60_000;
    while (Date.now() < endsAt) {
      await sleep(SAMPLE_EVERY_MS);
      let event: string | undefined;
      if (warming && Date.now() >= warmupEndsAt) {
        warming = false;
        event = 'warm-up over';
      }
      if (redisNow && Date.now() >= nextRestart) {
        nextRestart += options.restartEveryMinutes * 60_000;
        redisNow.kill();
        await sleep(2000);
        redisNow = await PrivateRedis.start(redisNow.port);
        event = 'redis restarted';
      }
      const current = { ...(await sample(baseUrl, startedAt, pool.delivered)), ...(event ? { event } : {}), ...(warming ? { warmup: true } : {}) };
      samples.push(current);
      console.error(`soak: t=${current.atSeconds}s rss=${current.rssMb.toFixed(1)}MB heap=${current.heapMb.toFixed(1)}/${current.heapTotalMb.toFixed(1)}MB (old ${current.oldSpaceMb.toFixed(1)} new ${current.newSpaceMb.toFixed(1)}) external=${current.externalMb.toFixed(1)}MB conns=${current.connections} subs=${current.subscriptions} delivered=${current.delivered}${event ? ` (${event})` : ''}`);
    }
    clearInterval(publisher);
    clearInterval(churner);
    await sleep(2000); // the last churned clients settle
    live.atEnd = await liveHeap();
    pool.closeAll();
    await sleep(SAMPLE_EVERY_MS);
    const after = { ...(await sample(baseUrl, startedAt, pool.delivered)), event: 'after leave' };
    live.afterLeave = await liveHeap();
    stats.errors = pool.errors;
    const { text, flat } = renderReport(options, samples, after, live, stats);
    console.log(text);
    if (options.report) writeFileSync(options.report, `${text}\n`);
    return flat;
  } finally {
    pool.closeAll();
    node.child.kill('SIGTERM');
    redisNow?.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runSoak(process.argv.slice(2)).then(
    (flat) => process.exit(flat ? 0 : 1),
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(2);
    },
  );
}
