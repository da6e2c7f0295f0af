import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { HeraldClient, type WebSocketConstructor } from '../../client/index.js';
import { RedisProcess } from '../helpers/brokers.js';
import { Balancer } from '../helpers/balancer.js';
import { logLines, rawWebSocket } from '../helpers/faults-node.js';
import { crashLines, spawnHerald, type HeraldChild } from '../helpers/herald-process.js';
import { offsetOf } from '../helpers/protocol.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { SseReader } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';

/**
 * TESTPLAN T21 — graceful shutdown of a node under load. Codes are SPEC's:
 * a draining node closes WebSockets with 1001 (TESTPLAN's 4001 is
 * Centrifuge's "shutdown"; SPEC gives 4001 to "room required"), and SSE
 * streams end with a `retry:` hint, never a 503. Already covered in
 * test/integration/cli.test.ts: SIGTERM/SIGINT drain with 1001 and the SSE
 * retry hint, exit 0, a client that ignores the close cut off at
 * --shutdown-timeout, no new connections once draining. Here: 200 herald/client
 * WebSockets + 50 SSE readers + 1 client that ignores the closing handshake on
 * node A, behind a load balancer that sends new connections to B; A and B
 * share a private Redis; SIGTERM A while publishing through both nodes.
 */

const WINDOW_S = 2;
const CHANNELS = ['t21-0', 't21-1', 't21-2', 't21-3'];
const WS_CLIENTS = 200;
const SSE_CLIENTS = 50;

interface Received {
  readonly channel: string;
  readonly offsets: number[];
  resets: number;
}

/** A `ws` WebSocket for herald/client that also records how and when each connection closed. */
function recordingWebSocket(closes: { code: number; at: number }[]): WebSocketConstructor {
  return class extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      this.on('close', (code: number) => closes.push({ code, at: Date.now() }));
    }
  } as unknown as WebSocketConstructor;
}

/** An SSE reader that, like a browser's EventSource, reconnects with Last-Event-ID whenever its stream ends. */
class ResumingSse implements Received {
  readonly offsets: number[] = [];
  resets = 0;
  /** How each stream ended: its status and its last bytes. */
  readonly endings: { status: number; tail: string; at: number }[] = [];
  subscribed = false;
  private current: SseReader | undefined;
  private stopped = false;
  readonly done: Promise<void>;

  constructor(
    private readonly url: string,
    readonly channel: string,
  ) {
    this.done = this.run();
  }

  stop(): void {
    this.stopped = true;
    this.current?.close();
  }

  private async run(): Promise<void> {
    let lastId = '';
    while (!this.stopped) {
      let reader: SseReader;
      try {
        reader = await SseReader.open(this.url, lastId ? { 'Last-Event-ID': lastId } : {});
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      this.current = reader;
      let seen = 0;
      const take = () => {
        for (; seen < reader.events.length; seen++) {
          const event = reader.events[seen]!;
          if (event.event === 'message') this.offsets.push(offsetOf(event.id));
          else if (event.event === 'reset') this.resets++;
        }
        if (reader.lastEventId) this.subscribed = true;
        return reader.ended || this.stopped;
      };
      while (!take()) await reader.waitUntil(() => reader.events.length > seen || reader.ended || this.stopped || (reader.lastEventId !== '' && !this.subscribed), 60_000).catch(() => {});
      if (this.stopped) return;
      this.endings.push({ status: reader.status, tail: reader.raw.slice(-40), at: Date.now() });
      // Like EventSource's "last event ID string", it survives a stream that set no id.
      lastId = reader.lastEventId || lastId;
      await new Promise((resolve) => setTimeout(resolve, reader.retry ?? 1000));
    }
  }
}

/** Every offset published and acknowledged is in `received`, once, in order (TESTPLAN T18 criterion). */
function checkStream(who: string, received: readonly number[], acknowledged: ReadonlySet<number>): void {
  for (let i = 1; i < received.length; i++) assert.ok(received[i]! > received[i - 1]!, `${who}: offsets strictly increasing (${received[i - 1]} then ${received[i]})`);
  const got = new Set(received);
  const missing = [...acknowledged].filter((offset) => !got.has(offset));
  assert.deepEqual(missing, [], `${who}: no acknowledged publication lost (received ${JSON.stringify(received)})`);
}

describe('T21: graceful shutdown / drain (TESTPLAN T21, SPEC §1 --shutdown-timeout, §3c 1001, §4)', () => {
  let redis: RedisProcess;
  let a: HeraldChild;
  let b: TestServer;
  let balancer: Balancer;
  before(async () => {
    redis = await RedisProcess.start();
    [a, b] = await Promise.all([
      spawnHerald(['--broker', redis.url, '--shutdown-timeout', String(WINDOW_S), '--sse-retry', '200', '--max-connections-per-ip', '0']),
      startTestServer({ broker: redis.url, 'log-level': 'info', 'max-connections-per-ip': 0 }),
    ]);
    balancer = await Balancer.start([a.port, b.port], 'failover');
  });
  after(async () => {
    a.child.kill('SIGKILL');
    await balancer.close();
    await b.stop();
    await redis.stop();
  });

  it('T21: SIGTERM while publishing — listener closed at once, 1001 closes spread over the window, SSE ends with retry and resumes on B, the deaf client cut off at the deadline, exit 0, no acknowledged publication lost', async (t) => {
    const wsUrl = `ws://127.0.0.1:${balancer.port}/ws`;
    const wsCloses: { code: number; at: number }[][] = [];
    const wsReceived: Received[] = [];
    const clients: HeraldClient[] = [];
    const subscribed: Promise<void>[] = [];
    for (let i = 0; i < WS_CLIENTS; i++) {
      const closes: { code: number; at: number }[] = [];
      const received: Received = { channel: CHANNELS[i % CHANNELS.length]!, offsets: [], resets: 0 };
      const client = new HeraldClient(wsUrl, { WebSocket: recordingWebSocket(closes), reconnect: { base: 300, cap: 1000 } });
      const sub = client.subscribe(received.channel, {
        onMessage: (message) => received.offsets.push(offsetOf(message.position)),
        onReset: () => received.resets++,
      });
      wsCloses.push(closes);
      wsReceived.push(received);
      clients.push(client);
      subscribed.push(sub.ready);
    }
    const readers = Array.from({ length: SSE_CLIENTS }, (_, i) => new ResumingSse(`http://127.0.0.1:${balancer.port}/events/${CHANNELS[i % CHANNELS.length]}`, CHANNELS[i % CHANNELS.length]!));
    // One client that takes the close frame but never answers it, straight on A.
    const deaf = (await rawWebSocket(a.port, `/ws?room=${CHANNELS[0]}`)).socket;
    deaf.on('data', () => {});
    let deafClosedAt = 0;
    deaf.on('close', () => (deafClosedAt = Date.now()));

    const publisherStats = { failed: 0 };
    let stopPublishing = () => {};
    try {
      await Promise.all(subscribed);
      await until(() => readers.every((r) => r.subscribed), 15_000, 'SSE readers subscribed');
      assert.equal(balancer.routed.get(a.port), WS_CLIENTS + SSE_CLIENTS, 'everyone started on A');

      // Publishing through both nodes, ~100/s, recording every acknowledged position.
      const acknowledged = new Map(CHANNELS.map((c) => [c, new Set<number>()]));
      let publishing = true;
      const publisher = (async () => {
        for (let i = 0; publishing; i++) {
          const channel = CHANNELS[i % CHANNELS.length]!;
          const node = i % 2 === 0 ? a.url : b.url;
          try {
            const response = await fetch(`${node}/api/publish`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ channel, data: { i } }) });
            if (response.ok) acknowledged.get(channel)!.add(offsetOf(((await response.json()) as { position: string }).position));
            else publisherStats.failed++;
          } catch {
            publisherStats.failed++;
          }
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      })();
      stopPublishing = () => (publishing = false);
      await until(() => [...acknowledged.values()].every((s) => s.size >= 5), 10_000, 'publishing under way');

      const signalled = Date.now();
      a.child.kill('SIGTERM');
      // New connections to A are refused as soon as it starts draining (its listener is closed).
      let refusedAfter = -1;
      while (refusedAfter < 0 && Date.now() - signalled < 5000) {
        const refused = await new Promise<boolean>((resolve) => {
          const probe = connect(a.port, '127.0.0.1');
          probe.once('connect', () => {
            probe.destroy();
            resolve(false);
          });
          probe.once('error', () => resolve(true));
        });
        if (refused) refusedAfter = Date.now() - signalled;
        else await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const exit = await a.exited;
      const exitedAfter = Date.now() - signalled;
      await until(() => b.ctx.websockets.size === WS_CLIENTS && b.ctx.streams.size === SSE_CLIENTS, 15_000, 'every client back, on B');
      // A little more publishing on B alone, then everyone must hold every acknowledged publication.
      const ackedAtResume = [...acknowledged.values()].reduce((sum, s) => sum + s.size, 0);
      await until(() => [...acknowledged.values()].reduce((sum, s) => sum + s.size, 0) >= ackedAtResume + 20, 10_000, 'publishing on B');
      publishing = false;
      await publisher;
      const everyone: [string, Received][] = [...wsReceived.map((r, i) => [`ws#${i}`, r] as [string, Received]), ...readers.map((r, i) => [`sse#${i}`, r] as [string, Received])];
      await until(() => everyone.every(([, r]) => acknowledged.get(r.channel)!.size === 0 || r.offsets.includes(Math.max(...acknowledged.get(r.channel)!))), 15_000, 'every client caught up').catch(() => {});

      // Figures.
      const firstCloses = wsCloses.map((closes) => closes[0]);
      const closeTimes = firstCloses.filter((c) => c !== undefined).map((c) => c!.at - signalled);
      const spread = Math.max(...closeTimes) - Math.min(...closeTimes);
      const sseEnds = readers.map((r) => r.endings[0]?.at ?? NaN).map((at) => at - signalled);
      const acked = [...acknowledged.values()].reduce((sum, s) => sum + s.size, 0);
      t.diagnostic(
        `drain window ${WINDOW_S * 1000} ms: A refused new connections ${refusedAfter} ms after SIGTERM; WebSocket 1001 closes from ${Math.min(...closeTimes)} to ${Math.max(...closeTimes)} ms (spread ${spread} ms = ${Math.round((spread / (WINDOW_S * 1000)) * 100)}% of the window); SSE ends from ${Math.min(...sseEnds)} to ${Math.max(...sseEnds)} ms; deaf client cut off at ${deafClosedAt - signalled} ms; A exited ${exit.code} at ${exitedAfter} ms`,
      );
      t.diagnostic(`${acked} publications acknowledged (${publisherStats.failed} refused or failed, all on A after it closed); connections routed A ${balancer.routed.get(a.port)}, B ${balancer.routed.get(b.port)}`);

      assert.ok(refusedAfter >= 0 && refusedAfter < 1000, `new connections refused at once (${refusedAfter} ms)`);
      assert.deepEqual(
        firstCloses.map((c) => c?.code),
        Array(WS_CLIENTS).fill(1001),
        'every WebSocket on A closed 1001',
      );
      assert.ok(Math.max(...closeTimes) <= WINDOW_S * 1000 + 500, 'every polite client was closed within the window');
      assert.ok(spread >= 0.5 * WINDOW_S * 1000, `closes spread over ≥ 50% of the window, no thundering herd (${spread} ms)`);
      for (const [i, reader] of readers.entries()) {
        const ending = reader.endings[0];
        assert.ok(ending, `sse#${i} stream on A ended`);
        assert.equal(ending.status, 200, `sse#${i} was never answered 503`);
        assert.match(ending.tail, /retry: \d+\n\n$/, `sse#${i} ended with a retry hint`);
      }
      assert.ok(deafClosedAt > 0, 'the deaf client was cut off');
      assert.ok(Math.abs(deafClosedAt - signalled - WINDOW_S * 1000) <= 1500, `the deaf client was cut off at the deadline (${deafClosedAt - signalled} ms)`);
      assert.deepEqual(exit, { code: 0, signal: null }, 'A exited 0');
      assert.ok(exitedAfter <= WINDOW_S * 1000 + 3000, `A exited within the window + 1 s (×3 slack: ${exitedAfter} ms)`);
      const log = a.output();
      assert.ok(logLines(log).some((l) => l.msg === 'stopped'), 'the drain finished (not the hard stop)');
      assert.deepEqual(crashLines(log), []);
      assert.equal(balancer.routed.get(b.port), WS_CLIENTS + SSE_CLIENTS, 'every client reconnected once, to B');
      for (const [i, reader] of readers.entries()) assert.equal(reader.endings.length, 1, `sse#${i} came back through the balancer at once, not to A again over its keep-alive connection`);
      for (const [who, received] of everyone) {
        assert.equal(received.resets, 0, `${who}: no reset (Redis kept the history)`);
        checkStream(who, received.offsets, acknowledged.get(received.channel)!);
      }
    } finally {
      stopPublishing();
      for (const client of clients) client.close();
      for (const reader of readers) reader.stop();
      deaf.destroy();
      await Promise.all(readers.map((r) => r.done));
    }
  });
});
