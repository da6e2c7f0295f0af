import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { SseReader } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

/** Sends raw bytes and resolves with everything the server answers until it closes. */
function rawExchange(port: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('close', () => resolve(answer));
    socket.on('error', () => {});
    socket.write(bytes);
  });
}

function openRaw(port: number): Promise<Socket> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.on('error', () => {});
  });
}

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const upgrade = (path: string, extra = '') =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

/** A raw socket past a successful upgrade; `bytes` holds everything read after the 101 headers. */
async function upgraded(port: number, path: string): Promise<{ socket: Socket; bytes: () => Buffer }> {
  const socket = await openRaw(port);
  let received = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
  socket.write(upgrade(path));
  await until(() => received.includes('\r\n\r\n'), 5000, '101 answer');
  assert.match(received.toString('latin1'), /^HTTP\/1.1 101 /);
  const headerEnd = received.indexOf('\r\n\r\n') + 4;
  return { socket, bytes: () => received.subarray(headerEnd) };
}

/** A masked client frame (RFC 6455 §5.2); `fin` false for a fragment. */
function clientFrame(opcode: number, payload: Buffer, fin = true, masked = true): Buffer {
  const mask = Buffer.from([1, 2, 3, 4]);
  const length = payload.length;
  const head = length < 126 ? Buffer.from([(fin ? 0x80 : 0) | opcode, (masked ? 0x80 : 0) | length]) : Buffer.from([(fin ? 0x80 : 0) | opcode, (masked ? 0x80 : 0) | 126, length >> 8, length & 0xff]);
  if (!masked) return Buffer.concat([head, payload]);
  return Buffer.concat([head, mask, Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]!))]);
}

/** The value of one series in the node's /metrics, 0 when absent. */
async function metric(server: TestServer, series: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/** The close code of the first server close frame in `bytes` (server frames are unmasked). */
function closeCodeIn(bytes: Buffer): number | undefined {
  const at = bytes.indexOf(0x88);
  if (at < 0 || bytes.length < at + 4) return undefined;
  return bytes.readUInt16BE(at + 2);
}

describe('hardening: handshakes, frames and resets (TESTPLAN §2.1, §2.2)', () => {
  let server: TestServer;
  let bystander: TestSocket;
  let peer: TestSocket;
  let baseline: { websockets: number; heartbeat: number; ips: number };
  before(async () => {
    server = await startTestServer();
    bystander = await TestSocket.open(`${server.wsUrl}?room=bystand`);
    peer = await TestSocket.open(`${server.wsUrl}?room=bystand`);
    await waitForSubscribers(server, 'bystand', 2);
    baseline = { websockets: server.ctx.websockets.size, heartbeat: server.ctx.heartbeat.size, ips: server.ctx.connectionsPerIp.tracked };
  });
  after(async () => {
    bystander.close();
    peer.close();
    await server.stop();
  });

  /** Everything a bad connection held is released again. */
  async function freed(): Promise<void> {
    await until(
      () =>
        server.ctx.websockets.size === baseline.websockets &&
        server.ctx.heartbeat.size === baseline.heartbeat &&
        server.ctx.streams.size === 0 &&
        server.ctx.connectionsPerIp.tracked === baseline.ips &&
        server.ctx.hub.channelCount === 1,
      5000,
      'resources back to baseline',
    );
  }

  it('refuses a wrong Sec-WebSocket-Version with 400 and the versions it speaks', async () => {
    const answer = await rawExchange(server.port, upgrade('/ws?room=x').replace('Version: 13', 'Version: 12'));
    assert.match(answer, /^HTTP\/1.1 400/);
    assert.match(answer, /Sec-WebSocket-Version: 13, 8/i);
  });

  it('refuses a garbage or missing Sec-WebSocket-Key with 400', async () => {
    assert.match(await rawExchange(server.port, upgrade('/ws?room=x').replace(KEY, 'garbage')), /^HTTP\/1.1 400/);
    assert.match(await rawExchange(server.port, upgrade('/ws?room=x').replace(`Sec-WebSocket-Key: ${KEY}\r\n`, '')), /^HTTP\/1.1 400/);
  });

  it('refuses an upgrade with another method than GET', async () => {
    const answer = await rawExchange(server.port, upgrade('/ws?room=x').replace(/^GET/, 'POST'));
    assert.match(answer, /^HTTP\/1.1 4\d\d/);
  });

  it('refuses upgrades on paths other than /ws with 404, and a bad room name with 400', async () => {
    assert.match(await rawExchange(server.port, upgrade('/elsewhere')), /^HTTP\/1.1 404/);
    assert.match(await rawExchange(server.port, upgrade('/ws?room=no%20spaces')), /^HTTP\/1.1 400/);
    assert.match(await rawExchange(server.port, upgrade(`/ws?room=${'r'.repeat(256)}`)), /^HTTP\/1.1 400/);
  });

  it('answers 431 to a header block over the limit, on an upgrade and on an SSE request', async () => {
    const big = `X-Big: ${'a'.repeat(20_000)}\r\n`;
    assert.match(await rawExchange(server.port, upgrade('/ws?room=x', big)), /^HTTP\/1.1 431/);
    assert.match(await rawExchange(server.port, `GET /events/x HTTP/1.1\r\nHost: 127.0.0.1\r\n${big}\r\n`), /^HTTP\/1.1 431/);
  });

  it('answers 400 when Upgrade is pushed past the header-count limit (CVE-2024-37890 shape)', async () => {
    const filler = Array.from({ length: 2000 }, (_, i) => `X-F${i}: 1\r\n`).join('');
    const answer = await rawExchange(server.port, `GET /ws?room=x HTTP/1.1\r\nHost: 127.0.0.1\r\n${filler}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    assert.match(answer, /^HTTP\/1.1 400/);
  });

  it('answers 400 to a huge Sec-WebSocket-Protocol list (CVE-2021-32640 shape)', async () => {
    const answer = await rawExchange(server.port, upgrade('/ws?room=x', `Sec-WebSocket-Protocol: b${' '.repeat(15_000)}x\r\n`));
    assert.match(answer, /^HTTP\/1.1 400/);
  });

  it('closes 1002 on an unmasked client frame', async () => {
    const { socket, bytes } = await upgraded(server.port, '/ws?room=frames');
    const counted = await metric(server, 'herald_closes_total{code="1002"}');
    socket.write(clientFrame(0x1, Buffer.from('{}'), true, false));
    await until(() => closeCodeIn(bytes()) !== undefined);
    assert.equal(closeCodeIn(bytes()), 1002);
    assert.equal(await metric(server, 'herald_closes_total{code="1002"}'), counted + 1, 'the close is counted');
    socket.destroy();
    await freed();
  });

  it('closes 1009 at once on a frame header announcing more than the limit, without waiting for the payload', async () => {
    const { socket, bytes } = await upgraded(server.port, '/ws?room=frames');
    const counted = await metric(server, 'herald_closes_total{code="1009"}');
    socket.write(Buffer.from([0x81, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4])); // 2^32 bytes announced, none sent
    await until(() => closeCodeIn(bytes()) !== undefined);
    assert.equal(closeCodeIn(bytes()), 1009);
    assert.equal(await metric(server, 'herald_closes_total{code="1009"}'), counted + 1, 'the close is counted');
    socket.destroy();
    await freed();
  });

  it('closes 1008 on a message split into more fragments than allowed', async () => {
    const { socket, bytes } = await upgraded(server.port, '/ws?room=frames');
    const fragments = [clientFrame(0x1, Buffer.from('"'), false)];
    for (let i = 0; i < 1100; i++) fragments.push(clientFrame(0x0, Buffer.alloc(0), false));
    const counted = await metric(server, 'herald_closes_total{code="1008"}');
    socket.write(Buffer.concat(fragments));
    await until(() => closeCodeIn(bytes()) !== undefined);
    assert.equal(closeCodeIn(bytes()), 1008);
    assert.equal(await metric(server, 'herald_closes_total{code="1008"}'), counted + 1, 'the close is counted');
    socket.destroy();
    await freed();
  });

  it('survives a TCP reset at every stage and frees what the connection held', async () => {
    const wsMidHeaders = await openRaw(server.port);
    wsMidHeaders.write('GET /ws?room=rst HTTP/1.1\r\nHost: 127');
    wsMidHeaders.resetAndDestroy();

    const sseMidHeaders = await openRaw(server.port);
    sseMidHeaders.write('GET /events/rst HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event');
    sseMidHeaders.resetAndDestroy();

    const afterUpgrade = await upgraded(server.port, '/ws?room=rst');
    await waitForSubscribers(server, 'rst', 1);
    afterUpgrade.socket.resetAndDestroy();

    const midFrame = await upgraded(server.port, '/ws?room=rst');
    midFrame.socket.write(Buffer.from([0x81, 0xfe, 0x01, 0x00, 1, 2, 3, 4, 5])); // announces 256 bytes, sends 1
    midFrame.socket.resetAndDestroy();

    const midStream = await openRaw(server.port);
    midStream.write('GET /events/rst HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await once(midStream, 'data');
    await publish(server, 'rst', 'x');
    midStream.resetAndDestroy();

    const midBody = await openRaw(server.port);
    midBody.write('POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"channel":"rst","da');
    midBody.resetAndDestroy();

    const midClose = await upgraded(server.port, '/ws?room=rst');
    midClose.socket.write(clientFrame(0x8, Buffer.from([0x03, 0xe8])));
    midClose.socket.resetAndDestroy();

    await until(() => server.ctx.hub.subscriberCount('rst') === 0, 5000, 'rst subscriptions freed');
    await freed();
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
  });

  it('keeps serving the bystanders through all of the above', async () => {
    peer.send('{"still":"alive"}');
    assert.equal(await bystander.waitFor((t) => t.includes('alive')), '{"still":"alive"}');
    await publish(server, 'bystand', 'api');
    assert.equal(await peer.waitFor((t) => t === '"api"'), '"api"');
  });
});

describe('hardening: log hygiene (issue 2 point 9, SPEC §6)', () => {
  const SECRET = 'SECRETVALUE123';
  let open: TestServer;
  let authed: TestServer;
  before(async () => {
    open = await startTestServer();
    authed = await startTestServer({ 'jwt-secret': 'log-test-secret' });
  });
  after(async () => {
    await open.stop();
    await authed.stop();
  });

  function assertClean(server: TestServer, ...secrets: string[]): void {
    const all = server.logs.join('');
    assert.ok(server.logs.length > 0);
    for (const secret of secrets) assert.equal(all.includes(secret), false, `a log line holds ${secret.slice(0, 12)}…`);
    assert.equal(all.includes('token='), false);
    assert.equal(/room=|lastEventId=|channel=/.test(all), false, 'no query string is logged');
  }

  it('never logs a token or a query string on an open node', async () => {
    const socket = await TestSocket.open(`${open.wsUrl}?token=${SECRET}&room=x`);
    socket.close();
    await socket.closed;
    const reader = await SseReader.open(`${open.url}/events/logs?token=${SECRET}&lastEventId=1:x`, { Authorization: `Bearer ${SECRET}` });
    reader.close();
    await fetch(`${open.url}/nothing?token=${SECRET}`);
    await fetch(`${open.url}/api/publish?token=${SECRET}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{' });
    await until(() => open.logs.some((line) => line.includes('websocket closed')) && open.logs.some((line) => line.includes('sse closed')));
    assert.ok(open.logs.some((line) => line.includes('websocket open')), 'connections are logged at debug');
    assertClean(open, SECRET);
  });

  it('never logs a token that was refused or accepted, wherever it came from', async () => {
    const valid = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('dora').setExpirationTime('1h').sign(new TextEncoder().encode('log-test-secret'));
    const answer = await rawExchange(authed.port, upgrade(`/ws?token=${SECRET}&room=x`));
    assert.match(answer, /^HTTP\/1.1 401/);
    const sse = await fetch(`${authed.url}/events/x?token=${SECRET}`);
    assert.equal(sse.status, 401);
    const bearer = await fetch(`${authed.url}/events/x`, { headers: { Authorization: `Bearer ${SECRET}`, Cookie: `herald_token=${SECRET}` } });
    assert.equal(bearer.status, 401);

    const firstMessage = await TestSocket.open(authed.wsUrl, 'herald.v1');
    firstMessage.send({ id: 1, type: 'auth', token: SECRET });
    assert.equal((await firstMessage.closed).code, 4401);
    const room = await TestSocket.open(`${authed.wsUrl}?room=x`);
    room.send({ type: 'auth', token: SECRET });
    assert.equal((await room.closed).code, 4401);

    const good = await TestSocket.open(`${authed.wsUrl}?token=${valid}&room=x`);
    good.close();
    await good.closed;
    // A reset while the token on the upgrade is still being verified.
    const cut = await openRaw(authed.port);
    cut.write(upgrade(`/ws?token=${valid}&room=x`));
    cut.resetAndDestroy();

    await until(() => authed.ctx.websockets.size === 0 && authed.ctx.connectionsPerIp.tracked === 0, 5000, 'everything released');
    assertClean(authed, SECRET, valid, valid.split('.')[2]!);
  });
});
