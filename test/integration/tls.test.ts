import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as http2Connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { ProtocolSocket } from '../helpers/protocol.js';
import { startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

interface CertFiles {
  readonly cert: string;
  readonly key: string;
  readonly fingerprint: string;
}

/** A self-signed P-256 certificate for 127.0.0.1 and localhost, made by openssl. */
function makeCertificate(dir: string, name: string): CertFiles {
  const cert = join(dir, `${name}.cert.pem`);
  const key = join(dir, `${name}.key.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=herald-${name}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  return { cert, key, fingerprint: new X509Certificate(readFileSync(cert)).fingerprint256 };
}

/** Server-Sent Events parsed from any readable (HTTP/1.1 response or HTTP/2 stream). */
class EventCollector {
  readonly events: { event: string; data: string }[] = [];
  private text = '';
  ended = false;
  private waiters: (() => void)[] = [];

  constructor(stream: Readable) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      this.text += chunk;
      let end: number;
      while ((end = this.text.indexOf('\n\n')) >= 0) {
        const block = this.text.slice(0, end);
        this.text = this.text.slice(end + 2);
        const lines = block.split('\n');
        const event = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message';
        const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
        if (data.length > 0) this.events.push({ event, data: data.join('\n') });
      }
      this.wake();
    });
    stream.on('end', () => ((this.ended = true), this.wake()));
    stream.on('close', () => ((this.ended = true), this.wake()));
  }

  async waitFor(match: (e: { event: string; data: string }) => boolean, timeoutMs = 5000): Promise<{ event: string; data: string }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(match);
      if (found) return found;
      if (this.ended) throw new Error(`stream ended; events: ${this.summary()}`);
      if (Date.now() > deadline) throw new Error(`timed out; events: ${this.summary()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.waiters.push(() => (clearTimeout(timer), resolve()));
      });
    }
  }

  private summary(): string {
    return this.events.map((e) => `${e.event}(${e.data.length > 80 ? `${e.data.length} bytes` : e.data})`).join(', ');
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

describe('TLS: HTTPS, WSS, SSE over HTTP/2 and HTTP/1.1, certificate reload (SPEC §1, issue 5 #7)', () => {
  let dir: string;
  let first: CertFiles;
  let second: CertFiles;
  let live: { cert: string; key: string };
  let ca: Buffer[];
  let server: TestServer;
  const sessions: ClientHttp2Session[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'herald-tls-'));
    first = makeCertificate(dir, 'first');
    second = makeCertificate(dir, 'second');
    live = { cert: join(dir, 'live.cert.pem'), key: join(dir, 'live.key.pem') };
    copyFileSync(first.cert, live.cert);
    copyFileSync(first.key, live.key);
    ca = [readFileSync(first.cert), readFileSync(second.cert)];
    server = await startTestServer({ 'tls-cert': live.cert, 'tls-key': live.key, 'max-header-size': 4096, 'max-headers': 20 });
    assert.match(server.url, /^https:/);
  });
  after(async () => {
    for (const session of sessions) session.destroy();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function https(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(`${server.url}${path}`, { method, ca, headers: { ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  /** An HTTP/2 client with a browser's flow-control windows (Chromium: 6 MiB per stream, 15 MiB per connection). */
  function h2Session(): ClientHttp2Session {
    const session = http2Connect(server.url, { ca, settings: { initialWindowSize: 6 * 1024 * 1024 } });
    session.on('connect', () => session.setLocalWindowSize(15 * 1024 * 1024));
    session.on('error', () => {});
    sessions.push(session);
    return session;
  }

  /** Opens an SSE stream over an HTTP/2 session; resolves with its response headers and events. */
  async function h2Events(session: ClientHttp2Session, path: string): Promise<{ headers: IncomingHttpHeaders; events: EventCollector }> {
    const stream = session.request({ ':path': path, accept: 'text/event-stream' });
    stream.on('error', () => {});
    const [headers] = (await once(stream, 'response')) as [IncomingHttpHeaders];
    return { headers, events: new EventCollector(stream) };
  }

  it('serves the HTTP API over HTTPS, on HTTP/1.1 and HTTP/2', async () => {
    const published = await https('POST', '/api/publish', { channel: 'tls-api', data: { n: 1 } });
    assert.equal(published.status, 200, published.body);
    assert.match(JSON.parse(published.body).position, /^1:/);
    const session = h2Session();
    const stream = session.request({ ':path': '/api/history/tls-api' });
    const [headers] = (await once(stream, 'response')) as [IncomingHttpHeaders];
    let text = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => (text += chunk));
    await once(stream, 'end');
    assert.equal(headers[':status'], 200);
    assert.deepEqual(JSON.parse(text).publications.map((p: { data: unknown }) => p.data), [{ n: 1 }]);
    assert.equal(session.alpnProtocol, 'h2');
  });

  it('accepts WSS in room mode and herald.v1', async () => {
    const wss = server.wsUrl;
    assert.match(wss, /^wss:/);
    const member = await TestSocket.open(`${wss}?room=tls-room`, undefined, { ca });
    const peer = new ProtocolSocket(await TestSocket.open(wss, 'herald.v1', { ca }));
    await peer.next('connected');
    await peer.command({ type: 'subscribe', channel: 'tls-room' });
    await waitForSubscribers(server, 'tls-room', 2);
    assert.equal((await https('POST', '/api/publish', { channel: 'tls-room', data: 'over tls' })).status, 200);
    assert.equal(await member.waitFor(() => true), '"over tls"');
    assert.equal((await peer.next('message')).data, 'over tls');
    member.close();
    peer.close();
  });

  it('serves SSE over HTTP/2: many streams on one connection (no 6-per-origin limit), each receiving', async () => {
    const session = h2Session();
    const streams = await Promise.all(Array.from({ length: 10 }, (_, i) => h2Events(session, `/events/tls-h2-${i % 2}`)));
    for (const { headers } of streams) {
      assert.equal(headers[':status'], 200);
      assert.match(String(headers['content-type']), /^text\/event-stream/);
      assert.equal(headers['connection'], undefined);
    }
    for (const { events } of streams) await events.waitFor((e) => e.event === 'connected');
    await waitForSubscribers(server, 'tls-h2-0', 5);
    await waitForSubscribers(server, 'tls-h2-1', 5);
    await https('POST', '/api/publish', { channel: 'tls-h2-0', data: 'zero' });
    await https('POST', '/api/publish', { channel: 'tls-h2-1', event: 'odd', data: 'one' });
    for (const [i, { events }] of streams.entries()) {
      const event = await events.waitFor((e) => e.event !== 'connected');
      assert.deepEqual(event, i % 2 === 0 ? { event: 'message', data: '"zero"' } : { event: 'odd', data: '"one"' });
    }
    assert.equal(session.alpnProtocol, 'h2');
    session.destroy();
    await until(() => server.ctx.streams.size === 0, 3000, 'HTTP/2 streams released');
  });

  it('still serves SSE over HTTP/1.1 with TLS', async () => {
    const req = httpsRequest(`${server.url}/events/tls-h1`, { ca, headers: { Accept: 'text/event-stream' } });
    req.on('error', () => {});
    req.end();
    const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
    assert.equal(res.statusCode, 200);
    assert.equal(res.httpVersion, '1.1');
    const events = new EventCollector(res);
    await events.waitFor((e) => e.event === 'connected');
    await waitForSubscribers(server, 'tls-h1', 1);
    await https('POST', '/api/publish', { channel: 'tls-h1', data: [1, 2] });
    assert.deepEqual(await events.waitFor((e) => e.event === 'message'), { event: 'message', data: '[1,2]' });
    req.destroy();
  });

  it('ends an HTTP/2 SSE stream whose reader stops reading; a reader on another connection gets everything', async () => {
    // Not on the same session: HTTP/2 flow control is per connection too, so a stalled stream stalls its siblings.
    const healthy = await h2Events(h2Session(), '/events/tls-slow');
    const slowSession = h2Session();
    const slowStream = slowSession.request({ ':path': '/events/tls-slow' });
    slowStream.on('error', () => {});
    await once(slowStream, 'response');
    slowStream.pause();
    await waitForSubscribers(server, 'tls-slow', 2);
    const payload = JSON.stringify('x'.repeat(32 * 1024));
    let published = 0;
    // Flow control stops the paused stream at its window; the server then buffers up to --max-outbound-buffer.
    while (server.ctx.hub.subscriberCount('tls-slow') === 2) {
      if (published > 2000) throw new Error('slow HTTP/2 reader never dropped');
      await server.ctx.hub.publish({ channel: 'tls-slow', data: payload });
      if (++published % 8 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await https('POST', '/api/publish', { channel: 'tls-slow', data: 'after' });
    await healthy.events.waitFor((e) => e.data === '"after"', 15_000);
    assert.equal(healthy.events.events.filter((e) => e.event === 'message').length, published + 1);
    assert.equal(healthy.events.events.some((e) => e.event === 'disconnect'), false);
  });

  it('applies header size and count limits to HTTP/1.1 over TLS', async () => {
    const raw = (headers: string) =>
      new Promise<string>((resolve) => {
        const socket = tlsConnect({ host: '127.0.0.1', port: server.port, ca, ALPNProtocols: ['http/1.1'] }, () => socket.write(`GET /ws?room=h HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}\r\n`));
        let answer = '';
        socket.on('data', (chunk) => {
          answer += chunk;
          if (answer.includes('\r\n\r\n')) socket.destroy();
        });
        socket.on('close', () => resolve(answer.split('\r\n')[0]!));
        socket.on('error', () => {});
      });
    const upgrade = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';
    assert.match(await raw(upgrade), / 101 /);
    assert.match(await raw(`X-Big: ${'a'.repeat(5000)}\r\n${upgrade}`), / 431 /);
    const filler = Array.from({ length: 30 }, (_, i) => `X-F${i}: 1\r\n`).join('');
    assert.doesNotMatch(await raw(filler + upgrade), / 101 /);
  });

  it('cuts off a slowloris on HTTP/1.1 over TLS at the header timeout (408)', async () => {
    const started = Date.now();
    const socket = tlsConnect({ host: '127.0.0.1', port: server.port, ca, ALPNProtocols: ['http/1.1'] });
    socket.on('error', () => {});
    await once(socket, 'secureConnect');
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk));
    socket.write('GET /ws?room=slow HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const trickle = setInterval(() => socket.write('X-Slow: 1\r\n'), 500);
    await once(socket, 'close');
    clearInterval(trickle);
    assert.match(answer, /^HTTP\/1\.1 408/);
    assert.ok(Date.now() - started < 15_000, `held for ${Date.now() - started} ms`);
  });

  it('reloadTls() (SIGHUP) serves a new certificate to new connections; a bad one keeps the old', async () => {
    const peerFingerprint = () =>
      new Promise<string>((resolve, reject) => {
        const socket = tlsConnect({ host: '127.0.0.1', port: server.port, ca, servername: 'localhost' }, () => {
          resolve(socket.getPeerCertificate().fingerprint256);
          socket.end();
        });
        socket.on('error', reject);
      });
    assert.equal(await peerFingerprint(), first.fingerprint);
    const kept = h2Session();
    await once(kept, 'connect');

    copyFileSync(second.cert, live.cert);
    copyFileSync(second.key, live.key);
    server.reloadTls();
    assert.equal(await peerFingerprint(), second.fingerprint);
    assert.equal((await https('GET', '/healthz')).status, 200);
    // The connection opened before the reload keeps its certificate and keeps working.
    const keptSocket = kept.socket as unknown as import('node:tls').TLSSocket;
    assert.equal(keptSocket.getPeerCertificate().fingerprint256, first.fingerprint);
    const stream = kept.request({ ':path': '/healthz' });
    const [headers] = (await once(stream, 'response')) as [IncomingHttpHeaders];
    assert.equal(headers[':status'], 200);
    stream.resume();

    writeFileSync(live.cert, 'not a certificate');
    assert.throws(() => server.reloadTls());
    copyFileSync(first.cert, live.cert); // a certificate that does not match the (second) key
    assert.throws(() => server.reloadTls());
    assert.equal(await peerFingerprint(), second.fingerprint);
  });

  it('herald serve reloads the certificate on SIGHUP', async () => {
    const cert = join(dir, 'child.cert.pem');
    const key = join(dir, 'child.key.pem');
    copyFileSync(first.cert, cert);
    copyFileSync(first.key, key);
    const child = spawn(process.execPath, ['bin/herald', 'serve', '--host', '127.0.0.1', '--port', '0', '--tls-cert', cert, '--tls-key', key], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let output = '';
      child.stdout!.on('data', (chunk: Buffer) => (output += chunk));
      child.stderr!.on('data', (chunk: Buffer) => (output += chunk));
      await until(() => /"port":(\d+)/.test(output), 10_000, 'herald listening');
      const port = Number(/"port":(\d+)/.exec(output)![1]);
      const fingerprint = () =>
        new Promise<string>((resolve, reject) => {
          const socket = tlsConnect({ host: '127.0.0.1', port, ca }, () => {
            resolve(socket.getPeerCertificate().fingerprint256);
            socket.end();
          });
          socket.on('error', reject);
        });
      assert.equal(await fingerprint(), first.fingerprint);
      copyFileSync(second.cert, cert);
      copyFileSync(second.key, key);
      child.kill('SIGHUP');
      await until(() => output.includes('TLS certificate reloaded'), 5000, 'reload logged');
      assert.equal(await fingerprint(), second.fingerprint);
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });
});
