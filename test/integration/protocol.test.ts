import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { MemoryBroker } from '../../src/broker/memory.js';
import { ProtocolSocket, offsetOf, type Frame } from '../helpers/protocol.js';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

const POSITION = /^\d+:[A-Za-z0-9_-]+$/;
const SECRET = 'protocol-test-secret';

function token(sub: string, claims: Record<string, unknown> = {}, ttl = '1h'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime(ttl).sign(new TextEncoder().encode(SECRET));
}

/** A memory broker that can be declared down, to provoke `unavailable`. */
class SwitchableBroker extends MemoryBroker {
  down = false;
  override unreadyReason(): string | undefined {
    return this.down ? 'test outage' : undefined;
  }
}

describe('herald.v1 commands and pushes (SPEC §3b)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer({ 'ping-interval': 0.2, 'max-message-size': 1024, 'max-subscriptions': 3 })));
  after(() => server.stop());

  it('pushes connected with a client id and pingInterval in seconds as the first frame', async () => {
    const socket = await TestSocket.open(server.wsUrl, 'herald.v1');
    assert.equal(socket.ws.protocol, 'herald.v1');
    const first = JSON.parse(await socket.waitFor(() => true)) as Frame;
    assert.equal(first.type, 'connected');
    assert.equal(typeof first.client, 'string');
    assert.equal(first.pingInterval, 0.2);
    assert.equal('user' in first, false, 'no user without a token');
    socket.close();
  });

  it('answers subscribe with subscribed (same id, channel, position, recovered:false)', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    const answer = await peer.command({ id: 41, type: 'subscribe', channel: 'p:sub' });
    assert.deepEqual(Object.keys(answer).sort(), ['channel', 'id', 'position', 'recovered', 'type']);
    assert.equal(answer.id, 41);
    assert.equal(answer.type, 'subscribed');
    assert.equal(answer.channel, 'p:sub');
    assert.match(String(answer.position), POSITION);
    assert.equal(answer.recovered, false);
    peer.close();
  });

  it('answers publish with published and its position, and delivers a message push to subscribers', async () => {
    const [reader, writer] = await Promise.all([ProtocolSocket.open(server.wsUrl), ProtocolSocket.open(server.wsUrl)]);
    await reader.command({ type: 'subscribe', channel: 'p:pub' });
    const published = await writer.command({ id: 7, type: 'publish', channel: 'p:pub', event: 'chat', data: { text: 'hi', n: [1, 2] } });
    assert.equal(published.id, 7);
    assert.equal(published.type, 'published');
    assert.equal(published.channel, 'p:pub');
    assert.match(String(published.position), POSITION);
    const message = await reader.next('message');
    assert.deepEqual(message, { type: 'message', channel: 'p:pub', event: 'chat', data: { text: 'hi', n: [1, 2] }, position: published.position });
    const plain = await writer.command({ type: 'publish', channel: 'p:pub', data: null });
    const second = await reader.next('message');
    assert.equal('event' in second, false, 'no event key when none was given');
    assert.equal(second.data, null);
    assert.equal(offsetOf(second.position), offsetOf(plain.position));
    assert.equal(offsetOf(plain.position), offsetOf(published.position) + 1, 'offsets grow by one');
    reader.close();
    writer.close();
  });

  it('delivers a publication to its own publisher when it is subscribed (unlike room mode)', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    await peer.command({ type: 'subscribe', channel: 'p:self' });
    const published = await peer.command({ type: 'publish', channel: 'p:self', data: 1 });
    assert.equal((await peer.next('message')).position, published.position);
    peer.close();
  });

  it('answers unsubscribe with unsubscribed and delivers nothing more', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    await peer.command({ type: 'subscribe', channel: 'p:unsub' });
    await publish(server, 'p:unsub', 'before');
    await peer.next('message');
    const answer = await peer.command({ id: 99, type: 'unsubscribe', channel: 'p:unsub' });
    assert.deepEqual(answer, { id: 99, type: 'unsubscribed', channel: 'p:unsub' });
    assert.equal(server.ctx.hub.subscriberCount('p:unsub'), 0);
    await publish(server, 'p:unsub', 'after');
    // A round trip on the same socket after the publication: had it been delivered, it would be here first.
    await peer.command({ type: 'history', channel: 'p:unsub' });
    assert.deepEqual(peer.messagesIn('p:unsub').map((m) => m.data), ['before']);
    peer.close();
  });

  it('answers history with the publications in order, honouring since and limit', async () => {
    const positions: string[] = [];
    for (let i = 1; i <= 5; i++) positions.push((await publish(server, 'p:hist', { i })).position);
    const peer = await ProtocolSocket.open(server.wsUrl);
    const all = await peer.command({ id: 3, type: 'history', channel: 'p:hist' });
    assert.equal(all.id, 3);
    assert.equal(all.type, 'history');
    assert.equal(all.channel, 'p:hist');
    const pubs = all.publications as Frame[];
    assert.deepEqual(pubs.map((p) => p.data), [1, 2, 3, 4, 5].map((i) => ({ i })));
    assert.deepEqual(pubs.map((p) => p.position), positions);
    assert.deepEqual(pubs[0], { channel: 'p:hist', data: { i: 1 }, position: positions[0] });
    const after2 = await peer.command({ type: 'history', channel: 'p:hist', since: positions[1], limit: 2 });
    assert.deepEqual((after2.publications as Frame[]).map((p) => p.data), [{ i: 3 }, { i: 4 }]);
    const none = await peer.command({ type: 'history', channel: 'p:empty' });
    assert.deepEqual(none.publications, []);
    peer.close();
  });

  it('sends join and leave to presence:true subscribers, never about themselves', async () => {
    const watcher = await ProtocolSocket.open(server.wsUrl);
    const quiet = await ProtocolSocket.open(server.wsUrl);
    await watcher.command({ type: 'subscribe', channel: 'p:pres', presence: true });
    await quiet.command({ type: 'subscribe', channel: 'p:pres' });
    const visitor = await TestSocket.open(server.wsUrl, 'herald.v1');
    const visitorId = (JSON.parse(await visitor.waitFor(() => true)) as Frame).client;
    visitor.send({ id: 1, type: 'subscribe', channel: 'p:pres' });
    const quietId = (quiet.frames[0] as Frame).client;
    assert.deepEqual(await watcher.next('join', (f) => f.client === quietId), { type: 'join', channel: 'p:pres', client: quietId });
    assert.deepEqual(await watcher.next('join', (f) => f.client === visitorId), { type: 'join', channel: 'p:pres', client: visitorId });
    visitor.close();
    assert.deepEqual(await watcher.next('leave'), { type: 'leave', channel: 'p:pres', client: visitorId });
    const watcherId = (watcher.frames[0] as Frame).client;
    assert.ok(!watcher.frames.some((f) => (f.type === 'join' || f.type === 'leave') && f.client === watcherId), 'no event about itself');
    assert.ok(!quiet.frames.some((f) => f.type === 'join' || f.type === 'leave'), 'presence:false gets no events');
    watcher.close();
    quiet.close();
  });

  it('answers presence with every subscribed client, and GET /api/presence/:channel agrees', async () => {
    const a = await ProtocolSocket.open(server.wsUrl);
    const b = await ProtocolSocket.open(server.wsUrl);
    await a.command({ type: 'subscribe', channel: 'p:who' });
    await b.command({ type: 'subscribe', channel: 'p:who' });
    const ids = [a.frames[0]!.client, b.frames[0]!.client].sort();
    await until(async () => ((await a.command({ type: 'presence', channel: 'p:who' })).clients as Frame[]).length === 2);
    const answer = await a.command({ id: 12, type: 'presence', channel: 'p:who' });
    assert.equal(answer.id, 12);
    assert.equal(answer.type, 'presence');
    assert.equal(answer.channel, 'p:who');
    assert.deepEqual((answer.clients as Frame[]).map((c) => c.client).sort(), ids);
    const http = (await (await fetch(`${server.url}/api/presence/p:who`)).json()) as { clients: { client: string }[] };
    assert.deepEqual(http.clients.map((c) => c.client).sort(), ids);
    b.close();
    await until(async () => ((await (await fetch(`${server.url}/api/presence/p:who`)).json()) as { clients: unknown[] }).clients.length === 1);
    a.close();
  });

  it('sends {"type":"ping"} every interval and keeps a client that answers pong', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    for (let i = 0; i < 4; i++) {
      await peer.next('ping');
      peer.send({ type: 'pong' });
    }
    assert.equal(peer.socket.closeCode, undefined);
    const answer = await peer.command({ type: 'history', channel: 'p:alive' });
    assert.equal(answer.type, 'history');
    assert.ok(!peer.frames.some((f) => f.type === 'error'), 'pong is never answered with an error');
    peer.close();
  });

  it('answers commands sent back to back each with its own id', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    peer.send({ id: 1, type: 'subscribe', channel: 'p:burst' });
    peer.send({ id: 2, type: 'publish', channel: 'p:burst', data: 'x' });
    peer.send({ id: 3, type: 'history', channel: 'p:burst' });
    peer.send({ id: 4, type: 'presence', channel: 'p:burst' });
    peer.send({ id: 5, type: 'unsubscribe', channel: 'nope' });
    const byId = new Map<number, Frame>();
    await until(() => {
      for (const f of peer.frames) if (typeof f.id === 'number') byId.set(f.id, f);
      return byId.size === 5;
    });
    assert.deepEqual([1, 2, 3, 4, 5].map((id) => byId.get(id)!.type), ['subscribed', 'published', 'history', 'presence', 'error']);
    peer.close();
  });

  it('answers an unsubscribe sent right behind its subscribe after the subscribe, leaving nothing subscribed', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    for (let round = 0; round < 20; round++) {
      peer.send({ id: 1000 + 2 * round, type: 'subscribe', channel: 'p:flap', since: round % 2 ? 'garbage' : undefined });
      peer.send({ id: 1001 + 2 * round, type: 'unsubscribe', channel: 'p:flap' });
      const answer = await peer.next('unsubscribed');
      assert.equal(answer.id, 1001 + 2 * round);
      const subscribedAt = peer.frames.findIndex((f) => f.id === 1000 + 2 * round);
      const unsubscribedAt = peer.frames.findIndex((f) => f.id === 1001 + 2 * round);
      assert.ok(subscribedAt >= 0 && subscribedAt < unsubscribedAt, 'subscribed is answered first');
    }
    assert.equal(server.ctx.hub.subscriberCount('p:flap'), 0);
    peer.close();
  });
});

describe('herald.v1 refusals: error codes, ids and close codes (SPEC §3b)', () => {
  let server: TestServer;
  const broker = new SwitchableBroker({ size: 10, ttlSeconds: 60 });
  before(async () => (server = await startTestServer({ 'max-message-size': 1024, 'max-subscriptions': 3 }, { broker })));
  after(() => server.stop());

  const refusals: [string, Record<string, unknown>, string][] = [
    ['an unknown command type', { type: 'dance' }, 'bad_request'],
    ['a subscribe to a bad channel name', { type: 'subscribe', channel: 'bad channel!' }, 'bad_request'],
    ['a subscribe without a channel', { type: 'subscribe' }, 'bad_request'],
    ['a channel name over 255 bytes', { type: 'subscribe', channel: 'x'.repeat(256) }, 'bad_request'],
    ['a publish to a bad channel name', { type: 'publish', channel: 'a b', data: 1 }, 'bad_request'],
    ['a publish without data', { type: 'publish', channel: 'ok' }, 'bad_request'],
    ['a publish with a control character in its event', { type: 'publish', channel: 'ok', event: 'a\nb', data: 1 }, 'bad_request'],
    ['a history with a malformed since', { type: 'history', channel: 'ok', since: 'not-a-position' }, 'bad_request'],
    ['a history with a negative limit', { type: 'history', channel: 'ok', limit: -1 }, 'bad_request'],
    ['a presence of a bad channel name', { type: 'presence', channel: '' }, 'bad_request'],
    ['a subscribe with a non-boolean presence', { type: 'subscribe', channel: 'ok', presence: 'yes' }, 'bad_request'],
    ['an unsubscribe from a channel not subscribed', { type: 'unsubscribe', channel: 'never' }, 'not_found'],
    ['an unsubscribe with a bad channel name', { type: 'unsubscribe', channel: '#' }, 'bad_request'],
    ['a publish whose data exceeds --max-message-size', { type: 'publish', channel: 'ok', data: 'x'.repeat(1100) }, 'too_large'],
  ];
  for (const [what, body, code] of refusals) {
    it(`answers ${what} with error ${code}, carrying the id, and keeps the connection`, async () => {
      const peer = await ProtocolSocket.open(server.wsUrl);
      const answer = await peer.command({ id: 77, ...body });
      assert.equal(answer.type, 'error');
      assert.equal(answer.id, 77);
      assert.equal(answer.code, code);
      assert.equal(typeof answer.message, 'string');
      assert.equal((await peer.command({ type: 'history', channel: 'ok' })).type, 'history', 'still serving commands');
      peer.close();
    });
  }

  const idless: [string, unknown][] = [
    ['a command without an id', { type: 'history', channel: 'ok' }],
    ['a command with a string id', { id: '1', type: 'history', channel: 'ok' }],
    ['a command with a fractional id', { id: 1.5, type: 'history', channel: 'ok' }],
    ['a JSON array', [1, 2]],
    ['a JSON number', 42],
    ['JSON null', null],
  ];
  for (const [what, frame] of idless) {
    it(`answers ${what} with error bad_request without an id`, async () => {
      const peer = await ProtocolSocket.open(server.wsUrl);
      peer.send(JSON.stringify(frame));
      const answer = await peer.next('error');
      assert.equal(answer.code, 'bad_request');
      assert.equal('id' in answer, false);
      peer.close();
    });
  }

  it('refuses a second subscribe to the same channel with bad_request and delivers once', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    peer.send({ id: 1, type: 'subscribe', channel: 'dup' });
    peer.send({ id: 2, type: 'subscribe', channel: 'dup' });
    await until(() => peer.frames.filter((f) => f.id === 1 || f.id === 2).length >= 2);
    const answers = peer.frames.filter((f) => f.id === 1 || f.id === 2);
    assert.deepEqual(answers.map((f) => f.type).sort(), ['error', 'subscribed']);
    assert.equal(answers.find((f) => f.type === 'error')!.code, 'bad_request');
    await publish(server, 'dup', 'once');
    await peer.command({ type: 'history', channel: 'dup' });
    await peer.waitForMessages('dup', 1);
    await peer.command({ type: 'history', channel: 'dup' });
    assert.equal(peer.messagesIn('dup').length, 1);
    peer.close();
  });

  it('refuses a subscribe over --max-subscriptions with bad_request, counting subscribes in flight', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    for (let i = 1; i <= 4; i++) peer.send({ id: i, type: 'subscribe', channel: `lim:${i}` });
    await until(() => peer.frames.filter((f) => typeof f.id === 'number').length === 4);
    const fourth = peer.frames.find((f) => f.id === 4)!;
    assert.equal(fourth.type, 'error');
    assert.equal(fourth.code, 'bad_request');
    assert.deepEqual(peer.frames.filter((f) => f.type === 'subscribed').map((f) => f.id), [1, 2, 3]);
    peer.close();
  });

  it('answers unavailable while the broker is down, and serves again when it is back', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    broker.down = true;
    try {
      for (const body of [{ type: 'publish', channel: 'ok', data: 1 }, { type: 'subscribe', channel: 'ok' }, { type: 'history', channel: 'ok' }]) {
        const answer = await peer.command(body);
        assert.equal(answer.type, 'error');
        assert.equal(answer.code, 'unavailable', `${body.type} refused`);
      }
    } finally {
      broker.down = false;
    }
    assert.equal((await peer.command({ type: 'publish', channel: 'ok', data: 1 })).type, 'published');
    peer.close();
  });

  it('closes with 1007 on a frame that is not JSON, leaving other clients served', async () => {
    const bystander = await ProtocolSocket.open(server.wsUrl);
    await bystander.command({ type: 'subscribe', channel: 'by' });
    const peer = await ProtocolSocket.open(server.wsUrl);
    peer.send('{"id":1,"type":');
    assert.equal((await peer.socket.closed).code, 1007);
    await publish(server, 'by', 'still here');
    assert.equal((await bystander.next('message')).data, 'still here');
    bystander.close();
  });

  it('closes with 1003 on a binary frame', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    peer.socket.ws.send(Buffer.from('{"id":1,"type":"history","channel":"ok"}'), { binary: true });
    assert.equal((await peer.socket.closed).code, 1003);
  });

  it('closes with 1009 on a frame beyond --max-message-size plus the command envelope', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    peer.send({ id: 1, type: 'publish', channel: 'ok', data: 'x'.repeat(1024 + 4096) });
    assert.equal((await peer.socket.closed).code, 1009);
  });
});

describe('herald.v1 with token auth (SPEC §3b, §6)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer({ 'jwt-secret': SECRET, 'message-rate': 5, 'message-burst': 5 })));
  after(() => server.stop());

  it('answers auth with authed and the user, and names users in presence, join and leave', async () => {
    const alice = await ProtocolSocket.open(server.wsUrl);
    const authed = await alice.command({ id: 5, type: 'auth', token: await token('alice') });
    assert.deepEqual(authed, { id: 5, type: 'authed', user: 'alice' });
    await alice.command({ type: 'subscribe', channel: 'room', presence: true });
    const bob = await ProtocolSocket.open(server.wsUrl, `?token=${await token('bob')}`);
    assert.equal(bob.frames[0]!.user, 'bob', 'connected names the user of an upgrade token');
    await bob.command({ type: 'subscribe', channel: 'room' });
    const join = await alice.next('join');
    assert.deepEqual(join, { type: 'join', channel: 'room', client: bob.frames[0]!.client, user: 'bob' });
    const presence = await alice.command({ type: 'presence', channel: 'room' });
    assert.deepEqual((presence.clients as Frame[]).map((c) => c.user).sort(), ['alice', 'bob']);
    const http = (await (await fetch(`${server.url}/api/presence/room`)).json()) as { clients: Frame[] };
    assert.deepEqual(http.clients.map((c) => c.user).sort(), ['alice', 'bob']);
    bob.close();
    assert.equal((await alice.next('leave')).user, 'bob');
    alice.close();
  });

  it('answers a command before auth with unauthorized', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    const answer = await peer.command({ id: 9, type: 'subscribe', channel: 'room' });
    assert.deepEqual([answer.id, answer.type, answer.code], [9, 'error', 'unauthorized']);
    peer.close();
  });

  it('runs commands sent right behind the first auth once it is verified, instead of refusing them', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    peer.send({ id: 1, type: 'auth', token: await token('carol') });
    peer.send({ id: 2, type: 'subscribe', channel: 'room' });
    peer.send({ id: 3, type: 'publish', channel: 'room', data: 'hello' });
    await until(() => peer.frames.filter((f) => typeof f.id === 'number').length >= 3);
    assert.deepEqual(peer.frames.filter((f) => typeof f.id === 'number').slice(0, 3).map((f) => f.type), ['authed', 'subscribed', 'published']);
    peer.close();
  });

  it('answers a bad first token with unauthorized, then closes 4401', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl);
    peer.send({ id: 1, type: 'auth', token: 'not.a.jwt' });
    const answer = await peer.next('error');
    assert.deepEqual([answer.id, answer.code], [1, 'unauthorized']);
    assert.equal((await peer.socket.closed).code, 4401);
  });

  it('answers forbidden for a channel outside the token, and keeps the connection', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl, `?token=${await token('dave', { channels: ['news:*'], publish: [] })}`);
    const sub = await peer.command({ type: 'subscribe', channel: 'secret' });
    assert.deepEqual([sub.type, sub.code], ['error', 'forbidden']);
    const pub = await peer.command({ type: 'publish', channel: 'news:1', data: 1 });
    assert.deepEqual([pub.type, pub.code], ['error', 'forbidden']);
    assert.equal((await peer.command({ type: 'subscribe', channel: 'news:1' })).type, 'subscribed');
    peer.close();
  });

  it('answers rate_limited beyond the command rate', async () => {
    const peer = await ProtocolSocket.open(server.wsUrl, `?token=${await token('erin')}`);
    for (let id = 1; id <= 8; id++) peer.send({ id, type: 'presence', channel: 'room' });
    const limited = await peer.next('error', (f) => f.code === 'rate_limited');
    assert.equal(typeof limited.id, 'number');
    peer.close();
  });
});

describe('herald.v1 subscribers in one channel on one node', () => {
  it('gives every subscriber the same publications in the same order', async () => {
    const server = await startTestServer();
    const peers = await Promise.all(Array.from({ length: 5 }, () => ProtocolSocket.open(server.wsUrl)));
    await Promise.all(peers.map((p) => p.command({ type: 'subscribe', channel: 'order' })));
    await waitForSubscribers(server, 'order', 5);
    const publisher = await ProtocolSocket.open(server.wsUrl);
    await Promise.all(Array.from({ length: 50 }, (_, i) => publisher.command({ type: 'publish', channel: 'order', data: i })));
    const streams = await Promise.all(peers.map((p) => p.waitForMessages('order', 50)));
    const reference = streams[0]!.map((m) => m.position);
    for (const stream of streams) assert.deepEqual(stream.map((m) => m.position), reference);
    assert.deepEqual(reference.map(offsetOf), Array.from({ length: 50 }, (_, i) => offsetOf(reference[0]) + i));
    for (const p of [...peers, publisher]) p.close();
    await server.stop();
  });
});
