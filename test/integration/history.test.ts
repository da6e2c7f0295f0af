import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MemoryBroker } from '../../src/broker/memory.js';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { SseReader } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

describe('positions and history (SPEC §5)', () => {
  let server: TestServer;
  let broker: MemoryBroker;
  before(async () => {
    broker = new MemoryBroker({ size: 3, ttlSeconds: 0.3 });
    server = await startTestServer({ 'history-size': 3, 'history-ttl': 0.3 }, { broker });
  });
  after(() => server.stop());

  it('gives each publication the next offset under one epoch', async () => {
    const a = await publish(server, 'offsets', 'a');
    const b = await publish(server, 'offsets', 'b');
    const [offsetA, epochA] = a.position.split(':');
    const [offsetB, epochB] = b.position.split(':');
    assert.equal(Number(offsetB), Number(offsetA) + 1);
    assert.equal(epochA, epochB);
  });

  it('keeps only the last --history-size publications', async () => {
    for (const n of [1, 2, 3, 4, 5]) await publish(server, 'bounded', n);
    const history = await (await fetch(`${server.url}/api/history/bounded`)).json();
    assert.deepEqual(history.publications.map((p: { data: number }) => p.data), [3, 4, 5]);
  });

  it('tells a reader resuming from before the kept history to reset', async () => {
    const { position } = await publish(server, 'overflow', 1);
    for (const n of [2, 3, 4, 5]) await publish(server, 'overflow', n);
    const reader = await SseReader.open(`${server.url}/events/overflow`, { 'Last-Event-ID': position });
    const reset = await reader.waitFor((e) => e.event === 'reset');
    assert.equal(JSON.parse(reset.data).reason, 'history expired');
    reader.close();
  });

  it('frees a channel history after --history-ttl, and a resume from it then gets a reset', async () => {
    const { position } = await publish(server, 'expiring', 'x');
    await until(() => broker.streamCount === 0, 5000, 'expired streams freed');
    const reader = await SseReader.open(`${server.url}/events/expiring`, { 'Last-Event-ID': position });
    const reset = await reader.waitFor((e) => e.event === 'reset');
    assert.equal(JSON.parse(reset.data).reason, 'epoch changed');
    reader.close();
  });

  it('frees hub channels when their last subscriber leaves', async () => {
    const sockets = await Promise.all(['c1', 'c2', 'c3'].map((room) => TestSocket.open(`${server.wsUrl}?room=${room}`)));
    const reader = await SseReader.open(`${server.url}/events?channel=c1&channel=c4`);
    await waitForSubscribers(server, 'c4', 1);
    assert.ok(server.ctx.hub.channelCount >= 4);
    for (const socket of sockets) socket.close();
    reader.close();
    await until(() => server.ctx.hub.channelCount === 0, 5000, 'all hub channels freed');
    assert.equal(broker.presence.channelCount, 0);
  });
});
