import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { jwtVerify } from 'jose';
import { HeraldError } from '../../src/core/errors.js';
import { SECRET, signToken, sseStatus, upgradeStatus } from '../helpers/auth.js';
import { metricValue } from '../helpers/metrics.js';
import { ProtocolSocket } from '../helpers/protocol.js';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { SseReader } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

const token = (sub: string, claims: Record<string, unknown> = {}, exp?: number) => signToken({ sub, ...claims }, exp === undefined ? {} : { exp });

/** A room member that authenticated on the upgrade. */
async function roomMember(server: TestServer, room: string, sub = 'watcher'): Promise<TestSocket> {
  return TestSocket.open(`${server.wsUrl}?room=${room}&token=${await token(sub)}`);
}

/** A herald.v1 peer that authenticated on the upgrade and subscribed to `channels`. */
async function protocolPeer(server: TestServer, sub: string, claims: Record<string, unknown> = {}, exp?: number): Promise<ProtocolSocket> {
  return ProtocolSocket.open(server.wsUrl, `?token=${await token(sub, claims, exp)}`);
}

describe('first-message auth (SPEC §6)', () => {
  let server: TestServer;
  let quick: TestServer;
  before(async () => {
    [server, quick] = await Promise.all([startTestServer({ 'jwt-secret': SECRET }), startTestServer({ 'jwt-secret': SECRET, 'auth-timeout': 0.3 })]);
  });
  after(() => Promise.all([server.stop(), quick.stop()]));

  it('herald.v1: answers auth with authed and the user, then commands work', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    assert.equal(peer.frames[0]!.user, undefined);
    assert.deepEqual(await peer.command({ id: 7, type: 'auth', token: await token('alice') }), { id: 7, type: 'authed', user: 'alice' });
    assert.equal((await peer.command({ type: 'subscribe', channel: 'fm:proto' })).type, 'subscribed');
    await publish(server, 'fm:proto', { n: 1 });
    assert.deepEqual((await peer.next('message')).data, { n: 1 });
    assert.equal((await peer.command({ type: 'publish', channel: 'fm:proto', data: 2 })).type, 'published');
    const presence = await peer.command({ type: 'presence', channel: 'fm:proto' });
    assert.deepEqual(presence.clients, [{ client: peer.frames[0]!.client, user: 'alice' }]);
    peer.close();
  });

  it('room mode: answers {"type":"auth","token"} with authed, then joins the room', async () => {
    const member = await TestSocket.open(`${server.wsUrl}?room=fm-room`);
    const other = await roomMember(server, 'fm-room');
    member.send({ type: 'auth', token: await token('alice') });
    assert.deepEqual(JSON.parse(await member.waitFor(() => true)), { type: 'authed', user: 'alice' });
    await waitForSubscribers(server, 'fm-room', 2);
    other.send('{"hello":"alice"}');
    assert.equal(await member.waitFor((t) => t.includes('hello')), '{"hello":"alice"}');
    member.send('{"hello":"other"}');
    assert.equal(await other.waitFor(() => true), '{"hello":"other"}');
    // The auth message itself never reached the room.
    assert.deepEqual(other.messages, ['{"hello":"other"}']);
    member.close();
    other.close();
  });

  it('closes a silent connection 4408 after --auth-timeout, in both modes', async () => {
    const before4408 = await metricValue(quick, 'herald_closes_total', { code: '4408' });
    const started = Date.now();
    const [room, protocol, chatty] = await Promise.all([TestSocket.open(`${quick.wsUrl}?room=silent`), TestSocket.open(quick.wsUrl, 'herald.v1'), TestSocket.open(quick.wsUrl, 'herald.v1')]);
    // Commands other than auth do not count as authenticating.
    chatty.send({ id: 1, type: 'presence', channel: 'silent' });
    const closes = await Promise.all([room.closed, protocol.closed, chatty.closed]);
    assert.deepEqual(closes.map((c) => c.code), [4408, 4408, 4408]);
    assert.ok(Date.now() - started < 3000, `closed after ${Date.now() - started} ms`);
    assert.equal(await metricValue(quick, 'herald_closes_total', { code: '4408' }), before4408 + 3);
    await until(() => quick.ctx.websockets.size === 0 && quick.ctx.deadlines.size === 0, 2000, 'auth deadlines released');
  });

  it('an authenticated connection outlives the auth timeout', async () => {
    const peer = await ProtocolSocket.open(quick.wsUrl);
    const silent = await TestSocket.open(quick.wsUrl, 'herald.v1');
    await peer.command({ type: 'auth', token: await token('alice') });
    const room = await TestSocket.open(`${quick.wsUrl}?room=late&token=${await token('bob')}`);
    // The silent socket opened after the peer, so once it is closed the peer's deadline has passed too.
    assert.equal((await silent.closed).code, 4408);
    assert.equal((await peer.command({ type: 'presence', channel: 'late' })).type, 'presence');
    assert.equal(room.closeCode, undefined);
    peer.close();
    room.close();
  });

  it('closes 4401 for a bad first-message token, in both modes, and publishes nothing', async () => {
    const other = await roomMember(server, 'fm-bad');
    const [proto, room, notAuth] = await Promise.all([TestSocket.open(server.wsUrl, 'herald.v1'), TestSocket.open(`${server.wsUrl}?room=fm-bad`), TestSocket.open(`${server.wsUrl}?room=fm-bad`)]);
    proto.send({ id: 3, type: 'auth', token: await signToken({ sub: 'x' }, {}, new TextEncoder().encode('wrong')) });
    room.send({ type: 'auth', token: await token('x', {}, -60) });
    notAuth.send({ text: 'not an auth message' });
    assert.equal((await proto.closed).code, 4401);
    const answer = JSON.parse(proto.messages.at(-1)!);
    assert.deepEqual([answer.id, answer.type, answer.code], [3, 'error', 'unauthorized']);
    assert.equal((await room.closed).code, 4401);
    assert.equal((await notAuth.closed).code, 4401);
    other.send('"marker"');
    await publish(server, 'fm-bad', 'marker');
    assert.equal(await other.waitFor(() => true), '"marker"');
    assert.deepEqual(other.messages, ['"marker"']);
    other.close();
  });

  it('answers commands before auth with unauthorized and does not execute them', async () => {
    const watcher = await protocolPeer(server, 'watcher');
    await watcher.command({ type: 'subscribe', channel: 'fm:early' });
    const early = await ProtocolSocket.open(server.wsUrl);
    for (const command of [
      { type: 'subscribe', channel: 'fm:early' },
      { type: 'publish', channel: 'fm:early', data: 'sneaked in' },
      { type: 'history', channel: 'fm:early' },
      { type: 'presence', channel: 'fm:early' },
      { type: 'unsubscribe', channel: 'fm:early' },
    ]) {
      const answer = await early.command(command);
      assert.deepEqual([answer.type, answer.code], ['error', 'unauthorized'], command.type);
    }
    assert.equal(server.ctx.hub.subscriberCount('fm:early'), 1);
    await publish(server, 'fm:early', 'after');
    assert.deepEqual((await watcher.next('message')).data, 'after');
    assert.deepEqual(watcher.messagesIn('fm:early').map((m) => m.data), ['after']);
    assert.equal(early.messagesIn('fm:early').length, 0);
    const history = await fetch(`${server.url}/api/history/fm:early`).then((r) => r.json() as Promise<{ publications: unknown[] }>);
    assert.equal(history.publications.length, 1);
    watcher.close();
    early.close();
  });
});

describe('channels / publish claims (SPEC §6)', () => {
  let server: TestServer;
  // May read chat:* and news and the literal "a.b"; may publish only to chat:public-*.
  const claims = { channels: ['chat:*', 'news', 'a.b'], publish: ['chat:public-*'] };
  before(async () => (server = await startTestServer({ 'jwt-secret': SECRET })));
  after(() => server.stop());

  it('herald.v1 subscribe: allowed by a pattern, else forbidden, and the connection stays', async () => {
    const peer = await protocolPeer(server, 'carol', claims);
    for (const channel of ['chat:x', 'chat:', 'news', 'a.b']) assert.equal((await peer.command({ type: 'subscribe', channel })).type, 'subscribed', channel);
    for (const channel of ['secret', 'chatx', 'xchat:1', 'news2', 'a-b', 'aXb', 'chat']) {
      const answer = await peer.command({ type: 'subscribe', channel });
      assert.deepEqual([answer.type, answer.code], ['error', 'forbidden'], channel);
    }
    assert.equal(server.ctx.hub.subscriberCount('secret'), 0);
    assert.equal((await peer.command({ type: 'presence', channel: 'news' })).type, 'presence');
    peer.close();
  });

  it('herald.v1 publish: only to the publish patterns; a refused publish reaches nobody', async () => {
    const peer = await protocolPeer(server, 'carol', claims);
    const watcher = await protocolPeer(server, 'watcher');
    await watcher.command({ type: 'subscribe', channel: 'chat:x' });
    await watcher.command({ type: 'subscribe', channel: 'chat:public-1' });
    for (const channel of ['chat:x', 'news', 'secret']) {
      const answer = await peer.command({ type: 'publish', channel, data: 'nope' });
      assert.deepEqual([answer.type, answer.code], ['error', 'forbidden'], channel);
    }
    assert.equal((await peer.command({ type: 'publish', channel: 'chat:public-1', data: 'yes' })).type, 'published');
    await publish(server, 'chat:x', 'marker');
    await watcher.next('message', (m) => m.data === 'marker');
    assert.deepEqual(watcher.frames.filter((f) => f.type === 'message').map((f) => f.data), ['yes', 'marker']);
    peer.close();
    watcher.close();
  });

  it('herald.v1 history and presence follow the channels claim', async () => {
    const peer = await protocolPeer(server, 'carol', claims);
    for (const type of ['history', 'presence']) {
      const refused = await peer.command({ type, channel: 'secret' });
      assert.deepEqual([refused.type, refused.code], ['error', 'forbidden'], type);
      assert.equal((await peer.command({ type, channel: 'chat:x' })).type, type);
    }
    peer.close();
  });

  it('publish defaults to the channels claim, and an empty list allows nothing', async () => {
    const readerWriter = await protocolPeer(server, 'dan', { channels: ['team:*'] });
    assert.equal((await readerWriter.command({ type: 'publish', channel: 'team:a', data: 1 })).type, 'published');
    assert.equal((await readerWriter.command({ type: 'publish', channel: 'other', data: 1 })).code, 'forbidden');
    const nobody = await protocolPeer(server, 'erin', { channels: [] });
    assert.equal((await nobody.command({ type: 'subscribe', channel: 'team:a' })).code, 'forbidden');
    assert.equal((await nobody.command({ type: 'publish', channel: 'team:a', data: 1 })).code, 'forbidden');
    const everything = await protocolPeer(server, 'frank');
    assert.equal((await everything.command({ type: 'subscribe', channel: 'anything' })).type, 'subscribed');
    for (const p of [readerWriter, nobody, everything]) p.close();
  });

  it('room mode: joining a forbidden room closes 4403, on the upgrade token and after a first-message auth', async () => {
    const direct = await TestSocket.open(`${server.wsUrl}?room=secret&token=${await token('carol', claims)}`);
    assert.equal((await direct.closed).code, 4403);
    const later = await TestSocket.open(`${server.wsUrl}?room=secret`);
    later.send({ type: 'auth', token: await token('carol', claims) });
    assert.equal((await later.closed).code, 4403);
    assert.equal(server.ctx.hub.subscriberCount('secret'), 0);
  });

  it('room mode: publishing where only reading is allowed closes 4403 and reaches nobody', async () => {
    const reader = await TestSocket.open(`${server.wsUrl}?room=chat:x&token=${await token('carol', claims)}`);
    const other = await roomMember(server, 'chat:x');
    await waitForSubscribers(server, 'chat:x', 2);
    reader.send('{"forbidden":true}');
    assert.equal((await reader.closed).code, 4403);
    const writer = await TestSocket.open(`${server.wsUrl}?room=chat:public-2&token=${await token('carol', claims)}`);
    const listener = await roomMember(server, 'chat:public-2');
    await waitForSubscribers(server, 'chat:public-2', 2);
    writer.send('{"allowed":true}');
    assert.equal(await listener.waitFor(() => true), '{"allowed":true}');
    await publish(server, 'chat:x', 'marker');
    assert.deepEqual([await other.waitFor(() => true), other.messages.length], ['"marker"', 1]);
    for (const s of [other, writer, listener]) s.close();
  });

  it('SSE: a forbidden channel is refused 403, also inside a multiplexed stream', async () => {
    const t = await token('carol', claims);
    assert.equal((await sseStatus(`${server.url}/events/secret?token=${t}`)).status, 403);
    const mixed = await sseStatus(`${server.url}/events?channel=chat:x&channel=secret`, { Authorization: `Bearer ${t}` });
    assert.equal(mixed.status, 403);
    assert.equal(JSON.parse(mixed.body).error.code, 'forbidden');
    assert.equal(server.ctx.hub.subscriberCount('secret'), 0);
    assert.equal((await sseStatus(`${server.url}/events?channel=chat:x&channel=news`, { Authorization: `Bearer ${t}` })).status, 200);
  });
});

describe('token expiry on a live connection (SPEC §6, TESTPLAN T07)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer({ 'jwt-secret': SECRET })));
  after(() => server.stop());

  it('closes 4401 whoever does not refresh; a client that refreshes stays and keeps receiving', async () => {
    // `exp` has one-second resolution: +3 s is between 2 and 3 s from now.
    const refresher = await protocolPeer(server, 'alice', {}, 3);
    const lazy = await protocolPeer(server, 'bob', {}, 3);
    const firstMessage = await ProtocolSocket.open(server.wsUrl);
    await firstMessage.command({ type: 'auth', token: await token('carl', {}, 3) });
    const room = await TestSocket.open(`${server.wsUrl}?room=expiry&token=${await token('dora', {}, 3)}`);
    const roomRefresher = await TestSocket.open(`${server.wsUrl}?room=expiry&token=${await token('ed', {}, 3)}`);
    for (const peer of [refresher, lazy, firstMessage]) await peer.command({ type: 'subscribe', channel: 'expiry' });
    await waitForSubscribers(server, 'expiry', 5);
    assert.deepEqual(await refresher.command({ type: 'auth', token: await token('alice') }), { id: refresher.frames.at(-1)!.id, type: 'authed', user: 'alice' });
    // Room mode refreshes with the same message as its first-message auth; it is answered, never published.
    const fresh = await token('ed');
    roomRefresher.send({ type: 'auth', token: fresh });
    assert.deepEqual(JSON.parse(await roomRefresher.waitFor(() => true)), { type: 'authed', user: 'ed' });

    const closes = await Promise.all([lazy.socket.closed, firstMessage.socket.closed, room.closed]);
    assert.deepEqual(closes.map((c) => c.code), [4401, 4401, 4401]);
    await until(() => server.ctx.hub.subscriberCount('expiry') === 2, 2000, 'expired subscriptions released');
    await publish(server, 'expiry', 'after expiry');
    assert.equal((await refresher.next('message', (m) => m.data === 'after expiry')).data, 'after expiry');
    assert.equal(await roomRefresher.waitFor((t) => t.includes('after expiry')), '"after expiry"');
    assert.equal(refresher.socket.closeCode, undefined);
    assert.equal(roomRefresher.closeCode, undefined);
    // Nobody in the room ever saw the refresh, so nobody saw the token.
    for (const peer of [refresher, lazy, firstMessage]) assert.equal(peer.socket.messages.some((m) => m.includes(fresh)), false);
    assert.equal(room.messages.some((m) => m.includes(fresh)), false);
    refresher.close();
    roomRefresher.close();
  });

  it('refuses a refresh for another user, and a bad refresh, without dropping the connection', async () => {
    const peer = await protocolPeer(server, 'alice');
    const other = await peer.command({ type: 'auth', token: await token('mallory') });
    assert.deepEqual([other.type, other.code], ['error', 'forbidden']);
    const bad = await peer.command({ type: 'auth', token: 'not.a.token' });
    assert.deepEqual([bad.type, bad.code], ['error', 'unauthorized']);
    const notString = await peer.command({ type: 'auth', token: 42 });
    assert.deepEqual([notString.type, notString.code], ['error', 'bad_request']);
    await peer.command({ type: 'subscribe', channel: 'still-alice', presence: true });
    const presence = await peer.command({ type: 'presence', channel: 'still-alice' });
    assert.deepEqual((presence.clients as { user: string }[]).map((c) => c.user), ['alice']);
    peer.close();
  });

  it('herald.v1: a refreshed token that no longer permits a subscribed channel closes 4403; one that still permits them all is accepted', async () => {
    const peer = await protocolPeer(server, 'alice', { channels: ['news:*', 'chat:*'] });
    await peer.command({ type: 'subscribe', channel: 'news:today' });
    await peer.command({ type: 'subscribe', channel: 'chat:lobby' });
    const same = await peer.command({ type: 'auth', token: await token('alice', { channels: ['news:*', 'chat:lobby'] }) });
    assert.equal(same.type, 'authed');
    const narrowed = await peer.command({ type: 'auth', token: await token('alice', { channels: ['news:*'] }) });
    assert.deepEqual([narrowed.type, narrowed.code], ['error', 'forbidden']);
    assert.equal((await peer.socket.closed).code, 4403);
    await until(() => server.ctx.hub.subscriberCount('chat:lobby') === 0, 2000, 'its subscriptions released');
  });

  it('room mode: a refresh for another user closes 4403, a bad refresh 4401, and neither reaches the room', async () => {
    const listener = await roomMember(server, 'refresh-room', 'listener');
    const [mallory, garbled] = await Promise.all([roomMember(server, 'refresh-room', 'alice'), roomMember(server, 'refresh-room', 'bob')]);
    await waitForSubscribers(server, 'refresh-room', 3);
    const otherUser = await token('mallory');
    mallory.send({ type: 'auth', token: otherUser });
    garbled.send({ type: 'auth', token: 'not.a.token' });
    assert.equal((await mallory.closed).code, 4403);
    assert.equal((await garbled.closed).code, 4401);
    await publish(server, 'refresh-room', 'marker');
    assert.deepEqual([await listener.waitFor(() => true), listener.messages.length], ['"marker"', 1]);
    listener.close();
  });

  it('SSE: an expiring token gets `event: disconnect` with 4401, then the stream ends', async () => {
    const reader = await SseReader.open(`${server.url}/events/sse-expiry`, { Authorization: `Bearer ${await token('alice', {}, 3)}` });
    assert.equal(reader.status, 200);
    await reader.waitFor((e) => e.event === 'connected');
    await waitForSubscribers(server, 'sse-expiry', 1);
    await publish(server, 'sse-expiry', 'before');
    await reader.waitFor((e) => e.data === '"before"');
    const disconnect = await reader.waitFor((e) => e.event === 'disconnect', 0, 5000);
    assert.equal(JSON.parse(disconnect.data).code, 4401);
    await reader.waitUntil(() => reader.ended, 3000);
    assert.equal(server.ctx.hub.subscriberCount('sse-expiry'), 0);
  });
});

describe('herald token (SPEC §1)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer({ 'jwt-secret': SECRET })));
  after(() => server.stop());

  it('mints a token that verifies with the secret and carries sub, channels, publish and the ttl', async () => {
    const result = spawnSync(process.execPath, ['bin/herald', 'token', '--jwt-secret', SECRET, '--sub', 'dave', '--channels', 'chat:*,news', '--publish', 'chat:*', '--ttl', '120'], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    const minted = result.stdout.trim();
    const { payload, protectedHeader } = await jwtVerify(minted, new TextEncoder().encode(SECRET), { algorithms: ['HS256'] });
    assert.equal(protectedHeader.alg, 'HS256');
    assert.equal(payload.sub, 'dave');
    assert.deepEqual(payload.channels, ['chat:*', 'news']);
    assert.deepEqual(payload.publish, ['chat:*']);
    assert.equal(payload.exp! - payload.iat!, 120);
    await assert.rejects(jwtVerify(minted, new TextEncoder().encode('another secret')));

    const peer = await ProtocolSocket.open(server.wsUrl, `?token=${minted}`);
    assert.equal(peer.frames[0]!.user, 'dave');
    assert.equal((await peer.command({ type: 'subscribe', channel: 'news' })).type, 'subscribed');
    assert.equal((await peer.command({ type: 'publish', channel: 'news', data: 1 })).code, 'forbidden');
    assert.equal((await peer.command({ type: 'publish', channel: 'chat:1', data: 1 })).type, 'published');
    peer.close();
    assert.equal(await upgradeStatus(`${server.wsUrl}?room=chat:1&token=${minted}x`), 401);
  });

  it('refuses to mint without a secret or a subject', () => {
    const env = { ...process.env };
    delete env.HERALD_JWT_SECRET;
    const noSecret = spawnSync(process.execPath, ['bin/herald', 'token', '--sub', 'dave'], { encoding: 'utf8', env });
    assert.notEqual(noSecret.status, 0);
    assert.match(noSecret.stderr, /jwt-secret/);
    const noSub = spawnSync(process.execPath, ['bin/herald', 'token', '--jwt-secret', SECRET], { encoding: 'utf8', env });
    assert.notEqual(noSub.status, 0);
    assert.match(noSub.stderr, /sub/);
  });
});

describe('messages queued behind a refused first-message auth (no verification amplification)', () => {
  let server: TestServer;
  let verifications = 0;
  // A slow, always-refusing verifier: everything the client sends meanwhile queues behind the first auth.
  const refusing = {
    required: true,
    async verify(): Promise<never> {
      verifications++;
      await new Promise((resolve) => setTimeout(resolve, 50));
      throw new HeraldError('unauthorized', 'invalid token');
    },
  };
  before(async () => (server = await startTestServer({}, { authenticator: refusing })));
  after(() => server.stop());

  for (const mode of ['room', 'herald.v1'] as const) {
    it(`${mode}: verifies the first token only, then closes 4401 and drops the rest`, async () => {
      verifications = 0;
      const socket = mode === 'room' ? await TestSocket.open(`${server.wsUrl}?room=amp`) : await TestSocket.open(server.wsUrl, 'herald.v1');
      for (let i = 0; i < 200; i++) socket.send({ id: i, type: 'auth', token: `token-${i}` });
      assert.equal((await socket.closed).code, 4401);
      await until(() => server.ctx.websockets.size === 0, 2000, 'connection released');
      assert.equal(verifications, 1);
    });
  }
});
