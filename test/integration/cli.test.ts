import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { jwtVerify } from 'jose';
import { publish, startTestServer } from '../helpers/server.js';
import { SseReader } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

const HERALD = 'bin/herald';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `bin/herald ...args` to completion (async, so servers in this process keep answering). */
async function herald(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const child = spawn(process.execPath, [HERALD, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

interface Node {
  readonly child: ChildProcess;
  readonly port: number;
  readonly url: string;
  /** Everything the node wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code once the process is gone. */
  readonly exited: Promise<number | null>;
}

const nodes = new Set<ChildProcess>();
after(() => {
  for (const child of nodes) child.kill('SIGKILL');
});

/** Starts `herald serve` as a child on 127.0.0.1 and a free port, and reads the chosen port from its log. */
async function startNode(args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Node> {
  const child = spawn(process.execPath, [HERALD, 'serve', '--host', '127.0.0.1', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  nodes.add(child);
  let output = '';
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      nodes.delete(child);
      resolve(code);
    }),
  );
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk;
      const match = /"port":(\d+)[^\n]*herald listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (match) {
        assert.equal(match[1], match[2], 'the port field and the message agree');
        resolve(Number(match[1]));
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk));
    void exited.then((code) => reject(new Error(`herald exited ${code} before listening: ${output}`)));
  });
  return { child, port, url: `http://127.0.0.1:${port}`, output: () => output, exited };
}

function logLines(node: Node): Record<string, unknown>[] {
  return node
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** A raw TCP client that completes a WebSocket upgrade and then never reads or answers anything. */
async function stubbornWebSocket(port: number, room: string): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write(`GET /ws?room=${room} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  const [head] = (await once(socket, 'data')) as [Buffer];
  assert.match(String(head), /^HTTP\/1.1 101/);
  socket.pause();
  return socket;
}

function configFile(content: unknown): string {
  const path = join(mkdtempSync(join(tmpdir(), 'herald-cli-')), 'herald.json');
  writeFileSync(path, JSON.stringify(content));
  return path;
}

// Each test runs its own processes and ports, so the tests of a group run side by side.
describe('herald serve: refusing bad settings (SPEC §1)', { concurrency: 4 }, () => {
  const cases: [string, string[], NodeJS.ProcessEnv, RegExp][] = [
    ['a bad flag value', ['serve', '--history-size', 'lots'], {}, /history-size/],
    ['a bad environment value', ['serve'], { HERALD_PING_INTERVAL: 'often' }, /ping-interval/],
    ['a bad value in the --config file, under its camelCase key', ['serve', '--config', configFile({ maxMessageSize: -5 })], {}, /max-message-size/],
    ['a bad value in the file named by HERALD_CONFIG', ['serve'], { HERALD_CONFIG: configFile({ shutdownTimeout: 'soon' }) }, /shutdown-timeout/],
    ['an unknown key in the config file', ['serve', '--config', configFile({ prot: 8080 })], {}, /prot/],
    ['a missing config file', ['serve', '--config', '/nonexistent/herald.json'], {}, /config/],
    ['--config without a path', ['serve', '--config'], {}, /config/],
    ['an unknown flag', ['serve', '--colour', 'blue'], {}, /colour/],
    ['a stray argument', ['serve', '8080'], {}, /8080/],
    ['an unknown broker', ['serve', '--broker', 'kafka://x:1'], {}, /broker/],
    ['an unknown command', ['serve-please'], {}, /serve-please/],
  ];
  for (const [name, args, env, setting] of cases) {
    it(`exits 2 with a message naming the setting for ${name}`, async () => {
      const result = await herald(args, env);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, setting);
      assert.doesNotMatch(result.stderr, /\n\s+at /, 'a message, not a stack trace');
    });
  }

  it('exits 2 naming the setting when the node cannot listen where it was told', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const [busy, busyMetrics, foreignHost] = await Promise.all([
        herald(['serve', '--host', '127.0.0.1', '--port', String(port)]),
        herald(['serve', '--host', '127.0.0.1', '--port', '0', '--metrics-port', String(port)]),
        // TEST-NET-3 (RFC 5737): never an address of this machine.
        herald(['serve', '--host', '203.0.113.7', '--port', '0']),
      ]);
      assert.equal(busy.code, 2, busy.stderr);
      assert.match(busy.stderr, /"port".*in use/);
      assert.equal(busyMetrics.code, 2, busyMetrics.stderr);
      assert.match(busyMetrics.stderr, /"metrics-port".*in use/);
      assert.equal(foreignHost.code, 2, foreignHost.stderr);
      assert.match(foreignHost.stderr, /"host"/);
    } finally {
      taken.close();
    }
  });
});

describe('herald serve: running and draining (SPEC §1, issue 2 point 8)', { concurrency: 3 }, () => {
  it('takes each setting from the flag, else the environment, else the --config file; drains on SIGINT too', async () => {
    const file = configFile({ historySize: 5, apiKey: 'file-key', 'max-message-size': 4096 });
    const node = await startNode(['--config', file, '--history-size', '2'], { HERALD_HISTORY_SIZE: '3', HERALD_API_KEY: 'env-key' });
    const send = (key: string, data: unknown) =>
      fetch(`${node.url}/api/publish`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` }, body: JSON.stringify({ channel: 'prec', data }) });
    const refused = await send('file-key', 0);
    assert.equal(refused.status, 401, `the environment beats the file: ${await refused.text()}`);
    for (const n of [1, 2, 3, 4]) {
      const response = await send('env-key', n);
      assert.equal(response.status, 200, await response.text());
    }
    const history = await (await fetch(`${node.url}/api/history/prec`, { headers: { Authorization: 'Bearer env-key' } })).json();
    assert.deepEqual(history.publications.map((p: { data: number }) => p.data), [3, 4], `the flag beats the environment: ${JSON.stringify(history)}`);
    assert.equal((await send('env-key', 'x'.repeat(5000))).status, 413, 'the file beats the default');
    // (Each node costs a second of CPU to start: this one also shows SIGINT drains like SIGTERM.)
    const room = await TestSocket.open(`ws://127.0.0.1:${node.port}/ws?room=int`);
    node.child.kill('SIGINT');
    assert.equal(await node.exited, 0, node.output());
    assert.equal((await room.closed).code, 1001);
    assert.ok(logLines(node).some((l) => l.msg === 'shutting down' && l.signal === 'SIGINT'));
  });

  it('logs the port it chose for --port 0; on SIGTERM closes WebSockets with 1001, ends SSE streams with a retry hint, and exits 0', async () => {
    // startNode found the port in the log line "herald listening on http://127.0.0.1:<port>".
    const node = await startNode(['--shutdown-timeout', '5', '--log-level', 'debug']);
    assert.deepEqual(await (await fetch(`${node.url}/healthz`)).json(), { status: 'ok' });
    const room = await TestSocket.open(`ws://127.0.0.1:${node.port}/ws?room=drain`);
    const protocol = await TestSocket.open(`ws://127.0.0.1:${node.port}/ws`, 'herald.v1');
    const reader = await SseReader.open(`${node.url}/events/drain`);
    await reader.waitFor((e) => e.event === 'connected');
    node.child.kill('SIGTERM');
    assert.equal(await node.exited, 0);
    assert.deepEqual(await room.closed, { code: 1001, reason: 'server shutting down' });
    assert.equal((await protocol.closed).code, 1001);
    await reader.waitUntil(() => reader.ended);
    assert.match(reader.raw, /\n\nretry: \d+\n\n$/, 'the stream ends with a retry hint');
    assert.doesNotMatch(node.output(), /uncaughtException|unhandledRejection|"level":(50|60)/, 'no error was logged');
    const messages = logLines(node).map((l) => l.msg);
    assert.ok(messages.includes('draining'));
    assert.ok(messages.includes('stopped'), 'the drain finished before the process exited');
  });

  it('terminates a client that ignores the close at --shutdown-timeout and still exits 0', async () => {
    const node = await startNode(['--shutdown-timeout', '0.5', '--log-level', 'debug']);
    const stubborn = await stubbornWebSocket(node.port, 'stubborn');
    const paused = await TestSocket.open(`ws://127.0.0.1:${node.port}/ws?room=stubborn`);
    (paused.ws as unknown as { _socket: Socket })._socket.pause();
    const polite = await TestSocket.open(`ws://127.0.0.1:${node.port}/ws?room=stubborn`);
    await until(() => logLines(node).filter((l) => l.msg === 'websocket open').length === 3);
    node.child.kill('SIGTERM');
    assert.equal(await node.exited, 0);
    assert.equal((await polite.closed).code, 1001);
    assert.ok(logLines(node).some((l) => l.msg === 'stopped'), 'the drain finished (it was not the hard stop that ended the process)');
    assert.doesNotMatch(node.output(), /uncaughtException|unhandledRejection|"level":(50|60)/, 'no error was logged');
    stubborn.destroy();
    paused.ws.terminate();
  });
});

describe('graceful shutdown in process (issue 2 point 8)', () => {
  it('stops accepting connections as soon as the drain starts, while existing ones drain', async () => {
    const server = await startTestServer({ 'shutdown-timeout': 5 });
    const stubborn = await stubbornWebSocket(server.port, 'held');
    const stopped = server.stop();
    await assert.rejects(fetch(`${server.url}/healthz`), 'no new connections while draining');
    assert.equal(server.ctx.draining(), true);
    stubborn.destroy();
    await stopped;
    assert.equal(server.ctx.websockets.size, 0);
  });

  it('cuts off a client that never answers the close once --shutdown-timeout has passed', async () => {
    const server = await startTestServer({ 'shutdown-timeout': 0.3 });
    const stubborn = await stubbornWebSocket(server.port, 'held');
    const polite = await TestSocket.open(`${server.wsUrl}?room=held`);
    await until(() => server.ctx.hub.subscriberCount('held') === 2);
    await server.stop();
    assert.equal((await polite.closed).code, 1001);
    // The server end is gone: the stubborn client reads the close frame, then end of stream.
    let received = '';
    stubborn.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    stubborn.resume();
    await once(stubborn, 'close');
    assert.ok(received.includes('server shutting down'), 'it was sent a 1001 close frame first');
    await until(() => server.ctx.websockets.size === 0 && server.ctx.hub.subscriberCount('held') === 0);
  });
});

describe('herald publish and herald token (SPEC §1)', { concurrency: 3 }, () => {
  it('publishes through the HTTP API of a running node, with --event and --api-key', async () => {
    const server = await startTestServer({ 'api-key': 'cli-key' });
    try {
      const reader = await SseReader.open(`${server.url}/events/cli`);
      await until(() => server.ctx.hub.subscriberCount('cli') === 1);
      const result = await herald(['publish', 'cli', '{"n":1}', '--event', 'poke', '--url', server.url, '--api-key', 'cli-key']);
      assert.equal(result.code, 0, result.stderr);
      const answer = JSON.parse(result.stdout);
      assert.equal(answer.channel, 'cli');
      assert.match(answer.position, /^1:/);
      const event = await reader.waitFor((e) => e.event === 'poke');
      assert.deepEqual([event.data, event.id], ['{"n":1}', answer.position]);
      reader.close();

      const [fromEnv, refused, badJson, badUrl] = await Promise.all([
        herald(['publish', 'cli', '2', '--url', server.url], { HERALD_API_KEY: 'cli-key' }),
        herald(['publish', 'cli', '3', '--url', server.url]),
        herald(['publish', 'cli', '{nope', '--url', server.url, '--api-key', 'cli-key']),
        herald(['publish', 'cli', '1', '--url', 'not-a-url']),
      ]);
      assert.equal(fromEnv.code, 0, fromEnv.stderr);
      assert.equal(refused.code, 1, 'a refused publish fails');
      assert.match(refused.stdout, /unauthorized/);
      assert.equal(badJson.code, 2);
      assert.match(badJson.stderr, /JSON/);
      assert.equal(badUrl.code, 2);
      assert.match(badUrl.stderr, /"url"/);
    } finally {
      await server.stop();
    }
    const gone = await herald(['publish', 'cli', '1', '--url', server.url]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /cannot reach/);
    assert.doesNotMatch(gone.stderr, /\n\s+at /, 'a message, not a stack trace');
  });

  it('prints a JWT signed with the configured secret, with sub, channels, publish and exp', async () => {
    const result = await herald(['token', '--sub', 'alice', '--channels', 'chat:*,news', '--publish', 'chat:*', '--ttl', '60'], { HERALD_JWT_SECRET: 'dev-secret' });
    assert.equal(result.code, 0, result.stderr);
    const { payload, protectedHeader } = await jwtVerify(result.stdout.trim(), new TextEncoder().encode('dev-secret'));
    assert.equal(protectedHeader.alg, 'HS256');
    assert.equal(payload.sub, 'alice');
    assert.deepEqual(payload.channels, ['chat:*', 'news']);
    assert.deepEqual(payload.publish, ['chat:*']);
    assert.equal(typeof payload.exp, 'number');
    assert.ok(payload.exp! - Math.floor(Date.now() / 1000) <= 60);
  });

  it('defaults the token lifetime to an hour and takes the secret from --jwt-secret', async () => {
    const result = await herald(['token', '--sub', 'bob', '--jwt-secret', 'flag-secret']);
    assert.equal(result.code, 0, result.stderr);
    const { payload } = await jwtVerify(result.stdout.trim(), new TextEncoder().encode('flag-secret'));
    assert.equal(payload.exp! - payload.iat!, 3600);
    assert.equal(payload.channels, undefined, 'no channels claim means the default ["*"]');
  });

  it('exits 2 naming what is missing when there is no secret or no --sub', async () => {
    const noSecret = await herald(['token', '--sub', 'alice'], { HERALD_JWT_SECRET: '' });
    assert.equal(noSecret.code, 2);
    assert.match(noSecret.stderr, /jwt-secret/);
    const noSub = await herald(['token', '--jwt-secret', 's']);
    assert.equal(noSub.code, 2);
    assert.match(noSub.stderr, /sub/);
  });

  it('gives a token the node accepts on a WebSocket upgrade', async () => {
    const server = await startTestServer({ 'jwt-secret': 'shared-secret' });
    try {
      const result = await herald(['token', '--sub', 'carol', '--channels', 'lobby', '--jwt-secret', 'shared-secret']);
      const client = await TestSocket.open(`${server.wsUrl}?token=${result.stdout.trim()}`, 'herald.v1');
      const connected = await client.next<{ user: string }>('connected');
      assert.equal(connected.user, 'carol');
      client.close();
      await publish(server, 'lobby', 1);
    } finally {
      await server.stop();
    }
  });
});
