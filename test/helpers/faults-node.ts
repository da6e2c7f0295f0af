import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { withTimeout, type Child } from '../../bench/process.js';
export { forceGc } from '../../bench/inspector.js';

/**
 * Helpers of the node-level fault tests (TESTPLAN T13, T14, T21, T22): a
 * Herald node as a child process with its own Node flags, its /metrics and
 * open files read from outside, and raw
 * WebSocket peers that stop reading or ignore the closing handshake.
 */

/** JSON log lines of a node child. */
export function logLines(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/**
 * Every sample of a Prometheus text page, keyed `name` or `name{labels}`
 * exactly as printed, e.g. `herald_closes_total{code="4008"}`. Bounded by a
 * ref'd timer: a fetch whose server died mid-answer can stay pending with no
 * handle left (an undici fetch bug), and the test runner would then cancel
 * the test with "the event loop has already resolved" instead of saying why.
 */
export async function scrape(url: string, timeoutMs = 10_000): Promise<Map<string, number>> {
  const text = await withTimeout(
    (async () => {
      const response = await fetch(`${url}/metrics`);
      if (!response.ok) throw new Error(`/metrics: ${response.status}`);
      return response.text();
    })(),
    timeoutMs,
    `${url}/metrics: no answer within ${timeoutMs} ms`,
  );
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/**
 * A raw client that completes a WebSocket upgrade and then does only what
 * the test says: nothing is read or answered unless the test does it.
 * `path` e.g. `/ws?room=x`; `subprotocol` e.g. `herald.v1`.
 */
export async function rawWebSocket(port: number, path: string, subprotocol?: string): Promise<{ socket: Socket; head: Buffer }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  const protocol = subprotocol ? `Sec-WebSocket-Protocol: ${subprotocol}\r\n` : '';
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${protocol}\r\n`,
  );
  let head = Buffer.alloc(0);
  while (!head.includes('\r\n\r\n')) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    head = Buffer.concat([head, chunk]);
  }
  if (!/^HTTP\/1.1 101/.test(head.toString('latin1'))) throw new Error(`upgrade refused: ${head.toString('latin1').split('\r\n')[0]}`);
  return { socket, head };
}

/** A masked client text frame (zero mask key), for raw sockets. */
export function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const length = payload.length;
  const header = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = Buffer.alloc(header + 4 + length);
  frame[0] = 0x81;
  if (length < 126) frame[1] = 0x80 | length;
  else if (length < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  payload.copy(frame, header + 4);
  return frame;
}

/**
 * Ends a bench load generator (bench/load/generator.ts): it drops every
 * connection and exits. Waits for the exit rather than writing to an IPC
 * channel that may be closing (which would raise an uncaught error).
 */
export async function stopGenerator(generator: Child): Promise<void> {
  const proc = generator.proc;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  if (proc.connected) {
    try {
      await generator.request({ cmd: 'close' }, 5000);
    } catch {
      // closing already
    }
  }
  const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}
