import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

/** Sends raw bytes and resolves with everything the server answers until it closes. */
function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk));
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

const upgrade = (path: string, extra = '') =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

describe('hardening (TESTPLAN §2.1)', () => {
  let server: TestServer;
  let bystander: TestSocket;
  let peer: TestSocket;
  before(async () => {
    server = await startTestServer();
    bystander = await TestSocket.open(`${server.wsUrl}?room=bystand`);
    peer = await TestSocket.open(`${server.wsUrl}?room=bystand`);
    await waitForSubscribers(server, 'bystand', 2);
  });
  after(async () => {
    // Every attack above left the bystander working.
    peer.send('{"still":"alive"}');
    assert.equal(await bystander.waitFor((t) => t.includes('alive')), '{"still":"alive"}');
    bystander.close();
    peer.close();
    await server.stop();
  });

  it('refuses a wrong Sec-WebSocket-Version with 400 and the versions it speaks', async () => {
    const answer = await rawExchange(server.port, upgrade('/ws?room=x').replace('Version: 13', 'Version: 12'));
    assert.match(answer, /^HTTP\/1.1 400/);
    assert.match(answer, /Sec-WebSocket-Version: 13, 8/i);
  });

  it('refuses a garbage Sec-WebSocket-Key with 400', async () => {
    const answer = await rawExchange(server.port, upgrade('/ws?room=x').replace('dGhlIHNhbXBsZSBub25jZQ==', 'garbage'));
    assert.match(answer, /^HTTP\/1.1 400/);
  });

  it('refuses upgrades on paths other than /ws with 404', async () => {
    assert.match(await rawExchange(server.port, upgrade('/elsewhere')), /^HTTP\/1.1 404/);
  });

  it('answers 431 to a header block over the limit', async () => {
    const answer = await rawExchange(server.port, upgrade('/ws?room=x', `X-Big: ${'a'.repeat(20_000)}\r\n`));
    assert.match(answer, /^HTTP\/1.1 431/);
  });

  it('does not upgrade when Upgrade is pushed past the header-count limit', async () => {
    const filler = Array.from({ length: 2000 }, (_, i) => `X-F${i}: 1\r\n`).join('');
    const answer = await rawExchange(server.port, `GET /ws?room=x HTTP/1.1\r\nHost: 127.0.0.1\r\n${filler}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    assert.doesNotMatch(answer, /^HTTP\/1.1 101/);
  });

  it('survives a TCP reset at every stage and frees what the connection held', async () => {
    const midHeaders = await openRaw(server.port);
    midHeaders.write('GET /ws?room=rst HTTP/1.1\r\nHost: 127');
    midHeaders.resetAndDestroy();

    const afterUpgrade = await openRaw(server.port);
    afterUpgrade.write(upgrade('/ws?room=rst'));
    await new Promise((resolve) => afterUpgrade.once('data', resolve));
    await waitForSubscribers(server, 'rst', 1);
    afterUpgrade.resetAndDestroy();

    const midFrame = await openRaw(server.port);
    midFrame.write(upgrade('/ws?room=rst'));
    await new Promise((resolve) => midFrame.once('data', resolve));
    midFrame.write(Buffer.from([0x81, 0xfe, 0x01, 0x00, 1, 2, 3, 4, 5])); // announces 256 bytes, sends 1
    midFrame.resetAndDestroy();

    const midStream = await openRaw(server.port);
    midStream.write('GET /events/rst HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await new Promise((resolve) => midStream.once('data', resolve));
    await publish(server, 'rst', 'x');
    midStream.resetAndDestroy();

    await until(() => server.ctx.hub.subscriberCount('rst') === 0 && server.ctx.streams.size === 0, 5000, 'resources freed');
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
  });

  it('never logs tokens or query strings', async () => {
    const secret = 'SECRETVALUE123';
    const socket = await TestSocket.open(`${server.wsUrl}?room=logs&token=${secret}`);
    socket.close();
    await socket.closed;
    await fetch(`${server.url}/events/logs?token=${secret}&lastEventId=1:x`).then((r) => r.body?.cancel());
    await fetch(`${server.url}/nothing?token=${secret}`);
    await until(() => server.logs.some((line) => line.includes('websocket closed')));
    const all = server.logs.join('');
    assert.ok(all.length > 0);
    assert.equal(all.includes(secret), false);
    assert.equal(all.includes('token='), false);
  });
});
