import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { SseReader } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

const PING_INTERVAL_SECONDS = 0.2;

describe('heartbeats (SPEC §3c)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer({ 'ping-interval': PING_INTERVAL_SECONDS })));
  after(() => server.stop());

  /** Waits until nothing from earlier tests is left in the sweep, so counts below are exact. */
  async function quiet(): Promise<void> {
    await until(() => server.ctx.heartbeat.size === 0 && server.ctx.websockets.size === 0, 5000, 'earlier connections gone');
  }

  it('terminates a room member that answers nothing within two intervals, and frees its subscription', async () => {
    await quiet();
    const silent = await TestSocket.open(`${server.wsUrl}?room=hb`, undefined, { autoPong: false });
    let pings = 0;
    silent.ws.on('ping', () => pings++);
    await waitForSubscribers(server, 'hb', 1);
    const { code } = await silent.closed;
    assert.equal(code, 1006, 'terminated without a closing handshake');
    assert.ok(pings >= 1, 'it was pinged before it was given up on');
    await until(() => server.ctx.hub.subscriberCount('hb') === 0);
    assert.equal(server.ctx.heartbeat.size, 0, 'left the heartbeat sweep');
    assert.equal(server.ctx.websockets.size, 0);
    assert.equal(server.ctx.hub.channelCount, 0);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /^herald_closes_total\{code="no_pong"\} [1-9]/m, 'the reaping is counted');
  });

  it('terminates a herald.v1 client that answers neither ping frames nor ping messages, and frees its subscriptions', async () => {
    await quiet();
    const silent = await TestSocket.open(server.wsUrl, 'herald.v1', { autoPong: false });
    silent.send({ id: 1, type: 'subscribe', channel: 'hb-v1-a' });
    silent.send({ id: 2, type: 'subscribe', channel: 'hb-v1-b' });
    await silent.next('subscribed', 0);
    await until(() => server.ctx.hub.subscriberCount('hb-v1-b') === 1);
    assert.equal((await silent.closed).code, 1006);
    await until(() => server.ctx.hub.channelCount === 0);
    assert.equal(server.ctx.heartbeat.size, 0);
  });

  it('keeps a peer that answers ping frames across many intervals, and it keeps receiving', async () => {
    const alive = await TestSocket.open(`${server.wsUrl}?room=hb-alive`);
    let pings = 0;
    alive.ws.on('ping', () => pings++);
    await waitForSubscribers(server, 'hb-alive', 1);
    await until(() => pings >= 6, 10_000, 'six pings');
    assert.equal(alive.ws.readyState, WebSocket.OPEN);
    await publish(server, 'hb-alive', 'still here');
    assert.equal(await alive.waitFor(() => true), '"still here"');
    alive.close();
  });

  it('sends herald.v1 clients a {"type":"ping"} message every interval and announces the interval on connect', async () => {
    const client = await TestSocket.open(server.wsUrl, 'herald.v1');
    const connected = await client.next<{ pingInterval: number }>('connected');
    assert.equal(connected.pingInterval, PING_INTERVAL_SECONDS);
    await until(() => client.messages.filter((m) => m === '{"type":"ping"}').length >= 3, 10_000, 'three ping messages');
    assert.equal(client.ws.readyState, WebSocket.OPEN);
    client.close();
  });

  it('keeps a herald.v1 client that answers only with {"type":"pong"} messages', async () => {
    const client = await TestSocket.open(server.wsUrl, 'herald.v1', { autoPong: false });
    let answered = 0;
    client.ws.on('message', (data) => {
      if (String(data) === '{"type":"ping"}') {
        client.send({ type: 'pong' });
        answered++;
      }
    });
    await until(() => answered >= 6, 10_000, 'six pongs');
    assert.equal(client.ws.readyState, WebSocket.OPEN);
    assert.equal(client.messages.filter((m) => m.includes('"error"')).length, 0, 'a pong gets no answer');
    client.close();
  });

  it('counts an SSE stream in the sweep only while it is open', async () => {
    await quiet();
    const reader = await SseReader.open(`${server.url}/events/hb-sse`);
    await reader.waitUntil(() => reader.comments >= 2);
    assert.equal(server.ctx.heartbeat.size, 1);
    reader.close();
    await until(() => server.ctx.heartbeat.size === 0 && server.ctx.streams.size === 0);
  });
});
