import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { NatsBroker } from '../../src/broker/nats.js';
import { channelToken } from '../../src/broker/nats-subjects.js';
import { NatsProcess } from '../helpers/brokers.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { assertStarvationInMetrics } from '../helpers/metrics.js';
import { epochOf, offsetOf, ProtocolSocket, type Frame } from '../helpers/protocol.js';
import { publish, startTestServer, type TestServer } from '../helpers/server.js';
import { SseReader } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

/**
 * SPEC §7 on NATS: the same guarantees as on Redis, on a nats-server with
 * JetStream started by this file (history in a stream, fan-out by the
 * stream's republish to one core subscription per channel per node).
 */

const TUNING = 'probe_interval=0.3&presence_ttl=1';

async function status(url: string, init?: RequestInit): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, init);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function postPublish(node: { url: string }, channel: string, data: unknown) {
  return status(`${node.url}/api/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel, data }),
  });
}

async function subscribed(peer: ProtocolSocket, channel: string, extra: Record<string, unknown> = {}): Promise<Frame> {
  const answer = await peer.command({ type: 'subscribe', channel, ...extra });
  assert.equal(answer.type, 'subscribed', JSON.stringify(answer));
  return answer;
}

/**
 * Room mode has no "joined" answer: publish markers through the API until
 * every member has heard one, so the test's own messages come after the join.
 */
async function joined(node: { url: string }, room: string, members: TestSocket[]): Promise<void> {
  let marker = 0;
  await until(async () => {
    await publish(node, room, { joinMarker: ++marker });
    return members.every((member) => member.messages.some((text) => text.includes('joinMarker')));
  }, 10_000, `members joined ${room}`);
}

const notMarker = (text: string) => !text.includes('joinMarker');

/** Opens an SSE stream and resolves once it is subscribed (its first id block has arrived). */
async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
  const reader = await SseReader.open(url, headers);
  await reader.waitUntil(() => reader.lastEventId !== '');
  return reader;
}

function assertContiguous(positions: string[], what: string): void {
  for (let i = 1; i < positions.length; i++) {
    assert.equal(epochOf(positions[i]), epochOf(positions[0]), `${what}: one epoch`);
    assert.equal(offsetOf(positions[i]), offsetOf(positions[i - 1]) + 1, `${what}: contiguous at ${i}`);
  }
}

interface Connz {
  connections: { name?: string; subscriptions_list?: string[] }[];
}

describe('three nodes on one NATS server (SPEC §7)', () => {
  let nats: NatsProcess;
  let nodes: TestServer[];

  before(async () => {
    nats = await NatsProcess.start();
    nodes = await Promise.all([0, 1, 2].map(() => startTestServer({ broker: `${nats.url}?${TUNING}`, 'history-size': 500, 'log-level': 'silent' })));
  });

  after(async () => {
    await Promise.all(nodes.map((node) => node.stop()));
    await nats.stop();
  });

  /** How many connections hold a core subscription for the channel's live subject. */
  const subscribers = async (channel: string): Promise<number> => {
    const subject = `herald.r.${channelToken(channel)}`;
    const connz = await nats.monitor<Connz>('connz?subs=1');
    return connz.connections.filter((c) => c.subscriptions_list?.includes(subject)).length;
  };

  it('room mode: a member message reaches members on the other nodes exactly as sent, not the sender', async () => {
    const members = await Promise.all(nodes.map((node) => TestSocket.open(`${node.wsUrl}?room=lobby`)));
    await joined(nodes[0]!, 'lobby', members);
    const seen = members.map((member) => member.messages.length);
    members[0]!.send('{"text": "hi from node 0"}');
    assert.equal(await members[1]!.waitFor(notMarker, seen[1]), '{"text": "hi from node 0"}');
    assert.equal(await members[2]!.waitFor(notMarker, seen[2]), '{"text": "hi from node 0"}');
    members[2]!.send('{"text":"hi from node 2"}');
    // The sender's own message is never echoed: the first thing it hears is the reply from node 2.
    assert.equal(await members[0]!.waitFor(notMarker, seen[0]), '{"text":"hi from node 2"}');
    assert.equal(await members[1]!.waitFor((t) => t.includes('node 2'), seen[1]), '{"text":"hi from node 2"}');
    assert.deepEqual(members[2]!.messages.slice(seen[2]).filter(notMarker), ['{"text": "hi from node 0"}']);
    for (const member of members) member.close();
  });

  it('protocol mode and SSE: a publication on one node reaches subscribers on every node with the same position', async () => {
    const peers = await Promise.all(nodes.map((node) => ProtocolSocket.open(node.wsUrl)));
    for (const peer of peers) await subscribed(peer, 'news.eu');
    const reader = await openSse(`${nodes[2]!.url}/events/news.eu`);
    const sent = await publish(nodes[0]!, 'news.eu', { headline: 'multi-node' }, 'breaking');
    assert.equal(offsetOf(sent.position), 1);
    for (const peer of peers) {
      const message = await peer.next('message');
      assert.deepEqual(message, { type: 'message', channel: 'news.eu', event: 'breaking', data: { headline: 'multi-node' }, position: sent.position });
    }
    const event = await reader.waitFor((e) => e.event === 'breaking');
    assert.equal(event.id, sent.position);
    for (const peer of peers) peer.close();
    reader.close();
  });

  it('concurrent publishing through three nodes: every subscriber sees one identical, contiguous order', async (t) => {
    const channel = 'race';
    const peers = await Promise.all(nodes.map((node) => ProtocolSocket.open(node.wsUrl)));
    for (const peer of peers) await subscribed(peer, channel);
    const reader = await openSse(`${nodes[1]!.url}/events/${channel}`);
    const perNode = 60;
    const acknowledged = await Promise.all(
      nodes.map(async (node, n) => {
        const positions: string[] = [];
        for (let i = 0; i < perNode; i += 10) {
          const batch = await Promise.all(Array.from({ length: 10 }, (_, k) => publish(node, channel, { node: n, seq: i + k })));
          positions.push(...batch.map((b) => b.position));
        }
        return positions;
      }),
    );
    const total = perNode * nodes.length;
    const orders: string[][] = [];
    for (const peer of peers) {
      const messages = await peer.waitForMessages(channel, total, 15_000);
      assertContiguous(messages.map((m) => String(m.position)), 'protocol subscriber');
      orders.push(messages.map((m) => `${m.position} ${JSON.stringify(m.data)}`));
    }
    await reader.waitUntil(() => reader.publications.length >= total, 15_000);
    orders.push(reader.publications.map((e) => `${e.id} ${e.data}`));
    for (const order of orders.slice(1)) assert.deepEqual(order, orders[0]);
    assert.deepEqual(acknowledged.flat().sort(), orders[0]!.map((line) => line.split(' ')[0]!).sort());
    const conflicts = nodes.reduce((sum, node) => sum + ((node.ctx.hub.broker as NatsBroker).stats?.publishConflicts ?? 0), 0);
    t.diagnostic(`${total} publishes through 3 nodes: ${conflicts} optimistic-concurrency retries`);
    for (const peer of peers) peer.close();
    reader.close();
  });

  it('SSE Last-Event-ID resumes on a different node with no gap and no duplicate', async () => {
    const channel = 'resume-sse';
    const first = await openSse(`${nodes[0]!.url}/events/${channel}`);
    for (let i = 1; i <= 3; i++) await publish(nodes[1]!, channel, { i });
    await first.waitUntil(() => first.publications.length === 3);
    const lastId = first.publications[2]!.id;
    first.close();
    for (let i = 4; i <= 6; i++) await publish(nodes[0]!, channel, { i });
    const resumed = await SseReader.open(`${nodes[2]!.url}/events/${channel}`, { 'Last-Event-ID': lastId });
    await resumed.waitUntil(() => resumed.publications.length === 3);
    await publish(nodes[1]!, channel, { i: 7 });
    await resumed.waitUntil(() => resumed.publications.length === 4);
    assert.deepEqual(resumed.publications.map((e) => JSON.parse(e.data).i), [4, 5, 6, 7]);
    assertContiguous([lastId, ...resumed.publications.map((e) => e.id)], 'resumed SSE');
    assert.ok(!resumed.events.some((e) => e.event === 'reset'));
    resumed.close();
  });

  it('protocol `since` resumes on a different node; history is served from JetStream by any node', async () => {
    const channel = 'resume-ws';
    const early = await ProtocolSocket.open(nodes[2]!.wsUrl);
    await subscribed(early, channel);
    const seen = await publish(nodes[0]!, channel, { n: 1 });
    await early.next('message');
    early.close();
    const missed = [await publish(nodes[1]!, channel, { n: 2 }), await publish(nodes[2]!, channel, { n: 3 })];
    const late = await ProtocolSocket.open(nodes[0]!.wsUrl);
    const answer = await subscribed(late, channel, { since: seen.position });
    assert.equal(answer.recovered, true);
    assert.deepEqual((await late.waitForMessages(channel, 2)).map((m) => m.position), missed.map((m) => m.position));
    const history = await status(`${nodes[1]!.url}/api/history/${channel}?limit=2`);
    assert.deepEqual((history.body.publications as { data: unknown }[]).map((p) => p.data), [{ n: 1 }, { n: 2 }]);
    assert.equal(history.body.position, missed[1]!.position);
    late.close();
  });

  it('presence: joins and leaves cross nodes, and any node lists the whole channel', async () => {
    const alice = await ProtocolSocket.open(nodes[0]!.wsUrl);
    const aliceId = String(alice.frames[0]!.client);
    await subscribed(alice, 'team', { presence: true });
    const bob = await ProtocolSocket.open(nodes[1]!.wsUrl);
    const bobId = String(bob.frames[0]!.client);
    await subscribed(bob, 'team', { presence: true });
    await alice.next('join', (f) => f.client === bobId);
    const clients = async () => ((await status(`${nodes[2]!.url}/api/presence/team`)).body.clients as { client: string }[]).map((c) => c.client).sort();
    await until(async () => (await clients()).length === 2, 5000, 'both listed');
    // Entries are re-put every presence_ttl/3 meanwhile: every read must still list each client once.
    for (let i = 0; i < 20; i++) assert.deepEqual(await clients(), [aliceId, bobId].sort());
    bob.close();
    await alice.next('leave', (f) => f.client === bobId);
    await until(async () => (await clients()).length === 1, 5000, 'bob gone');
    alice.close();
  });

  it("presence: a crashed node's clients expire from every node's list", async () => {
    const child = spawn(process.execPath, ['bin/herald', 'serve', '--host', '127.0.0.1', '--port', '0', '--broker', `${nats.url}?${TUNING}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (chunk: Buffer) => {
          out += chunk;
          const match = /"port":(\d+)/.exec(out);
          if (match) resolve(Number(match[1]));
        });
        child.once('close', (code) => reject(new Error(`herald exited ${code}: ${out}`)));
      });
      const doomed = await ProtocolSocket.open(`ws://127.0.0.1:${port}/ws`);
      await subscribed(doomed, 'crash-room', { presence: true });
      const count = async () => ((await status(`${nodes[0]!.url}/api/presence/crash-room`)).body.clients as unknown[]).length;
      await until(async () => (await count()) === 1, 5000, 'client listed');
      child.kill('SIGKILL');
      await once(child, 'exit');
      await until(async () => (await count()) === 0, 5000, "crashed node's client expired");
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('a node holds a NATS subscription for a channel only while it has local subscribers', async () => {
    const channel = 'per-node';
    assert.equal(await subscribers(channel), 0);
    const a1 = await ProtocolSocket.open(nodes[0]!.wsUrl);
    const a2 = await ProtocolSocket.open(nodes[0]!.wsUrl);
    await subscribed(a1, channel);
    await subscribed(a2, channel);
    await until(async () => (await subscribers(channel)) === 1, 5000, 'node 0 subscribed once');
    const b = await ProtocolSocket.open(nodes[1]!.wsUrl);
    await subscribed(b, channel);
    await until(async () => (await subscribers(channel)) === 2, 5000, 'node 1 subscribed');
    a1.close();
    a2.close();
    await until(async () => (await subscribers(channel)) === 1, 5000, 'node 0 unsubscribed');
    b.close();
    await until(async () => (await subscribers(channel)) === 0, 5000, 'node 1 unsubscribed');
  });

  it('a starved connection (blackholed) is caught by the probe and the gap is repaired from JetStream', async () => {
    const proxy = await FaultProxy.start(nats.port);
    const broker = new NatsBroker({ servers: [`nats://127.0.0.1:${proxy.port}`], limits: { size: 500, ttlSeconds: 300 }, probeIntervalMs: 300, presenceTtlMs: 1000 });
    const node = await startTestServer({ 'history-size': 500, 'log-level': 'silent' }, { broker });
    try {
      const channel = 'starved';
      const peer = await ProtocolSocket.open(node.wsUrl);
      await subscribed(peer, channel);
      await publish(nodes[0]!, channel, { n: 1 });
      await peer.waitForMessages(channel, 1);
      proxy.setMode('blackhole');
      for (let n = 2; n <= 4; n++) await publish(nodes[1]!, channel, { n });
      await until(() => broker.stats.probeTimeouts >= 1, 5000, 'probe timeout');
      proxy.setMode('pass');
      proxy.resetAll();
      const messages = await peer.waitForMessages(channel, 4, 10_000);
      assert.deepEqual(messages.map((m) => (m.data as { n: number }).n), [1, 2, 3, 4]);
      assertContiguous(messages.map((m) => String(m.position)), 'after starvation');
      assert.ok(!peer.frames.some((f) => f.type === 'reset'), 'repaired, not reset');
      await assertStarvationInMetrics(node);
      peer.close();
    } finally {
      await node.stop();
      await proxy.close();
    }
  });

  it('outage: NATS killed → 503 fast, /readyz 503, connections stay; back with its storage → service resumes in the same epoch; back without it → reset', async (t) => {
    const channel = 'outage';
    const peer = await ProtocolSocket.open(nodes[1]!.wsUrl);
    await subscribed(peer, channel);
    const reader = await openSse(`${nodes[2]!.url}/events/${channel}`);
    const member = await TestSocket.open(`${nodes[0]!.wsUrl}?room=${channel}`);
    await joined(nodes[2]!, channel, [member]);
    await until(async () => (await subscribers(channel)) === 3, 5000, 'three nodes subscribed');
    const first = await publish(nodes[0]!, channel, { phase: 'before' });
    await peer.waitForMessages(channel, 1);

    const outage = async (label: string) => {
      await nats.kill('SIGKILL');
      for (const node of nodes) await until(async () => (await fetch(`${node.url}/readyz`)).status === 503, 5000, 'readyz 503');
      const refusalMs: number[] = [];
      for (let i = 0; i < 15; i++) {
        const started = performance.now();
        const answer = await postPublish(nodes[i % 3]!, channel, { phase: 'during' });
        refusalMs.push(performance.now() - started);
        assert.equal(answer.status, 503, 'no publish may succeed while NATS is down');
        assert.equal((answer.body.error as { code: string }).code, 'unavailable');
      }
      const refused = await peer.command({ type: 'publish', channel, data: { phase: 'during' } });
      assert.equal(refused.code, 'unavailable');
      t.diagnostic(`${label}: publish refusal max ${Math.max(...refusalMs).toFixed(1)} ms`);
    };
    const recovery = async (label: string) => {
      const restarted = performance.now();
      await nats.launch();
      for (const node of nodes) await until(async () => (await fetch(`${node.url}/readyz`)).status === 200, 10_000, 'readyz 200 again');
      await until(async () => (await subscribers(channel)) === 3, 5000, 'resubscribed on three nodes');
      t.diagnostic(`${label}: ready and resubscribed ${(performance.now() - restarted).toFixed(0)} ms after nats-server was ready`);
    };

    await outage('outage 1');
    await recovery('with storage');
    const second = await publish(nodes[2]!, channel, { phase: 'after restart' });
    assert.equal(epochOf(second.position), epochOf(first.position), 'JetStream kept the history: same epoch');
    assert.equal(offsetOf(second.position), offsetOf(first.position) + 1);
    assert.equal((await peer.next('message', (f) => f.position === second.position)).channel, channel);
    await reader.waitFor((e) => e.id === second.position);
    assert.ok(!peer.frames.some((f) => f.type === 'reset'));

    await outage('outage 2');
    nats.wipeStorage();
    await recovery('without storage');
    const reset = await peer.next('reset');
    assert.notEqual(epochOf(reset.position), epochOf(first.position));
    await reader.waitFor((e) => e.event === 'reset');
    const third = await publish(nodes[0]!, channel, { phase: 'after wipe' });
    assert.equal(epochOf(third.position), epochOf(reset.position));
    assert.equal((await peer.next('message', (f) => f.position === third.position)).channel, channel);
    assert.equal(await member.waitFor((text) => text.includes('after wipe')), '{"phase":"after wipe"}');
    assert.equal(peer.socket.closeCode, undefined);
    assert.equal(member.closeCode, undefined);
    assert.equal(reader.ended, false);
    peer.close();
    member.close();
    reader.close();
  });
});
