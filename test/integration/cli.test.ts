import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { jwtVerify } from 'jose';
import { SseReader } from '../helpers/sse.js';
import { TestSocket } from '../helpers/ws.js';

const HERALD = 'bin/herald';

interface Node {
  readonly child: ChildProcess;
  readonly url: string;
  readonly output: string[];
}

/** Starts `herald serve` as a child on a free port and reads the port from its log. */
async function startNode(...args: string[]): Promise<Node> {
  const child = spawn(process.execPath, [HERALD, 'serve', '--host', '127.0.0.1', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    let buffer = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffer += chunk;
      output.push(String(chunk));
      const match = /"port":(\d+)/.exec(buffer);
      if (match) resolve(Number(match[1]));
    });
    child.stderr!.on('data', (chunk: Buffer) => output.push(String(chunk)));
    child.once('exit', (code) => reject(new Error(`herald exited ${code}: ${output.join('')}`)));
  });
  return { child, url: `http://127.0.0.1:${port}`, output };
}

describe('bin/herald (SPEC §1)', () => {
  it('exits 2 with a message naming a bad setting', () => {
    const result = spawnSync(process.execPath, [HERALD, 'serve', '--history-size', 'lots'], { encoding: 'utf8' });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /history-size/);
    const env = spawnSync(process.execPath, [HERALD, 'serve'], { encoding: 'utf8', env: { ...process.env, HERALD_PING_INTERVAL: 'often' } });
    assert.equal(env.status, 2);
    assert.match(env.stderr, /ping-interval/);
  });

  it('logs the port it chose for --port 0, publishes with `herald publish`, and drains on SIGTERM', async () => {
    const node = await startNode('--shutdown-timeout', '5');
    const socket = await TestSocket.open(`${node.url.replace('http', 'ws')}/ws?room=cli`);
    const reader = await SseReader.open(`${node.url}/events/cli`);
    await reader.waitFor((e) => e.event === 'connected');
    const published = spawnSync(process.execPath, [HERALD, 'publish', 'cli', '{"n":1}', '--url', node.url], { encoding: 'utf8' });
    assert.equal(published.status, 0, published.stderr);
    assert.match(published.stdout, /"position":"1:/);
    assert.equal(await socket.waitFor(() => true), '{"n":1}');
    node.child.kill('SIGTERM');
    const [code] = await once(node.child, 'exit');
    assert.equal(code, 0);
    assert.equal((await socket.closed).code, 1001);
    await reader.waitUntil(() => reader.ended);
    assert.match(reader.raw, /retry: \d+\n\n$/);
  });

  it('terminates a client that ignores the close at --shutdown-timeout and still exits 0', async () => {
    const node = await startNode('--shutdown-timeout', '0.5');
    const stubborn = await TestSocket.open(`${node.url.replace('http', 'ws')}/ws?room=stubborn`);
    // Stop reading: the close frame is never answered.
    (stubborn.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    node.child.kill('SIGTERM');
    const [code] = await once(node.child, 'exit');
    assert.equal(code, 0);
  });

  it('prints a development token with `herald token`', async () => {
    const result = spawnSync(process.execPath, [HERALD, 'token', '--sub', 'alice', '--channels', 'chat:*', '--ttl', '60'], {
      encoding: 'utf8',
      env: { ...process.env, HERALD_JWT_SECRET: 'dev-secret' },
    });
    assert.equal(result.status, 0, result.stderr);
    const { payload } = await jwtVerify(result.stdout.trim(), new TextEncoder().encode('dev-secret'));
    assert.equal(payload.sub, 'alice');
    assert.deepEqual(payload.channels, ['chat:*']);
    assert.ok(typeof payload.exp === 'number');
  });
});
