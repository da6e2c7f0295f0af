import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { SseReader } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

describe('Server-Sent Events (SPEC §4)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer({ 'ping-interval': 0.2 })));
  after(() => server.stop());

  it('answers with the SSE headers, a retry hint and a connected event first', async () => {
    const reader = await SseReader.open(`${server.url}/events/first`);
    assert.equal(reader.status, 200);
    assert.match(String(reader.headers['content-type']), /^text\/event-stream/);
    assert.equal(reader.headers['cache-control'], 'no-cache, no-transform');
    assert.equal(reader.headers['connection'], 'keep-alive');
    assert.equal(reader.headers['x-accel-buffering'], 'no');
    const connected = await reader.waitFor((e) => e.event === 'connected');
    assert.ok(reader.raw.startsWith('retry: '), reader.raw);
    assert.equal(JSON.parse(connected.data).status, 'ok');
    assert.equal(typeof JSON.parse(connected.data).client, 'string');
    reader.close();
  });

  it('sends id, event and one line of JSON data per publication', async () => {
    const reader = await SseReader.open(`${server.url}/events/orders`);
    await waitForSubscribers(server, 'orders', 1);
    const { position } = await publish(server, 'orders', { id: 7, note: 'a\nb' }, 'order-update');
    await publish(server, 'orders', [1, 2]);
    const first = await reader.waitFor((e) => e.event === 'order-update');
    assert.equal(first.id, position);
    assert.deepEqual(JSON.parse(first.data), { id: 7, note: 'a\nb' });
    const second = await reader.waitFor((e) => e.event === 'message');
    assert.equal(second.data, '[1,2]');
    assert.match(reader.raw, new RegExp(`id: ${position}\nevent: order-update\ndata: \\{"id":7,"note":"a\\\\nb"\\}\n\n`));
    reader.close();
  });

  it('writes a ": ping" comment every ping interval', async () => {
    const reader = await SseReader.open(`${server.url}/events/pings`);
    await reader.waitUntil(() => reader.comments >= 2);
    assert.match(reader.raw, /\n: ping\n\n/);
    reader.close();
  });

  it('resumes from Last-Event-ID with no gap and no duplicate', async () => {
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
    second.close();
  });

  it('accepts the resume position as ?lastEventId= too', async () => {
    const { position } = await publish(server, 'query-resume', 'a');
    await publish(server, 'query-resume', 'b');
    const reader = await SseReader.open(`${server.url}/events/query-resume?lastEventId=${encodeURIComponent(position)}`);
    await reader.waitFor((e) => e.data === '"b"');
    assert.deepEqual(reader.publications.map((e) => e.data), ['"b"']);
    reader.close();
  });

  for (const [name, lastEventId] of [
    ['an unknown epoch', '1:nosuchepoch'],
    ['a malformed id', 'garbage\u00e9'],
    ['an oversized id', '9'.repeat(10_000)],
    ['a position ahead of history', '999:whatever'],
  ] as const) {
    it(`starts with event: reset (status 200) for ${name}`, async () => {
      await publish(server, 'resets', 'x');
      const reader = await SseReader.open(`${server.url}/events/resets`, { 'Last-Event-ID': lastEventId });
      assert.equal(reader.status, 200);
      const reset = await reader.waitFor((e) => e.event === 'reset');
      const body = JSON.parse(reset.data);
      assert.equal(body.channel, 'resets');
      assert.ok(reset.id.length > 0, 'the reset carries the current position as its id');
      reader.close();
    });
  }

  it('multiplexes channels on one stream and its ids resume all of them', async () => {
    const reader = await SseReader.open(`${server.url}/events?channel=mx-a&channel=mx-b`);
    await waitForSubscribers(server, 'mx-b', 1);
    await publish(server, 'mx-a', 'a1');
    await publish(server, 'mx-b', 'b1');
    const last = await reader.waitFor((e) => e.data === '"b1"');
    reader.close();
    await until(() => server.ctx.hub.subscriberCount('mx-b') === 0);
    await publish(server, 'mx-a', 'a2');
    await publish(server, 'mx-b', 'b2');
    const resumed = await SseReader.open(`${server.url}/events?channel=mx-a&channel=mx-b`, { 'Last-Event-ID': last.id });
    await resumed.waitUntil(() => resumed.publications.length >= 2);
    assert.deepEqual(resumed.publications.map((e) => e.data).sort(), ['"a2"', '"b2"']);
    resumed.close();
  });

  it('cannot be made to emit injected fields by data containing CR, LF or field text', async () => {
    const reader = await SseReader.open(`${server.url}/events/inject`);
    await waitForSubscribers(server, 'inject', 1);
    const nasty = 'line1\r\nevent: spoofed\nid: 666\r\ndata: x\rretry: 1\n\n';
    await publish(server, 'inject', nasty);
    const event = await reader.waitFor((e) => e.event !== 'connected');
    assert.equal(event.event, 'message');
    assert.equal(JSON.parse(event.data), nasty);
    assert.equal(reader.events.filter((e) => e.event === 'spoofed').length, 0);
    assert.notEqual(reader.lastEventId, '666');
    reader.close();
  });

  it('refuses an event name containing a newline at publish time', async () => {
    const response = await fetch(`${server.url}/api/publish`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ channel: 'inject', event: 'a\nid: 1', data: 1 }),
    });
    assert.equal(response.status, 400);
    assert.equal((await response.json()).error.code, 'bad_request');
  });

  it('carries room-mode messages to SSE readers, and API publications to room members', async () => {
    const reader = await SseReader.open(`${server.url}/events/bridge`);
    const member = await TestSocket.open(`${server.wsUrl}?room=bridge`);
    const other = await TestSocket.open(`${server.wsUrl}?room=bridge`);
    await waitForSubscribers(server, 'bridge', 3);
    member.send('{"from":"room"}');
    const fromRoom = await reader.waitFor((e) => e.event === 'message');
    assert.equal(fromRoom.data, '{"from":"room"}');
    await publish(server, 'bridge', { from: 'api' });
    assert.equal(await other.waitFor((t) => t.includes('api')), '{"from":"api"}');
    reader.close();
    member.close();
    other.close();
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
    await until(() => received.length === 2, 10_000);
    await publish(server, 'es', 3);
    await until(() => received.length === 3);
    assert.deepEqual(received, ['1', '2', '3']);
    source.close();
  });

  it('survives a client that resets the connection mid-stream, and frees its subscription', async () => {
    const reader = await SseReader.open(`${server.url}/events/rst`);
    await waitForSubscribers(server, 'rst', 1);
    reader.reset();
    await until(() => server.ctx.hub.subscriberCount('rst') === 0);
    await publish(server, 'rst', 'after');
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200);
  });

  it('refuses a bad channel name with a JSON 400 before opening the stream', async () => {
    const response = await fetch(`${server.url}/events/${encodeURIComponent('bad channel!')}`);
    assert.equal(response.status, 400);
    assert.equal((await response.json()).error.code, 'bad_request');
  });
});
