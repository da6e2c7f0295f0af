import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { HeraldClient, type ClientState } from '../../client/index.js';
import { RedisProcess } from '../helpers/brokers.js';
import { Balancer } from '../helpers/balancer.js';
import { channelTop, RatePublisher, verifyStream, type StreamEvent } from '../helpers/faults-broker.js';
import { percentile } from '../helpers/figures.js';
import { crashLines, spawnHerald, type HeraldChild } from '../helpers/herald-process.js';
import { until } from '../helpers/wait.js';

/**
 * TESTPLAN T20: two `herald serve` processes on one private Redis behind a
 * round-robin balancer, 200 herald/client clients split between them, 500
 * msg/s into 20 channels. SIGKILL one node: its clients reconnect (jittered
 * backoff) through the balancer to the survivor and resume from their last
 * positions; every application-level stream stays contiguous and unique.
 */

const CHANNELS = Array.from({ length: 20 }, (_, i) => `f-${i}`);
const CLIENTS = 200;

interface Tracked {
  readonly client: HeraldClient;
  readonly streams: Map<string, StreamEvent[]>;
  readonly states: { state: ClientState; at: number }[];
}

function positionOf(event: StreamEvent): string | undefined {
  return event.type === 'unsubscribed' ? undefined : event.position;
}

async function metric(node: HeraldChild, name: string): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? NaN : Number(line.split(' ')[1]);
}

async function xrangeCalls(admin: Redis): Promise<number> {
  const info = (await admin.info('commandstats')) as string;
  return Number(/cmdstat_xrange:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

describe('T20: node kill and failover', () => {
  it('T20: SIGKILL one of two nodes — its clients resume on the other, every stream contiguous and without duplicates', async (t) => {
    const redis = await RedisProcess.start();
    const args = ['--broker', `${redis.url}?probe_interval=0.5`, '--history-size', '10000', '--log-level', 'info'];
    const [a, b] = await Promise.all([spawnHerald(args), spawnHerald(args)]);
    const balancer = await Balancer.start([a!.port, b!.port]);
    const admin = new Redis(redis.url, { maxRetriesPerRequest: 0 });
    const tracked: Tracked[] = [];
    let publisher: RatePublisher | undefined;
    try {
      // One publication per channel first, so every client subscribes with a `since` and its stream has a known start.
      const start = new Map<string, string>();
      for (const ch of CHANNELS) {
        const response = await fetch(`${b!.url}/api/publish`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ channel: ch, data: { seq: -1 } }) });
        start.set(ch, String(((await response.json()) as { position: string }).position));
      }
      for (let i = 0; i < CLIENTS; i++) {
        const client = new HeraldClient(`ws://127.0.0.1:${balancer.port}/ws`, { reconnect: { base: 200, cap: 2000 } });
        const entry: Tracked = { client, streams: new Map(), states: [] };
        client.on('state', (state) => entry.states.push({ state, at: performance.now() }));
        for (const ch of [CHANNELS[i % 20]!, CHANNELS[(i + 7) % 20]!]) {
          const events: StreamEvent[] = [{ type: 'subscribed', position: start.get(ch)!, recovered: true }];
          entry.streams.set(ch, events);
          client.subscribe(ch, {
            since: start.get(ch),
            onMessage: (m) => events.push({ type: 'message', position: m.position, data: m.data }),
            onReset: (r) => events.push({ type: 'reset', position: String(r.position), reason: r.reason }),
          });
        }
        tracked.push(entry);
      }
      await until(() => tracked.every((e) => e.client.state === 'connected'), 20_000, 'every client connected');
      // Both nodes hold clients (round robin), before anything is published.
      let split: number[] = [];
      await until(async () => {
        const [onA, onB] = await Promise.all([a!, b!].map(async (n) => Number(await metric(n, 'herald_connections{transport="websocket"}'))));
        split = [onA, onB];
        return onA + onB === CLIENTS;
      }, 20_000, 'every client counted by a node');
      t.diagnostic(`clients per node before the kill: ${split.join(' / ')}`);

      let nodesUp = [a!, b!];
      publisher = new RatePublisher(() => nodesUp, CHANNELS, 500).start();
      await until(() => publisher!.ackedCount >= 500, 10_000, 'publishing before the kill');

      await metric(b!, 'herald_nodejs_eventloop_lag_p99_seconds'); // a scrape resets the lag histogram: what follows measures the storm
      const xrangeBefore = await xrangeCalls(admin);
      const testLoop = monitorEventLoopDelay({ resolution: 10 });
      testLoop.enable();
      nodesUp = [b!];
      a!.child.kill('SIGKILL');
      const killAt = performance.now();
      await a!.exited;

      // The clients of A notice, reconnect through the balancer and land on B.
      await until(async () => Number(await metric(b!, 'herald_connections{transport="websocket"}')) === CLIENTS, 30_000, 'every client on B');
      await until(() => tracked.every((e) => e.client.state === 'connected'), 10_000, 'every client connected');
      const moved = tracked.filter((e) => e.states.some((s) => s.at >= killAt && s.state === 'disconnected'));
      const reconnectMs = moved.map((e) => e.states.find((s) => s.at >= killAt && s.state === 'connected')!.at - killAt);
      const noticedMs = moved.map((e) => e.states.find((s) => s.at >= killAt && s.state === 'disconnected')!.at - killAt);
      const retriedMs = moved.map((e) => e.states.find((s) => s.at >= killAt && s.state === 'connecting')!.at - killAt);
      t.diagnostic(`clients of the killed node noticed after p50 ${percentile(noticedMs, 50).toFixed(0)} ms, max ${Math.max(...noticedMs).toFixed(0)} ms; retried after p50 ${percentile(retriedMs, 50).toFixed(0)} ms; attempts per client ${(moved.reduce((n, e) => n + e.states.filter((s) => s.at >= killAt && s.state === 'connecting').length, 0) / moved.length).toFixed(2)}`);

      const after = publisher.ackedCount;
      await until(() => publisher!.ackedCount >= after + 500, 15_000, 'publishing after the failover');
      const lagP99 = await metric(b!, 'herald_nodejs_eventloop_lag_p99_seconds');
      testLoop.disable();
      const xrangePerClient = ((await xrangeCalls(admin)) - xrangeBefore) / moved.length;
      await publisher.stop();

      const tops = new Map<string, string>();
      for (const ch of CHANNELS) tops.set(ch, await channelTop(b!, ch));
      for (const [i, entry] of tracked.entries()) {
        for (const [ch, events] of entry.streams) {
          await until(() => positionOf(events.at(-1)!) === tops.get(ch), 10_000, `client ${i} at the top of ${ch}`);
        }
      }
      let deliveries = 0;
      for (const [i, entry] of tracked.entries()) {
        for (const [ch, events] of entry.streams) {
          const verdict = verifyStream(events, publisher.acked(ch));
          assert.deepEqual(verdict.problems, [], `client ${i} in ${ch}: ${verdict.problems.slice(0, 5).join('; ')}`);
          assert.deepEqual(verdict.resets, [], `client ${i} in ${ch}: within history, nothing to reset`);
          deliveries += verdict.offsets.length;
        }
      }
      t.diagnostic(`${moved.length} of ${CLIENTS} clients were on the killed node; reconnected and re-subscribed on the other: p50 ${percentile(reconnectMs, 50).toFixed(0)} ms, p99 ${percentile(reconnectMs, 99).toFixed(0)} ms, max ${Math.max(...reconnectMs).toFixed(0)} ms after SIGKILL (criterion p99 ≤ 5 s)`);
      t.diagnostic(`survivor's event-loop lag p99 during the storm ${(lagP99 * 1000).toFixed(1)} ms (criterion < 200 ms; this test process, which runs the 200 clients and the balancer: ${(testLoop.percentile(99) / 1e6).toFixed(0)} ms); XRANGE calls per reconnecting client ${xrangePerClient.toFixed(2)} (criterion ≤ channels × 2 = 4)`);
      t.diagnostic(`${publisher.ackedCount} publications acknowledged; ${deliveries} deliveries in ${CLIENTS * 2} streams, contiguous, 0 duplicates, 0 resets`);
      assert.ok(moved.length >= CLIENTS / 4 && moved.length <= (CLIENTS * 3) / 4, `the balancer split the clients (${moved.length} on A)`);
      assert.ok(percentile(reconnectMs, 99) < 15_000, 'reconnect p99 within 3 × 5 s');
      assert.ok(lagP99 < 0.6, 'event-loop lag p99 within 3 × 200 ms');
      assert.ok(xrangePerClient <= 2 * 2 * 3, 'history reads per reconnecting client within 3 × (channels × 2)');
      assert.deepEqual(crashLines(b!.output()), [], 'the survivor logged no crash');
    } finally {
      await publisher?.stop();
      for (const entry of tracked) entry.client.close();
      admin.disconnect();
      await balancer.close();
      for (const node of [a, b]) node?.child.kill('SIGKILL');
      await Promise.all([a, b].map((node) => node?.exited));
      await redis.stop();
    }
  });
});
