import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { GatedBroker, SwitchableBroker } from '../helpers/broker-doubles.js';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { SseReader } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

/** Every byte of a response until the server ends it (for streams the server closes). */
function rawBody(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // A fresh connection each time: a node may close one after a drained stream (legal in HTTP/1.1), and a
    // pooled keep-alive socket it closed would fail the next request with "socket hang up".
    const req = request(url, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function postJson(server: TestServer, path: string, body: unknown) {
  return fetch(`${server.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
}

describe('Server-Sent Events (SPEC §4)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer({ 'ping-interval': 0.2, 'sse-retry': 1500 })));
  after(() => server.stop());

  it('answers 200 with exactly the SSE headers of SPEC §4', async () => {
    const reader = await SseReader.open(`${server.url}/events/first`);
    assert.equal(reader.status, 200);
    assert.match(String(reader.headers['content-type']), /^text\/event-stream(;|$)/);
    assert.equal(reader.headers['cache-control'], 'no-cache, no-transform');
    assert.equal(reader.headers['connection'], 'keep-alive');
    assert.equal(reader.headers['x-accel-buffering'], 'no');
    assert.equal(reader.headers['content-length'], undefined, 'a stream has no length');
    reader.close();
  });

  it('starts with a retry: line and then the connected event, before anything else', async () => {
    const reader = await SseReader.open(`${server.url}/events/first`);
    const connected = await reader.waitFor((e) => e.event === 'connected');
    assert.match(reader.raw, /^retry: 1500\nevent: connected\ndata: /);
    assert.equal(reader.retry, 1500);
    assert.equal(reader.events[0], connected);
    const body = JSON.parse(connected.data);
    assert.equal(body.status, 'ok');
    assert.equal(typeof body.client, 'string');
    reader.close();
  });

  it('sends id, event and one line of JSON data per publication', async () => {
    const reader = await SseReader.open(`${server.url}/events/orders`);
    await waitForSubscribers(server, 'orders', 1);
    const { position } = await publish(server, 'orders', { id: 7, note: 'a\nb' }, 'order-update');
    const second = await publish(server, 'orders', [1, 2]);
    const first = await reader.waitFor((e) => e.event === 'order-update');
    assert.equal(first.id, position);
    assert.deepEqual(JSON.parse(first.data), { id: 7, note: 'a\nb' });
    const plain = await reader.waitFor((e) => e.event === 'message');
    assert.equal(plain.data, '[1,2]');
    assert.equal(plain.id, second.position);
    assert.ok(reader.raw.includes(`id: ${position}\nevent: order-update\ndata: {"id":7,"note":"a\\nb"}\n\n`), reader.raw);
    assert.ok(reader.raw.includes(`id: ${second.position}\nevent: message\ndata: [1,2]\n\n`), reader.raw);
    reader.close();
  });

  it('writes a ": ping" comment every ping interval', async () => {
    const reader = await SseReader.open(`${server.url}/events/pings`);
    await reader.waitUntil(() => reader.comments >= 3);
    assert.match(reader.raw, /\n\n: ping\n\n/);
    assert.equal(reader.publications.length, 0, 'comments are not events');
    reader.close();
  });

  it('gives a stream that saw no publication yet an id, so an early reconnect still resumes', async () => {
    const { position } = await publish(server, 'early', 'before');
    const reader = await SseReader.open(`${server.url}/events/early`);
    await reader.waitUntil(() => reader.lastEventId !== '');
    assert.equal(reader.lastEventId, position);
    reader.close();
  });

  it('resumes from Last-Event-ID with every publication made while disconnected, no gap and no duplicate', async () => {
    const first = await SseReader.open(`${server.url}/events/resume`);
    await waitForSubscribers(server, 'resume', 1);
    await publish(server, 'resume', 1);
    await publish(server, 'resume', 2);
    const seen = await first.waitFor((e) => e.data === '2');
    first.close();
    await until(() => server.ctx.hub.subscriberCount('resume') === 0);
    for (const n of [3, 4, 5]) await publish(server, 'resume', n);
    const second = await SseReader.open(`${server.url}/events/resume`, { 'Last-Event-ID': seen.id });
    await waitForSubscribers(server, 'resume', 1);
    await publish(server, 'resume', 6);
    await second.waitFor((e) => e.data === '6');
    assert.deepEqual(second.publications.map((e) => e.data), ['3', '4', '5', '6']);
    assert.equal(second.events.filter((e) => e.event === 'reset').length, 0);
    second.close();
  });

  it('resumes from ?lastEventId= the same way', async () => {
    const first = await SseReader.open(`${server.url}/events/query-resume`);
    await waitForSubscribers(server, 'query-resume', 1);
    await publish(server, 'query-resume', 'a');
    const seen = await first.waitFor((e) => e.data === '"a"');
    first.close();
    await until(() => server.ctx.hub.subscriberCount('query-resume') === 0);
    await publish(server, 'query-resume', 'b');
    await publish(server, 'query-resume', 'c');
    const second = await SseReader.open(`${server.url}/events/query-resume?lastEventId=${encodeURIComponent(seen.id)}`);
    await waitForSubscribers(server, 'query-resume', 1);
    await publish(server, 'query-resume', 'd');
    await second.waitFor((e) => e.data === '"d"');
    assert.deepEqual(second.publications.map((e) => e.data), ['"b"', '"c"', '"d"']);
    second.close();
  });

  it('prefers the Last-Event-ID header over a stale ?lastEventId= left in the URL by the page', async () => {
    // A browser reconnects to the same URL (old query) and sends the newer id as a header.
    const old = await publish(server, 'both-ids', 1);
    const newer = await publish(server, 'both-ids', 2);
    await publish(server, 'both-ids', 3);
    const reader = await SseReader.open(`${server.url}/events/both-ids?lastEventId=${encodeURIComponent(old.position)}`, { 'Last-Event-ID': newer.position });
    await reader.waitFor((e) => e.data === '3');
    assert.deepEqual(reader.publications.map((e) => e.data), ['3']);
    reader.close();
  });

  for (const [name, lastEventId, reason] of [
    ['an unknown epoch', '1:nosuchepoch', 'epoch changed'],
    ['a malformed id', 'garbage\u00e9', 'invalid position'],
    ['a negative offset', '-3:abc', 'invalid position'],
    ['an oversized id', '9'.repeat(10_000), 'invalid position'],
    ['a position ahead of history', '999:whatever', undefined],
  ] as const) {
    it(`answers 200 and starts with event: reset for ${name}`, async () => {
      const { position } = await publish(server, 'resets', 'x');
      const reader = await SseReader.open(`${server.url}/events/resets`, { 'Last-Event-ID': lastEventId });
      assert.equal(reader.status, 200);
      const reset = await reader.waitFor((e) => e.event === 'reset');
      assert.equal(reader.events.indexOf(reset), 1, 'the reset comes right after connected');
      const body = JSON.parse(reset.data);
      assert.equal(body.channel, 'resets');
      if (reason) assert.equal(body.reason, reason);
      assert.equal(typeof body.reason, 'string');
      assert.equal(reset.id, position, 'the reset carries the current position as its id');
      assert.equal(body.position, position);
      // And the stream goes on live from there.
      await publish(server, 'resets', 'live');
      await reader.waitFor((e) => e.data === '"live"');
      reader.close();
    });
  }

  it('resets a resume from a position ahead of the channel in its own epoch', async () => {
    const { position } = await publish(server, 'ahead', 'x');
    const epoch = position.split(':')[1];
    const reader = await SseReader.open(`${server.url}/events/ahead`, { 'Last-Event-ID': `5:${epoch}` });
    const reset = await reader.waitFor((e) => e.event === 'reset');
    assert.equal(JSON.parse(reset.data).reason, 'position ahead of history');
    assert.equal(reset.id, position);
    reader.close();
  });

  it('multiplexes channels on one stream, each in its own order', async () => {
    const reader = await SseReader.open(`${server.url}/events?channel=mx-a&channel=mx-b`);
    await waitForSubscribers(server, 'mx-b', 1);
    for (const n of [1, 2, 3]) {
      await publish(server, 'mx-a', `a${n}`);
      await publish(server, 'mx-b', `b${n}`);
    }
    await reader.waitFor((e) => e.data === '"b3"');
    assert.deepEqual(reader.publications.map((e) => JSON.parse(e.data)), ['a1', 'b1', 'a2', 'b2', 'a3', 'b3']);
    for (const event of reader.publications) assert.match(event.id, /^mx-a\|\d+:[^;]+;mx-b\|\d+:/, 'each id names the position of every channel');
    reader.close();
  });

  it('resumes every channel of a multiplexed stream from one id', async () => {
    const reader = await SseReader.open(`${server.url}/events?channel=mr-a&channel=mr-b`);
    await waitForSubscribers(server, 'mr-b', 1);
    await publish(server, 'mr-a', 'a1');
    await publish(server, 'mr-b', 'b1');
    const last = await reader.waitFor((e) => e.data === '"b1"');
    reader.close();
    await until(() => server.ctx.hub.subscriberCount('mr-b') === 0);
    await publish(server, 'mr-a', 'a2');
    await publish(server, 'mr-b', 'b2');
    await publish(server, 'mr-a', 'a3');
    const resumed = await SseReader.open(`${server.url}/events?channel=mr-a&channel=mr-b`, { 'Last-Event-ID': last.id });
    await resumed.waitUntil(() => resumed.publications.length >= 3);
    const byChannel = (prefix: string) => resumed.publications.map((e) => JSON.parse(e.data) as string).filter((d) => d.startsWith(prefix));
    assert.deepEqual(byChannel('a'), ['a2', 'a3']);
    assert.deepEqual(byChannel('b'), ['b2']);
    assert.equal(resumed.events.filter((e) => e.event === 'reset').length, 0);
    resumed.close();
  });

  it('resets only the channel of a multiplexed id whose position cannot be served', async () => {
    const a = await publish(server, 'mp-a', 'a1');
    await publish(server, 'mp-b', 'b1');
    await publish(server, 'mp-a', 'a2');
    const id = `mp-a|${a.position};mp-b|1:lostepoch`;
    const reader = await SseReader.open(`${server.url}/events?channel=mp-a&channel=mp-b`, { 'Last-Event-ID': id });
    const reset = await reader.waitFor((e) => e.event === 'reset');
    assert.equal(JSON.parse(reset.data).channel, 'mp-b');
    await reader.waitFor((e) => e.data === '"a2"');
    assert.equal(reader.events.filter((e) => e.event === 'reset').length, 1);
    reader.close();
  });

  it('resets every channel of a multiplexed stream for a garbage id', async () => {
    const reader = await SseReader.open(`${server.url}/events?channel=mg-a&channel=mg-b`, { 'Last-Event-ID': 'not|an;id' });
    assert.equal(reader.status, 200);
    await reader.waitUntil(() => reader.events.filter((e) => e.event === 'reset').length === 2);
    assert.deepEqual(reader.events.filter((e) => e.event === 'reset').map((e) => JSON.parse(e.data).channel).sort(), ['mg-a', 'mg-b']);
    reader.close();
  });

  const nasty = 'line1\r\nevent: spoofed\nid: 666\r\ndata: x\rretry: 1\n\n:comment\r\r\n';

  it('delivers data holding CR, LF and field text as exactly one event with identical data (strict parser)', async () => {
    const reader = await SseReader.open(`${server.url}/events/inject`);
    await waitForSubscribers(server, 'inject', 1);
    const { position } = await publish(server, 'inject', { text: nasty }, 'note');
    await publish(server, 'inject', 'end');
    await reader.waitFor((e) => e.data === '"end"');
    assert.equal(reader.publications.length, 2);
    const [event] = reader.publications;
    assert.equal(event!.event, 'note');
    assert.equal(event!.id, position);
    assert.deepEqual(JSON.parse(event!.data), { text: nasty });
    assert.equal(reader.retry, 1500, 'no injected retry');
    assert.doesNotMatch(reader.raw, /\n(event: spoofed|id: 666|retry: 1\n)/);
    reader.close();
  });

  it('delivers data holding CR, LF and field text as exactly one event with identical data (EventSource)', async () => {
    const source = new EventSource(`${server.url}/events/inject-es`);
    const received: { type: string; data: string; lastEventId: string }[] = [];
    for (const type of ['message', 'spoofed']) source.addEventListener(type, (e) => received.push({ type, data: e.data, lastEventId: e.lastEventId }));
    await new Promise((resolve) => source.addEventListener('connected', resolve, { once: true }));
    await waitForSubscribers(server, 'inject-es', 1);
    const { position } = await publish(server, 'inject-es', nasty);
    await until(() => received.length >= 1);
    await publish(server, 'inject-es', 'end');
    await until(() => received.length >= 2);
    assert.deepEqual(received[0], { type: 'message', data: JSON.stringify(nasty), lastEventId: position });
    assert.equal(received[1]!.data, '"end"');
    source.close();
  });

  it('delivers a room message pretty-printed over several lines as one line of data', async () => {
    const reader = await SseReader.open(`${server.url}/events/pretty`);
    const member = await TestSocket.open(`${server.wsUrl}?room=pretty`);
    await waitForSubscribers(server, 'pretty', 2);
    member.send('{\r\n  "a": [1,\n 2],\r  "b": "x"\n}');
    const event = await reader.waitFor((e) => e.event === 'message');
    assert.deepEqual(JSON.parse(event.data), { a: [1, 2], b: 'x' });
    assert.doesNotMatch(event.data, /[\r\n]/);
    reader.close();
    member.close();
  });

  for (const event of ['a\nid: 1', 'a\r', 'a\r\nevent: b', 'tab\there']) {
    it(`refuses the event name ${JSON.stringify(event)} at publish time with 400`, async () => {
      const response = await postJson(server, '/api/publish', { channel: 'inject', event, data: 1 });
      assert.equal(response.status, 400);
      assert.equal((await response.json()).error.code, 'bad_request');
    });
  }

  it('refuses an event name with a newline from a herald.v1 publish too', async () => {
    const client = await TestSocket.open(server.wsUrl, 'herald.v1');
    await client.next('connected');
    client.send({ id: 1, type: 'publish', channel: 'inject', event: 'x\ny', data: 1 });
    const error = await client.next<{ id: number; code: string }>('error');
    assert.deepEqual([error.id, error.code], [1, 'bad_request']);
    client.close();
  });

  it('carries room-mode messages to SSE readers, and API publications to room members', async () => {
    const reader = await SseReader.open(`${server.url}/events/bridge`);
    const member = await TestSocket.open(`${server.wsUrl}?room=bridge`);
    const other = await TestSocket.open(`${server.wsUrl}?room=bridge`);
    await waitForSubscribers(server, 'bridge', 3);
    member.send('{"from":"room"}');
    const fromRoom = await reader.waitFor((e) => e.event === 'message');
    assert.equal(fromRoom.data, '{"from":"room"}');
    assert.match(fromRoom.id, /^1:/);
    await publish(server, 'bridge', { from: 'api' });
    assert.equal(await other.waitFor((t) => t.includes('api')), '{"from":"api"}');
    await reader.waitFor((e) => e.data === '{"from":"api"}');
    reader.close();
    member.close();
    other.close();
  });

  it('carries herald.v1 publications, with their event name, to SSE readers', async () => {
    const reader = await SseReader.open(`${server.url}/events/bridge-v1`);
    const client = await TestSocket.open(server.wsUrl, 'herald.v1');
    await client.next('connected');
    client.send({ id: 1, type: 'publish', channel: 'bridge-v1', event: 'typed', data: { n: 1 } });
    const { position } = await client.next<{ position: string }>('published');
    const event = await reader.waitFor((e) => e.event === 'typed');
    assert.deepEqual([event.id, event.data], [position, '{"n":1}']);
    reader.close();
    client.close();
  });

  it('resumes with a real EventSource client after the server drops the stream', async () => {
    const source = new EventSource(`${server.url}/events/es`);
    const received: string[] = [];
    source.addEventListener('message', (e) => received.push(e.data));
    await new Promise((resolve) => source.addEventListener('connected', resolve, { once: true }));
    await waitForSubscribers(server, 'es', 1);
    await publish(server, 'es', 1);
    await until(() => received.length === 1);
    // Cut every stream from the server side; the client reconnects with Last-Event-ID.
    for (const stream of [...server.ctx.streams]) stream.terminate();
    await until(() => server.ctx.hub.subscriberCount('es') === 0);
    await publish(server, 'es', 2);
    await publish(server, 'es', 3);
    await until(() => received.length === 3, 10_000);
    await publish(server, 'es', 4);
    await until(() => received.length === 4);
    assert.deepEqual(received, ['1', '2', '3', '4']);
    source.close();
  });

  it('survives a client that resets the connection mid-stream, and frees its subscription', async () => {
    const reader = await SseReader.open(`${server.url}/events/rst`);
    await waitForSubscribers(server, 'rst', 1);
    const streamsBefore = server.ctx.streams.size;
    reader.reset();
    await until(() => server.ctx.hub.subscriberCount('rst') === 0 && server.ctx.streams.size === streamsBefore - 1);
    await publish(server, 'rst', 'after');
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
  });

  it('answers HEAD with the stream headers and no stream: nothing subscribed, the response ends at once', async () => {
    const head = await fetch(`${server.url}/events/head-only`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.match(String(head.headers.get('content-type')), /^text\/event-stream(;|$)/);
    assert.equal(head.headers.get('cache-control'), 'no-cache, no-transform');
    assert.equal(await head.text(), '');
    assert.equal(server.ctx.hub.subscriberCount('head-only'), 0);
    assert.equal((await fetch(`${server.url}/events/${encodeURIComponent('bad channel!')}`, { method: 'HEAD' })).status, 400);
  });

  it('refuses a bad channel name, or no channel at all, with a JSON 400 before opening the stream', async () => {
    for (const path of [`/events/${encodeURIComponent('bad channel!')}`, '/events?channel=ok&channel=no%20spaces', '/events', `/events/${'x'.repeat(256)}`]) {
      const response = await fetch(`${server.url}${path}`);
      assert.equal(response.status, 400, path);
      assert.match(String(response.headers.get('content-type')), /^application\/json/);
      assert.equal((await response.json()).error.code, 'bad_request');
    }
  });
});

describe('Server-Sent Events while a multiplexed resume is half-way', () => {
  let server: TestServer;
  const broker = new GatedBroker();
  before(async () => (server = await startTestServer({}, { broker })));
  after(() => server.stop());

  it('keeps the resume position of a channel not yet subscribed in the ids it sends, so a drop then loses nothing', async () => {
    const a1 = await publish(server, 'half-a', 'a1');
    const b1 = await publish(server, 'half-b', 'b1');
    await publish(server, 'half-a', 'a2');
    await publish(server, 'half-b', 'b2');
    // half-a recovers at once; half-b's history read is held, and the stream is cut right then.
    const release = broker.hold('half-b');
    const first = await SseReader.open(`${server.url}/events?channel=half-a&channel=half-b`, { 'Last-Event-ID': `half-a|${a1.position};half-b|${b1.position}` });
    await first.waitFor((e) => e.data === '"a2"');
    await until(() => broker.waiting.has('half-b'));
    first.close();
    await until(() => server.ctx.hub.subscriberCount('half-a') === 0);
    release();
    await until(() => server.ctx.hub.subscriberCount('half-b') === 0, 5000, 'the held subscription released');

    const second = await SseReader.open(`${server.url}/events?channel=half-a&channel=half-b`, { 'Last-Event-ID': first.lastEventId });
    await second.waitFor((e) => e.data === '"b2"');
    assert.deepEqual(second.publications.map((e) => e.data), ['"b2"'], 'b2 recovered, a2 not repeated');
    second.close();
  });
});

describe('Server-Sent Events while the broker is down (SPEC §4, §7)', () => {
  let server: TestServer;
  const broker = new SwitchableBroker();
  before(async () => (server = await startTestServer({ 'sse-retry': 3000 }, { broker })));
  after(() => server.stop());

  it('never answers 503 or 204: the stream opens with 200 and ends with a retry hint', async () => {
    broker.downReason = 'test outage';
    const { status, body } = await rawBody(`${server.url}/events/outage`, { Accept: 'text/event-stream' });
    assert.equal(status, 200);
    assert.match(body, /retry: 3000\n\n$/);
    assert.equal(server.ctx.hub.subscriberCount('outage'), 0);
    assert.equal(server.ctx.streams.size, 0);
    broker.downReason = undefined;
    const reader = await SseReader.open(`${server.url}/events/outage`);
    await waitForSubscribers(server, 'outage', 1);
    await publish(server, 'outage', 'back');
    await reader.waitFor((e) => e.data === '"back"');
    reader.close();
  });
});
