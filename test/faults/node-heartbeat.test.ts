import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { crashLines, openFds, repoRoot } from '../helpers/herald-process.js';
import { metricValue } from '../helpers/metrics.js';
import { ProtocolSocket } from '../helpers/protocol.js';
import { startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { SseReader } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';

/**
 * TESTPLAN T13 — dead peers. The plan's 1 s ping + 0.5 s pong maps onto
 * SPEC §3c's single knob: a ping every --ping-interval P, and a peer silent
 * for two intervals is terminated at the next sweep, so a peer that goes
 * silent is cut off between 2P and 3P later (TESTPLAN's "4012 no pong" is
 * Herald's `herald_closes_total{code="no_pong"}`: the socket is terminated,
 * no close frame). Already covered elsewhere (test/integration/heartbeat.test.ts):
 * a room member and a herald.v1 client that never answer pings are
 * terminated and their subscriptions freed; peers that answer stay.
 * Here: the peer vanishes mid-connection, behind a blackhole and as a
 * stopped process, with the timing measured; and an SSE reader behind a
 * partition.
 */

const PING_INTERVAL_S = 0.5;
const P = PING_INTERVAL_S * 1000;

/** A client in its own process, so the test can SIGSTOP it: it joins a room and reports what it sees. */
const CHILD_CLIENT = `
const WebSocket = require('ws');
const ws = new WebSocket(process.argv[1]);
ws.on('open', () => console.log('open'));
ws.on('ping', () => console.log('ping'));
ws.on('close', (code) => console.log('close ' + code));
ws.on('error', () => {});
`;

function startChildClient(url: string): { child: ChildProcess; lines: string[] } {
  const child = spawn(process.execPath, ['-e', CHILD_CLIENT, url], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  child.stdout!.on('data', (chunk: Buffer) => lines.push(...String(chunk).split('\n').filter(Boolean)));
  return { child, lines };
}

/** Open HTTP connections of the node (SSE streams and WebSocket sockets included). */
function connectionCount(server: TestServer): Promise<number> {
  return new Promise((resolve, reject) => (server.http as import('node:http').Server).getConnections((err, count) => (err ? reject(err) : resolve(count))));
}

describe('T13: heartbeat / dead peer (TESTPLAN T13, SPEC §3c)', () => {
  let server: TestServer;
  let fdsBefore: number;
  before(async () => {
    fdsBefore = openFds();
    server = await startTestServer({ 'ping-interval': PING_INTERVAL_S, 'log-level': 'info' });
  });
  after(async () => {
    await server.stop();
    assert.deepEqual(crashLines(server.logs.join('')), []);
    // Shared criterion: open files back to within 5 of the baseline.
    await until(() => openFds() <= fdsBefore + 5, 5000, `fds back to ${fdsBefore} + 5 (now ${openFds()})`);
  });

  it('T13: a blackholed client (A) and a SIGSTOPped client process (B) are terminated 2–3 ping intervals after they go silent, counted as no_pong, and their subscriptions freed; a bystander stays', async (t) => {
    const bystander = await ProtocolSocket.open(server.wsUrl);
    await bystander.command({ type: 'subscribe', channel: 't13-a' });
    await bystander.command({ type: 'subscribe', channel: 't13-b' });

    // A: herald.v1 through a proxy that will swallow everything both ways.
    const proxy = await FaultProxy.start(server.port);
    const a = await ProtocolSocket.open(`ws://127.0.0.1:${proxy.port}/ws`);
    await a.command({ type: 'subscribe', channel: 't13-a' });
    let aPings = 0;
    a.socket.ws.on('ping', () => aPings++);

    // B: a room member in another process.
    const b = startChildClient(`${server.wsUrl}?room=t13-b`);
    try {
      await waitForSubscribers(server, 't13-a', 2);
      await waitForSubscribers(server, 't13-b', 2);
      // Both have answered a ping, so the server has seen them alive under the heartbeat.
      await until(() => aPings >= 1 && b.lines.includes('ping'), 5000, 'A and B pinged');
      assert.equal(server.ctx.heartbeat.size, 3);
      const noPongBefore = await metricValue(server, 'herald_closes_total', { code: 'no_pong' });

      proxy.setMode('blackhole');
      const silentA = Date.now();
      process.kill(b.child.pid!, 'SIGSTOP');
      const silentB = Date.now();
      let goneA = 0;
      let goneB = 0;
      await Promise.all([
        until(() => server.ctx.hub.subscriberCount('t13-a') === 1, 10_000, 'A cut off').then(() => (goneA = Date.now())),
        until(() => server.ctx.hub.subscriberCount('t13-b') === 1, 10_000, 'B cut off').then(() => (goneB = Date.now())),
      ]);
      const [dA, dB] = [goneA - silentA, goneB - silentB];
      t.diagnostic(`ping interval ${P} ms: blackholed A cut off after ${dA} ms, SIGSTOPped B after ${dB} ms (expected ${2 * P}–${3 * P} ms; TESTPLAN 1.5 s ± 0.3 s at 1 s + 0.5 s)`);
      for (const [name, d] of [['A', dA], ['B', dB]] as const) {
        assert.ok(d >= P, `${name} was not cut off before it had been silent for an interval (${d} ms)`);
        assert.ok(d <= 3 * 3 * P, `${name} cut off within 3 × the 3-interval bound (${d} ms)`);
      }
      assert.equal(await metricValue(server, 'herald_closes_total', { code: 'no_pong' }), noPongBefore + 2, 'both counted as no_pong, nobody else');
      // Terminated, not closed: A's end of the proxy is dropped with no close frame.
      assert.equal((await a.socket.closed).code, 1006);
      assert.equal(server.ctx.heartbeat.size, 1, 'only the bystander is left in the heartbeat sweep');
      assert.equal(server.ctx.websockets.size, 1);
      assert.equal(proxy.connections, 0, 'the node closed its end of the blackholed path');

      // The bystander was never in danger and still gets both channels.
      assert.equal(bystander.socket.closeCode, undefined);
      await server.ctx.hub.publish({ channel: 't13-a', data: '"a"' });
      await server.ctx.hub.publish({ channel: 't13-b', data: '"b"' });
      await bystander.waitForMessages('t13-a', 1);
      await bystander.waitForMessages('t13-b', 1);
    } finally {
      b.child.kill('SIGKILL');
      await proxy.close();
      bystander.close();
    }
    await until(() => server.ctx.websockets.size === 0 && server.ctx.hub.channelCount === 0, 5000, 'everything released');
  });

  it('T13: an SSE reader behind a partition (C) is ended once its stalled path fills (4008 disconnect event), its subscription freed at once; the bystander reader gets everything', async (t) => {
    const channel = 't13-c';
    const bystander = await SseReader.open(`${server.url}/events/${channel}`);
    const proxy = await FaultProxy.start(server.port);
    const c = await SseReader.open(`http://127.0.0.1:${proxy.port}/events/${channel}`);
    await c.waitFor((e) => e.event === 'connected');
    await bystander.waitFor((e) => e.event === 'connected');
    await waitForSubscribers(server, channel, 2);
    await c.waitUntil(() => c.comments >= 1, 5000);
    const dropsBefore = await metricValue(server, 'herald_drops_total', { reason: 'slow_consumer' });

    try {
      proxy.setMode('partition');
      const partitioned = Date.now();
      // Traffic in C's channel: 16 KiB events as fast as the hub takes them (a 2 ms pause every 16), until the node gives C up.
      const data = JSON.stringify('x'.repeat(16 * 1024));
      let published = 0;
      let publishing = true;
      const publisher = (async () => {
        while (publishing) {
          await server.ctx.hub.publish({ channel, data });
          published++;
          if (published % 16 === 0) await new Promise((resolve) => setTimeout(resolve, 2));
        }
      })();
      try {
        await until(() => server.ctx.hub.subscriberCount(channel) === 1, 20_000, 'C cut off');
      } finally {
        publishing = false;
        await publisher;
      }
      const gone = Date.now() - partitioned;
      const bytesToC = published * (data.length + 60);
      assert.ok(gone < 15_000, `C freed within 15 s (${gone} ms)`);
      assert.equal(await metricValue(server, 'herald_drops_total', { reason: 'slow_consumer' }), dropsBefore + 1);
      assert.equal(server.ctx.streams.size, 1, 'only the bystander stream is left');
      assert.equal(server.ctx.heartbeat.size, 1);
      // The node destroys its end of C's path after the grace period (C itself cannot notice: nothing reaches it).
      await until(async () => (await connectionCount(server)) === 1, 5000, "C's socket destroyed by the node");
      const closedAfter = Date.now() - partitioned;
      t.diagnostic(
        `SSE reader behind a partition: subscription freed ${gone} ms after the partition, after ${published} events (~${(bytesToC / 1048576).toFixed(1)} MB: kernel buffers + the 1 MiB outbound limit); socket destroyed at ${closedAfter} ms`,
      );
      await bystander.waitUntil(() => bystander.publications.length >= published, 20_000);
      assert.equal(bystander.publications.length, published, 'the bystander got every event');
    } finally {
      bystander.close();
      c.close();
      await proxy.close();
    }
    await until(() => server.ctx.streams.size === 0 && server.ctx.hub.channelCount === 0, 5000, 'everything released');
  });
});
