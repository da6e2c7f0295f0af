import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HeraldClient, type ClientState, type Publication } from '../../client/index.js';
import { ANONYMOUS, type Authenticator } from '../../src/auth/principal.js';
import { MemoryBroker } from '../../src/broker/memory.js';
import { HeraldError } from '../../src/core/errors.js';
import { signToken } from '../helpers/auth.js';
import { GatedBroker, SwitchableBroker } from '../helpers/broker-doubles.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

const fastReconnect = { base: 50, cap: 400, stableAfter: 60_000 };

function nextState(client: HeraldClient, wanted: ClientState): Promise<void> {
  if (client.state === wanted) return Promise.resolve();
  return new Promise((resolve) => {
    const off = client.on('state', (state) => {
      if (state === wanted) {
        off();
        resolve();
      }
    });
  });
}

describe('herald/client (SPEC §8)', () => {
  it('subscribes, publishes, reads history and presence', async () => {
    const server = await startTestServer();
    const client = new HeraldClient(server.wsUrl, { reconnect: fastReconnect });
    const received: Publication[] = [];
    const joins: string[] = [];
    const sub = client.subscribe('chat:lobby', { onMessage: (m) => received.push(m), onJoin: (m) => joins.push(m.client), presence: true });
    await sub.ready;
    const position = await sub.publish({ text: 'hi' }, { event: 'chat' });
    assert.match(position, /^1:/);
    await until(() => received.length === 1);
    assert.deepEqual(received[0], { channel: 'chat:lobby', event: 'chat', data: { text: 'hi' }, position });
    const history = await sub.history({ limit: 10 });
    assert.deepEqual(history.map((p) => p.data), [{ text: 'hi' }]);
    const other = new HeraldClient(server.wsUrl);
    other.subscribe('chat:lobby', { onMessage: () => {} });
    await until(() => joins.length === 1);
    const members = await sub.presence();
    assert.equal(members.length, 2);
    assert.ok(members.some((m) => m.client === client.clientId));
    sub.unsubscribe();
    await until(() => server.ctx.hub.subscriberCount('chat:lobby') === 1);
    other.close();
    client.close();
    await server.stop();
  });

  it('rejects ready when the server refuses the subscription, and commands time out', async () => {
    const server = await startTestServer();
    const client = new HeraldClient(server.wsUrl, { commandTimeout: 300 });
    const refused = client.subscribe('bad channel!', { onMessage: () => {} });
    await assert.rejects(refused.ready, (err: Error & { code?: string }) => err.code === 'bad_request');
    await nextState(client, 'connected');
    // A command the server never answers: simulate by stopping the process's reading of this socket.
    const blackhole = await FaultProxy.start(server.port);
    const slow = new HeraldClient(`ws://127.0.0.1:${blackhole.port}/ws`, { commandTimeout: 300 });
    await nextState(slow, 'connected');
    blackhole.setMode('blackhole');
    await assert.rejects(slow.publish('x', 1), (err: Error & { code?: string }) => err.code === 'timeout');
    slow.close();
    client.close();
    await blackhole.close();
    await server.stop();
  });

  it('sees every publication exactly once and in order across a server restart on the same port', async () => {
    const broker = new MemoryBroker({ size: 1000, ttlSeconds: 300 });
    let server: TestServer = await startTestServer({}, { broker });
    const port = server.port;
    const client = new HeraldClient(server.wsUrl, { reconnect: fastReconnect });
    const states: ClientState[] = [];
    client.on('state', (s) => states.push(s));
    const seen: number[] = [];
    const sub = client.subscribe('ticks', { onMessage: (m) => seen.push(m.data as number), onReset: () => assert.fail('no reset expected') });
    await sub.ready;

    // Publish straight into the broker so publishing continues while no server runs.
    let n = 0;
    let publishing = true;
    const publisher = (async () => {
      while (publishing) {
        await broker.publish({ channel: 'ticks', data: String(++n) });
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    })();
    try {
      await until(() => seen.length >= 20);
      await server.stop();
      await until(() => client.state !== 'connected');
      await until(() => n >= seen.length + 30, 5000, 'publications while down');
      server = await startTestServer({ port }, { broker });
      await nextState(client, 'connected');
      const publishedBeforeReconnect = n;
      await until(() => seen.length >= publishedBeforeReconnect + 20, 10_000, 'live again');
    } finally {
      publishing = false;
      await publisher;
    }
    await until(() => seen.length === n, 5000, 'all delivered');
    assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i + 1));
    assert.ok(states.includes('disconnected'));
    client.close();
    await server.stop();
  });

  it('treats a server that stops pinging as dead and reconnects', async () => {
    const server = await startTestServer({ 'ping-interval': 0.1 });
    const proxy = await FaultProxy.start(server.port);
    const client = new HeraldClient(`ws://127.0.0.1:${proxy.port}/ws`, { reconnect: fastReconnect, pingGrace: 150 });
    await nextState(client, 'connected');
    const firstId = client.clientId;
    proxy.setMode('blackhole');
    await nextState(client, 'disconnected');
    proxy.setMode('pass');
    await nextState(client, 'connected');
    assert.notEqual(client.clientId, firstId);
    client.close();
    await proxy.close();
    await server.stop();
  });

  it('gets a fresh token from getToken before every connection', async () => {
    const { SignJWT } = await import('jose');
    const secret = new TextEncoder().encode('client-secret');
    const server = await startTestServer({ 'jwt-secret': 'client-secret' });
    let issued = 0;
    const client = new HeraldClient(server.wsUrl, {
      reconnect: fastReconnect,
      getToken: async () => {
        issued++;
        return new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(`user-${issued}`).setExpirationTime('1h').sign(secret);
      },
    });
    await nextState(client, 'connected');
    assert.equal(client.user, 'user-1');
    for (const ws of [...server.ctx.websockets]) ws.terminate();
    await nextState(client, 'disconnected');
    await nextState(client, 'connected');
    assert.equal(issued, 2);
    assert.equal(client.user, 'user-2');
    client.close();
    await server.stop();
  });

  it('spreads 1,000 reconnecting clients over the backoff window (jitter), and all come back', async () => {
    const broker = new MemoryBroker({ size: 100, ttlSeconds: 300 });
    let server = await startTestServer({ 'log-level': 'warn' }, { broker });
    const port = server.port;
    const clients: HeraldClient[] = [];
    for (let i = 0; i < 1000; i++) {
      const client = new HeraldClient(server.wsUrl, { reconnect: { base: 1000, cap: 1000, stableAfter: 60_000 } });
      client.subscribe('storm', { onMessage: () => {} });
      clients.push(client);
    }
    await waitForSubscribers(server, 'storm', 1000);
    await server.stop();
    await until(() => clients.every((c) => c.state !== 'connected'), 10_000);
    const restartedAt = Date.now();
    server = await startTestServer({ port, 'log-level': 'warn' }, { broker });
    const reconnectedAfter: number[] = [];
    for (const client of clients) {
      if (client.state === 'connected') reconnectedAfter.push(0);
      else void nextState(client, 'connected').then(() => reconnectedAfter.push(Date.now() - restartedAt));
    }
    await until(() => reconnectedAfter.length === 1000, 20_000, 'every client reconnected');
    await waitForSubscribers(server, 'storm', 1000);
    reconnectedAfter.sort((a, b) => a - b);
    const p10 = reconnectedAfter[100]!;
    const p90 = reconnectedAfter[900]!;
    // Full jitter over a 1 s window: the middle 80% of clients arrive spread over hundreds of ms, not at one instant.
    assert.ok(p90 - p10 >= 300, `reconnects bunched: p10 ${p10} ms, p90 ${p90} ms`);
    await publish(server, 'storm', 'after');
    for (const client of clients) client.close();
    await server.stop();
  });
  it('abandons a connection attempt that never opens (connect timeout) and retries', async () => {
    const server = await startTestServer();
    const proxy = await FaultProxy.start(server.port);
    proxy.setMode('blackhole');
    const errors: string[] = [];
    const client = new HeraldClient(`ws://127.0.0.1:${proxy.port}/ws`, { reconnect: fastReconnect, connectTimeout: 200 });
    client.on('error', (err) => errors.push(err.message));
    await until(() => errors.some((e) => e.includes('no connection within 200 ms')), 5000, 'connect timeout');
    proxy.setMode('pass');
    await nextState(client, 'connected');
    client.close();
    await proxy.close();
    await server.stop();
  });

  it('stops for good on 4401 when it has no getToken to get a better token', async () => {
    const server = await startTestServer({ 'jwt-secret': 'client-secret', 'ping-interval': 60 });
    const errors: Array<{ code?: string }> = [];
    const client = new HeraldClient(server.wsUrl, { token: 'not-a-jwt', reconnect: fastReconnect });
    client.on('error', (err) => errors.push(err as { code?: string }));
    await nextState(client, 'closed');
    assert.ok(errors.some((e) => e.code === 'unauthorized'), JSON.stringify(errors));
    await server.stop();
  });

  it('keeps reconnecting while the server cannot reach its token keys (1013), and connects once it can', async () => {
    let verifications = 0;
    const keysBackAfter = 3;
    const authenticator: Authenticator = {
      required: true,
      verify: async () => {
        if (++verifications <= keysBackAfter) throw new HeraldError('unavailable', 'token keys unavailable: the JWKS endpoint cannot be reached');
        return ANONYMOUS;
      },
    };
    const server = await startTestServer({ 'ping-interval': 60 }, { authenticator });
    const errors: Array<{ code?: string }> = [];
    const client = new HeraldClient(server.wsUrl, { token: 'any', reconnect: fastReconnect });
    client.on('error', (err) => errors.push(err as { code?: string }));
    try {
      await nextState(client, 'connected');
      assert.equal(verifications, keysBackAfter + 1);
      assert.ok(errors.some((e) => e.code === 'unavailable'), JSON.stringify(errors));
      assert.ok(!errors.some((e) => e.code === 'unauthorized'), 'never told the token was bad');
    } finally {
      client.close();
      await server.stop();
    }
  });

  it('refreshes the token through getToken before it expires, on the same connection', async () => {
    const server = await startTestServer({ 'jwt-secret': 'test-secret-for-herald-auth-tests-0123456789' });
    let issued = 0;
    // A 3 s token: the client sends a fresh one about a second before exp; the server would close 4401 at exp.
    const firstExpiresAt = Date.now() + 3000;
    const client = new HeraldClient(server.wsUrl, { reconnect: fastReconnect, getToken: () => (issued++, signToken({ sub: 'alice' }, { exp: 3 })) });
    const states: ClientState[] = [];
    client.on('state', (s) => states.push(s));
    await nextState(client, 'connected');
    const firstId = client.clientId;
    await until(() => issued === 2, 5000, 'a refreshed token');
    await until(() => Date.now() > firstExpiresAt + 1500, 5000, 'past the first token');
    assert.equal(client.state, 'connected');
    assert.equal(client.clientId, firstId, 'same connection');
    assert.ok(!states.includes('disconnected'), states.join());
    client.close();
    await server.stop();
  });

  it('reconnects when a subscribe goes unanswered, and the subscription comes up on the new connection', async () => {
    const broker = new GatedBroker();
    const server = await startTestServer({}, { broker });
    const release = broker.hold('slow');
    const states: ClientState[] = [];
    const received: unknown[] = [];
    const client = new HeraldClient(server.wsUrl, { commandTimeout: 300, reconnect: fastReconnect });
    client.on('state', (state) => states.push(state));
    try {
      await nextState(client, 'connected');
      const subscription = client.subscribe('slow', { onMessage: (m) => received.push(m.data) });
      await until(() => states.includes('disconnected'), 3000, 'the unanswered subscribe dropped the connection');
      release();
      await subscription.ready;
      assert.equal(client.state, 'connected');
      await publish(server, 'slow', 1);
      await until(() => received.length === 1, 3000, 'delivery on the new connection');
      assert.deepEqual(received, [1]);
    } finally {
      client.close();
      await server.stop();
    }
  });

  it('retries a subscribe refused as unavailable while the connection stays up', async () => {
    const broker = new (class extends SwitchableBroker {
      refusals = 0;
      override unreadyReason(): string | undefined {
        const reason = super.unreadyReason();
        if (reason !== undefined) this.refusals++;
        return reason;
      }
    })();
    const server = await startTestServer({}, { broker });
    const client = new HeraldClient(server.wsUrl, { reconnect: fastReconnect });
    await nextState(client, 'connected');
    broker.downReason = 'test outage';
    const received: unknown[] = [];
    const sub = client.subscribe('later', { onMessage: (m) => received.push(m.data) });
    await until(() => broker.refusals >= 1, 5000, 'a refused subscribe');
    broker.downReason = undefined;
    await sub.ready;
    await publish(server, 'later', 'after the outage');
    await until(() => received.length === 1);
    client.close();
    await server.stop();
  });
  it('re-subscribes as many channels as --max-subscriptions allows after a reconnect, without being rate-limited', async () => {
    const server = await startTestServer({ 'log-level': 'warn' });
    const client = new HeraldClient(server.wsUrl, { reconnect: fastReconnect });
    const errors: string[] = [];
    client.on('error', (err) => errors.push(err.message));
    const channels = Array.from({ length: server.ctx.settings['max-subscriptions'] }, (_, i) => `many-${i}`);
    await Promise.all(channels.map((channel) => client.subscribe(channel, { onMessage: () => {} }).ready));
    const firstId = client.clientId;
    for (const ws of [...server.ctx.websockets]) ws.terminate();
    await until(() => client.state === 'connected' && client.clientId !== firstId, 5000, 'reconnected');
    await until(() => channels.every((channel) => server.ctx.hub.subscriberCount(channel) === 1), 5000, 'all re-subscribed');
    assert.deepEqual(errors.filter((e) => /rate/.test(e)), []);
    client.close();
    await server.stop();
  });
});
