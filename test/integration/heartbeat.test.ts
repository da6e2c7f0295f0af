import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

describe('heartbeats (SPEC §3c)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer({ 'ping-interval': 0.1 })));
  after(() => server.stop());

  it('closes a peer that answers nothing within two intervals, and frees its subscriptions', async () => {
    const silent = await TestSocket.open(`${server.wsUrl}?room=hb`, undefined, { autoPong: false });
    await waitForSubscribers(server, 'hb', 1);
    const { code } = await silent.closed;
    assert.equal(code, 1006, 'terminated without a closing handshake');
    await until(() => server.ctx.hub.subscriberCount('hb') === 0);
  });

  it('keeps a peer that answers pings across many intervals', async () => {
    const alive = await TestSocket.open(`${server.wsUrl}?room=hb-alive`);
    let pings = 0;
    alive.ws.on('ping', () => pings++);
    await until(() => pings >= 6, 5000, 'six pings');
    assert.equal(alive.ws.readyState, WebSocket.OPEN);
    alive.close();
  });

  it('also sends {"type":"ping"} in protocol mode, and a client answering with pong frames only is kept', async () => {
    const client = await TestSocket.open(server.wsUrl, 'herald.v1');
    await client.next('ping');
    await client.next('ping', client.messages.findIndex((m) => m.includes('"ping"')) + 1);
    assert.equal(client.ws.readyState, WebSocket.OPEN);
    client.close();
  });
});
