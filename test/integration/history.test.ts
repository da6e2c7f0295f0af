import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MemoryBroker } from '../../src/broker/memory.js';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { SseReader } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

function parse(position: string): { offset: number; epoch: string } {
  const match = /^(\d+):(.+)$/.exec(position);
  assert.ok(match, `unreadable position ${position}`);
  return { offset: Number(match[1]), epoch: match[2]! };
}

async function historyOf(server: TestServer, channel: string): Promise<{ publications: { data: unknown; position: string }[]; position: string }> {
  const response = await fetch(`${server.url}/api/history/${channel}`);
  assert.equal(response.status, 200);
  return response.json() as never;
}

describe('positions and history (SPEC §5)', () => {
  let server: TestServer;
  let broker: MemoryBroker;
  before(async () => {
    broker = new MemoryBroker({ size: 3, ttlSeconds: 300 });
    server = await startTestServer({ 'history-size': 3 }, { broker });
  });
  after(() => server.stop());

  it('gives each publication the next offset under one epoch, whatever the transport that published it', async () => {
    const room = await TestSocket.open(`${server.wsUrl}?room=offsets`);
    const protocol = await TestSocket.open(server.wsUrl, 'herald.v1');
    await protocol.next('connected');
    const reader = await SseReader.open(`${server.url}/events/offsets`);
    await waitForSubscribers(server, 'offsets', 2);
    const positions = [(await publish(server, 'offsets', 'api')).position];
    room.send('"room"');
    positions.push((await reader.waitFor((e) => e.data === '"room"')).id);
    protocol.send({ id: 1, type: 'publish', channel: 'offsets', data: 'v1' });
    positions.push((await protocol.next<{ position: string }>('published')).position);
    positions.push((await publish(server, 'offsets', 'api')).position);
    const parsed = positions.map(parse);
    assert.deepEqual(parsed.map((p) => p.offset), [1, 2, 3, 4]);
    assert.equal(new Set(parsed.map((p) => p.epoch)).size, 1);
    room.close();
    protocol.close();
    reader.close();
  });

  it('keeps only the last --history-size publications', async () => {
    for (const n of [1, 2, 3, 4, 5]) await publish(server, 'bounded', n);
    const history = await historyOf(server, 'bounded');
    assert.deepEqual(history.publications.map((p) => p.data), [3, 4, 5]);
    assert.equal(parse(history.position).offset, 5);
  });

  it('serves a resume from inside the kept history without a reset', async () => {
    for (const n of [1, 2, 3]) await publish(server, 'kept', n);
    const { position } = await publish(server, 'kept', 4);
    await publish(server, 'kept', 5);
    const reader = await SseReader.open(`${server.url}/events/kept`, { 'Last-Event-ID': position });
    await reader.waitFor((e) => e.data === '5');
    assert.deepEqual(reader.publications.map((e) => e.event), ['message']);
    reader.close();
  });

  it('tells a reader resuming from before the kept history to reset', async () => {
    const { position } = await publish(server, 'overflow', 1);
    for (const n of [2, 3, 4, 5]) await publish(server, 'overflow', n);
    const reader = await SseReader.open(`${server.url}/events/overflow`, { 'Last-Event-ID': position });
    const reset = await reader.waitFor((e) => e.event === 'reset');
    assert.equal(JSON.parse(reset.data).reason, 'history expired');
    assert.equal(parse(reset.id).offset, 5, 'the reset moves the reader to the current top');
    reader.close();
  });

  it('frees hub channels and presence when their last subscriber leaves, whatever the transport', async () => {
    await until(() => server.ctx.hub.channelCount === 0, 5000, 'earlier tests cleaned up');
    const rooms = await Promise.all(['c1', 'c2', 'c3'].map((room) => TestSocket.open(`${server.wsUrl}?room=${room}`)));
    const protocol = await TestSocket.open(server.wsUrl, 'herald.v1');
    protocol.send({ id: 1, type: 'subscribe', channel: 'c5', presence: true });
    await protocol.next('subscribed');
    const reader = await SseReader.open(`${server.url}/events?channel=c1&channel=c4`);
    await waitForSubscribers(server, 'c4', 1);
    await until(() => server.ctx.hub.channelCount === 5 && broker.presence.channelCount === 4, 5000, 'five channels, four with presence');
    protocol.send({ id: 2, type: 'unsubscribe', channel: 'c5' });
    await protocol.next('unsubscribed');
    assert.equal(server.ctx.hub.subscriberCount('c5'), 0);
    for (const socket of rooms) socket.close();
    reader.close();
    protocol.close();
    await until(() => server.ctx.hub.channelCount === 0, 5000, 'all hub channels freed');
    await until(() => broker.presence.channelCount === 0, 5000, 'all presence freed');
    assert.deepEqual(server.ctx.hub.listChannels(), []);
  });
});

describe('history expiry (--history-ttl)', () => {
  let server: TestServer;
  let broker: MemoryBroker;
  before(async () => {
    broker = new MemoryBroker({ size: 3, ttlSeconds: 0.2 });
    server = await startTestServer({ 'history-size': 3, 'history-ttl': 0.2 }, { broker });
  });
  after(() => server.stop());

  it('frees a channel history after --history-ttl; the next publication starts a new epoch and a resume from the old one gets a reset', async () => {
    const { position } = await publish(server, 'expiring', 'x');
    // Reading history of a channel never published to must not pin memory either.
    await historyOf(server, 'read-only');
    await until(() => broker.streamCount === 0, 5000, 'expired streams freed');
    const reader = await SseReader.open(`${server.url}/events/expiring`, { 'Last-Event-ID': position });
    const reset = await reader.waitFor((e) => e.event === 'reset');
    assert.equal(JSON.parse(reset.data).reason, 'epoch changed');
    reader.close();
    const next = parse((await publish(server, 'expiring', 'y')).position);
    assert.equal(next.offset, 1);
    assert.notEqual(next.epoch, parse(position).epoch);
    assert.deepEqual((await historyOf(server, 'expiring')).publications.map((p) => p.data), ['y']);
  });

  it('still delivers to a live reader after its quiet channel history expired', async () => {
    const reader = await SseReader.open(`${server.url}/events/quiet`);
    await waitForSubscribers(server, 'quiet', 1);
    await publish(server, 'quiet', 'before');
    await reader.waitFor((e) => e.data === '"before"');
    await until(() => broker.historyCount === 0, 5000, 'quiet history expired');
    const after = await publish(server, 'quiet', 'after');
    const event = await reader.waitFor((e) => e.data === '"after"');
    assert.equal(event.id, after.position);
    assert.equal(parse(after.position).offset, 2, 'same epoch, next offset: no reset for a live reader');
    assert.equal(reader.events.filter((e) => e.event === 'reset').length, 0);
    reader.close();
  });
});

describe('history switched off (--history-size 0)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer({ 'history-size': 0 })));
  after(() => server.stop());

  it('still gives positions, keeps no publications, and resets a resume that missed one', async () => {
    const first = await publish(server, 'off', 1);
    const second = await publish(server, 'off', 2);
    assert.equal(parse(second.position).offset, parse(first.position).offset + 1);
    assert.deepEqual((await historyOf(server, 'off')).publications, []);

    const current = await SseReader.open(`${server.url}/events/off`, { 'Last-Event-ID': second.position });
    await waitForSubscribers(server, 'off', 1);
    await publish(server, 'off', 3);
    await current.waitFor((e) => e.data === '3');
    assert.equal(current.events.filter((e) => e.event === 'reset').length, 0, 'nothing was missed, so nothing to reset');
    current.close();

    const behind = await SseReader.open(`${server.url}/events/off`, { 'Last-Event-ID': first.position });
    const reset = await behind.waitFor((e) => e.event === 'reset');
    assert.equal(JSON.parse(reset.data).reason, 'history expired');
    behind.close();
  });
});
