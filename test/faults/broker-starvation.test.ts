import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisBroker } from '../../src/broker/redis.js';
import { RedisProcess } from '../helpers/brokers.js';
import { channelTop, parsePosition, RatePublisher, StreamClient, verifyStream } from '../helpers/faults-broker.js';
import { percentile } from '../helpers/figures.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

/**
 * TESTPLAN T19: the PUB/SUB side fails while the command side works, under
 * steady publishing. (a) Redis kills every subscriber connection
 * (`CLIENT KILL TYPE pubsub`), three times; (b) a node's subscriber connection
 * goes silent for 3 s (a blackholing proxy) while publishes reach Redis
 * directly through the other node. Every stream must end complete — the
 * missed run repaired from history — or explicitly reset; never a silent gap.
 * (TESTPLAN's "4010 → recovery" is Centrifugo's insufficient-state close;
 * Herald repairs in place, or sends `reset`, without closing.)
 */

const CHANNELS = ['s-0', 's-1', 's-2', 's-3', 's-4'];
const PROBE_S = 0.5;

/** Every client's stream in every channel it joined: sound, and at the channel's top. */
async function assertStreams(node: TestServer, clients: StreamClient[], publisher: RatePublisher): Promise<{ resets: number; deliveries: number }> {
  let resets = 0;
  let deliveries = 0;
  for (const ch of CHANNELS) {
    const top = await channelTop(node, ch);
    for (const [i, client] of clients.entries()) {
      if (!client.streams.has(ch)) continue;
      await client.waitUntil(() => client.position(ch) === top, 10_000, `client ${i} at the top of ${ch} (${top}); at ${client.position(ch)}`);
      const verdict = verifyStream(client.events(ch), publisher.acked(ch));
      assert.deepEqual(verdict.problems, [], `client ${i} in ${ch}: ${verdict.problems.slice(0, 5).join('; ')}`);
      resets += verdict.resets.length;
      deliveries += verdict.offsets.length;
    }
  }
  return { resets, deliveries };
}

async function subscribeAll(clients: StreamClient[]): Promise<void> {
  // Client i joins two channels; with 20 clients over 2 nodes every channel has members on both.
  await Promise.all(clients.map((client, i) => Promise.all([client.subscribe(CHANNELS[i % 5]!), client.subscribe(CHANNELS[(i + 2) % 5]!)])));
}

describe('T19: PUB/SUB failure and silent starvation under steady publishing', () => {
  it('T19 (a): CLIENT KILL TYPE pubsub, three times — re-subscribed fast, the missed publications repaired from history', async (t) => {
    const redis = await RedisProcess.start();
    const nodes = await Promise.all([0, 1].map(() => startTestServer({ broker: `${redis.url}?probe_interval=${PROBE_S}`, 'history-size': 5000, 'log-level': 'warn' })));
    const admin = new Redis(redis.url, { maxRetriesPerRequest: 0 });
    const clients: StreamClient[] = [];
    try {
      for (let i = 0; i < 20; i++) clients.push(await StreamClient.open(nodes[i % 2]!.wsUrl));
      await subscribeAll(clients);
      const publisher = new RatePublisher(() => nodes, CHANNELS, 300).start();
      const numsubAll = async () => ((await admin.call('PUBSUB', 'NUMSUB', ...CHANNELS.map((ch) => `herald:{${ch}}`))) as (string | number)[]).filter((_, i) => i % 2 === 1).every((n) => Number(n) === 2);
      const resubscribeMs: number[] = [];
      const repairMs: number[] = [];
      for (let round = 0; round < 3; round++) {
        await until(() => publisher.ackedCount >= 150 * (round + 1), 10_000, 'publishing between kills');
        const killed = Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
        const killAt = performance.now();
        assert.equal(killed, 2, 'one subscriber connection per node');
        await until(async () => (await numsubAll()) && nodes.every((n) => n.ctx.hub.broker.unreadyReason() === undefined), 10_000, 'every channel re-subscribed on both nodes');
        resubscribeMs.push(performance.now() - killAt);
        // The first publication acknowledged after the kill has reached every member of its channel (repaired or live).
        await until(() => publisher.attempts.some((a) => a.startedAt > killAt && a.status === 200), 10_000, 'a publish after the kill');
        const first = publisher.attempts.find((a) => a.startedAt > killAt && a.status === 200)!;
        const offset = parsePosition(first.position!).offset;
        await Promise.all(
          clients.filter((c) => c.streams.has(first.channel)).map((c) => c.waitUntil(() => c.lastOffset(first.channel) >= offset, 10_000, `repair of ${first.channel} up to ${offset}`)),
        );
        repairMs.push(performance.now() - killAt);
      }
      await publisher.stop();
      const refusals = publisher.attempts.filter((a) => a.status !== 200);
      const { resets, deliveries } = await assertStreams(nodes[0]!, clients, publisher);
      assert.equal(resets, 0, 'history held every missed publication: repaired, not reset');
      t.diagnostic(`re-subscribed after CLIENT KILL in ${resubscribeMs.map((ms) => ms.toFixed(0)).join(', ')} ms (criterion ≤ 2 s); missed publications at every member ${repairMs.map((ms) => ms.toFixed(0)).join(', ')} ms after the kill`);
      t.diagnostic(`${publisher.ackedCount} acknowledged, ${refusals.length} refused while a node re-subscribed; ${deliveries} deliveries in 40 streams, 0 gaps, 0 duplicates, 0 resets`);
      assert.ok(Math.max(...resubscribeMs) < 6000, 're-subscribed within 3 × 2 s');
      assert.ok(Math.max(...repairMs) < 9000, 'gaps closed within 3 × (probe delay + 2 s)');
    } finally {
      for (const client of clients) client.close();
      admin.disconnect();
      await Promise.all(nodes.map((node) => node.stop()));
      await redis.stop();
    }
  });

  it('T19 (b): a subscriber connection blackholed for 3 s — the probe detects it, the node recovers by itself, gaps repaired or reset', async (t) => {
    const redis = await RedisProcess.start();
    const proxy = await FaultProxy.start(redis.port);
    const direct = await startTestServer({ broker: `${redis.url}?probe_interval=${PROBE_S}`, 'history-size': 5000, 'log-level': 'warn' });
    const broker = new RedisBroker({ url: redis.url, limits: { size: 5000, ttlSeconds: 300 }, probeIntervalMs: PROBE_S * 1000, subscriberConnection: { port: proxy.port } });
    const starved = await startTestServer({ 'history-size': 5000, 'log-level': 'warn' }, { broker });
    const nodes = [direct, starved];
    const clients: StreamClient[] = [];
    try {
      for (let i = 0; i < 20; i++) clients.push(await StreamClient.open(nodes[i % 2]!.wsUrl));
      await subscribeAll(clients);
      // Publishes go through the node whose connections are direct.
      const publisher = new RatePublisher(() => [direct], CHANNELS, 300).start();
      await until(() => publisher.ackedCount >= 150, 10_000, 'publishing before the fault');

      proxy.setMode('blackhole');
      const silentAt = performance.now();
      await until(() => broker.stats.probeTimeouts >= 1, 10_000, 'the probe notices the silence');
      const detectedMs = performance.now() - silentAt;
      const readyzDuring = (await fetch(`${starved.url}/readyz`)).status;
      // The silence lasts this long by design (TESTPLAN: 3 s): a scenario step, not a wait for an event.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 3000 - (performance.now() - silentAt))));
      proxy.setMode('pass');
      const healedAt = performance.now();
      // No resetAll: connections opened into the blackhole must be given up by the node itself.
      await until(() => broker.unreadyReason() === undefined, 20_000, 'the starved node ready again by itself');
      const recoveredMs = performance.now() - healedAt;

      const after = publisher.ackedCount;
      await until(() => publisher.ackedCount >= after + 150, 10_000, 'publishing after the fault');
      await publisher.stop();
      const { resets, deliveries } = await assertStreams(direct, clients, publisher);
      t.diagnostic(`probe timeout detected ${detectedMs.toFixed(0)} ms after the blackhole began (probe interval ${PROBE_S * 1000} ms; criterion 2 intervals); starved node /readyz ${readyzDuring} meanwhile; ready again ${recoveredMs.toFixed(0)} ms after the path healed`);
      t.diagnostic(`probe timeouts ${broker.stats.probeTimeouts}, re-subscribes ${broker.stats.reconnects}; ${publisher.ackedCount} acknowledged, ${deliveries} deliveries in 40 streams, ${resets} resets, 0 silent gaps`);
      assert.ok(broker.stats.probeTimeouts >= 1);
      assert.ok(detectedMs < 3 * 3 * PROBE_S * 1000, 'detected within 3 × the probe design bound (3 intervals)');
      assert.equal(readyzDuring, 503, 'a starved node reports itself unready');
      assert.ok(recoveredMs < 15_000, 'ready again within 15 s of the path healing');
      assert.deepEqual(refusalsOnDirect(publisher), 0, 'the healthy node kept accepting publishes');
    } finally {
      for (const client of clients) client.close();
      await Promise.all(nodes.map((node) => node.stop()));
      await proxy.close();
      await redis.stop();
    }
  });
});

function refusalsOnDirect(publisher: RatePublisher): number {
  const refused = publisher.attempts.filter((a) => a.status !== 200);
  if (refused.length > 0) console.error('refused on the direct node:', refused.slice(0, 3), 'p99', percentile(publisher.attempts.map((a) => a.ms), 99));
  return refused.length;
}
