import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { channelToken } from '../../src/broker/nats-subjects.js';
import { NatsProcess } from '../helpers/brokers.js';
import { channelTop, parsePosition, RatePublisher, StreamClient, verifyStream } from '../helpers/faults-broker.js';
import { percentile } from '../helpers/figures.js';
import { startTestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

/**
 * TESTPLAN T23: T17's invariants on NATS. nats-server (JetStream) is killed
 * twice under two nodes, 40 clients and steady API publishing: restarted with
 * its storage (same epoch: every acknowledged publication must reach every
 * subscriber — a publish that was only buffered by the NATS client must never
 * have been reported as a success), then with its storage wiped (new epoch:
 * every subscriber gets a reset). No stream may ever have a silent gap.
 */

const CHANNELS = ['n-0', 'n-1', 'n-2', 'n-3', 'n-4'];
const OUTAGE_MS = 2000;

interface Connz {
  connections: { subscriptions_list?: string[] }[];
}

describe('T23: NATS killed and restarted under two nodes, clients and steady publishing', () => {
  it('T23: with storage — no acknowledged publication lost, same epoch; without — an explicit reset; never a silent gap', async (t) => {
    const nats = await NatsProcess.start();
    const nodes = await Promise.all([0, 1].map(() => startTestServer({ broker: `${nats.url}?probe_interval=0.5&presence_ttl=1`, 'history-size': 2000, 'log-level': 'warn' })));
    const clients: StreamClient[] = [];
    const publisher = new RatePublisher(() => nodes, CHANNELS, 200);
    try {
      for (let i = 0; i < 40; i++) clients.push(await StreamClient.open(nodes[i % 2]!.wsUrl));
      await Promise.all(clients.map((client, i) => Promise.all([client.subscribe(CHANNELS[i % 5]!), client.subscribe(CHANNELS[(i + 2) % 5]!)])));
      publisher.start();
      const liveSubscriptions = async () => {
        const connz = await nats.monitor<Connz>('connz?subs=1');
        return CHANNELS.every((ch) => connz.connections.filter((c) => c.subscriptions_list?.includes(`herald.r.${channelToken(ch)}`)).length === 2);
      };

      const outage = async (label: string, wipe: boolean) => {
        const before = publisher.ackedCount;
        await until(() => publisher.ackedCount >= before + 150, 10_000, 'publishing before the outage');
        await nats.kill('SIGKILL');
        const killAt = performance.now();
        await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS)); // the outage lasts this long by design
        if (wipe) nats.wipeStorage();
        await nats.launch();
        const restartAt = performance.now();
        const during = publisher.attempts.filter((a) => a.startedAt > killAt + 100 && a.startedAt + a.ms < restartAt);
        assert.ok(during.length > 100, `publishing went on during the outage (${during.length})`);
        assert.deepEqual([...new Set(during.map((a) => a.status))], [503], `${label}: every publish during the outage refused with 503 (none reported as success)`);
        await until(async () => (await liveSubscriptions()) && nodes.every((n) => n.ctx.hub.broker.unreadyReason() === undefined), 15_000, `${label}: both nodes ready and re-subscribed`);
        t.diagnostic(`${label}: publish refusal p99 ${percentile(during.map((a) => a.ms), 99).toFixed(1)} ms, max ${Math.max(...during.map((a) => a.ms)).toFixed(1)} ms; ready and re-subscribed ${(performance.now() - restartAt).toFixed(0)} ms after nats-server was ready`);
      };

      await until(() => CHANNELS.every((ch) => publisher.epochs(ch).length > 0), 10_000, 'every channel published to');
      const epochsBefore = new Map(CHANNELS.map((ch) => [ch, publisher.epochs(ch)[0]!.epoch]));
      await outage('restart with storage', false);
      const afterFirst = publisher.ackedCount;
      await until(() => publisher.ackedCount >= afterFirst + 150, 10_000, 'publishing after the first restart');
      await publisher.stop();

      // With its storage NATS kept everything: every publication acknowledged so far reached every subscriber, no reset.
      let delivered = 0;
      for (const ch of CHANNELS) {
        const top = await channelTop(nodes[0]!, ch);
        assert.equal(parsePosition(top).epoch, epochsBefore.get(ch), `${ch}: JetStream kept the history, same epoch`);
        for (const [i, client] of clients.entries()) {
          if (!client.streams.has(ch)) continue;
          await client.waitUntil(() => client.position(ch) === top, 10_000, `client ${i} at the top of ${ch}`);
          const verdict = verifyStream(client.events(ch), publisher.acked(ch));
          assert.deepEqual(verdict.problems, [], `client ${i} in ${ch}: ${verdict.problems.slice(0, 5).join('; ')}`);
          assert.deepEqual(verdict.resets, [], `client ${i} in ${ch}: nothing to reset`);
          const received = new Set(verdict.offsets);
          const missing = [...publisher.acked(ch).keys()].map((p) => parsePosition(p).offset).filter((o) => o > verdict.offsets[0]! && !received.has(o));
          assert.deepEqual(missing, [], `client ${i} in ${ch}: every acknowledged publication delivered (none was only buffered)`);
          delivered += verdict.offsets.length;
        }
      }
      t.diagnostic(`after the restart with storage: ${publisher.ackedCount} acknowledged, ${delivered} deliveries in 80 streams, 0 resets, 0 acknowledged-but-lost`);

      publisher.start();
      await outage('restart without storage', true);
      const afterSecond = publisher.ackedCount;
      await until(() => publisher.ackedCount >= afterSecond + 150, 10_000, 'publishing after the second restart');
      await publisher.stop();

      let resets = 0;
      for (const ch of CHANNELS) {
        const top = await channelTop(nodes[0]!, ch);
        assert.notEqual(parsePosition(top).epoch, epochsBefore.get(ch), `${ch}: storage wiped, new epoch`);
        for (const [i, client] of clients.entries()) {
          if (!client.streams.has(ch)) continue;
          await client.waitUntil(() => client.position(ch) === top, 10_000, `client ${i} at the top of ${ch}`);
          const verdict = verifyStream(client.events(ch), publisher.acked(ch));
          assert.deepEqual(verdict.problems, [], `client ${i} in ${ch}: ${verdict.problems.slice(0, 5).join('; ')}`);
          assert.ok(verdict.resets.length >= 1, `client ${i} in ${ch}: told about the lost history`);
          resets += verdict.resets.length;
        }
      }
      t.diagnostic(`${publisher.ackedCount} publications acknowledged over both outages; 80 streams sound; ${resets} resets (all after the wipe), 0 silent gaps`);
    } finally {
      await publisher.stop();
      for (const client of clients) client.close();
      await Promise.all(nodes.map((node) => node.stop()));
      await nats.stop();
    }
  });
});
