import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { SwitchableBroker } from '../helpers/broker-doubles.js';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { SseReader } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

interface Answer {
  status: number;
  contentType: string;
  body: Record<string, any>;
}

async function call(server: TestServer, method: string, path: string, body?: string, headers: Record<string, string> = { 'Content-Type': 'application/json' }): Promise<Answer> {
  const response = await fetch(`${server.url}${path}`, { method, headers, body });
  return { status: response.status, contentType: String(response.headers.get('content-type')), body: (await response.json()) as Record<string, any> };
}

const post = (server: TestServer, path: string, body: string, headers?: Record<string, string>) => call(server, 'POST', path, body, headers);
const get = (server: TestServer, path: string, headers: Record<string, string> = {}) => call(server, 'GET', path, undefined, headers);

/** Sends raw bytes and resolves with everything the server answers until it closes the connection. */
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

async function metricsText(server: TestServer): Promise<string> {
  const response = await fetch(`${server.url}/metrics`);
  assert.equal(response.status, 200);
  assert.match(String(response.headers.get('content-type')), /^text\/plain/);
  return response.text();
}

function metricValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  assert.ok(line, `no ${series} in metrics`);
  return Number(line.slice(series.length + 1));
}

describe('HTTP API (SPEC §2)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer({ 'max-message-size': 1024 })));
  after(() => server.stop());

  it('answers /healthz with 200 {"status":"ok"}', async () => {
    const health = await get(server, '/healthz');
    assert.deepEqual([health.status, health.body], [200, { status: 'ok' }]);
    assert.match(health.contentType, /^application\/json/);
  });

  it('answers /readyz with 200 while the broker is connected', async () => {
    const ready = await get(server, '/readyz');
    assert.equal(ready.status, 200);
    assert.equal(ready.body.status, 'ok');
  });

  it('serves Prometheus text with the herald_ metrics of SPEC §2', async () => {
    const text = await metricsText(server);
    for (const name of ['herald_connections', 'herald_subscriptions', 'herald_channels', 'herald_publications_total', 'herald_deliveries_total', 'herald_drops_total', 'herald_broker_up', 'herald_publish_duration_seconds']) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    assert.match(text, /^herald_broker_up 1$/m);
  });

  it('counts publications, deliveries and open connections in /metrics', async () => {
    const before = await metricsText(server);
    const reader = await SseReader.open(`${server.url}/events/metered`);
    const member = await TestSocket.open(`${server.wsUrl}?room=metered`);
    await waitForSubscribers(server, 'metered', 2);
    await publish(server, 'metered', 1);
    await reader.waitFor((e) => e.data === '1');
    await member.waitFor(() => true);
    const during = await metricsText(server);
    assert.equal(metricValue(during, 'herald_publications_total'), metricValue(before, 'herald_publications_total') + 1);
    assert.equal(metricValue(during, 'herald_deliveries_total'), metricValue(before, 'herald_deliveries_total') + 2);
    assert.equal(metricValue(during, 'herald_connections{transport="sse"}'), 1);
    assert.equal(metricValue(during, 'herald_connections{transport="websocket"}'), 1);
    assert.ok(metricValue(during, 'herald_subscriptions') >= 2);
    assert.match(during, /^herald_publish_duration_seconds_count \d+$/m);
    reader.close();
    member.close();
    await until(() => server.ctx.hub.subscriberCount('metered') === 0);
  });

  it('publishes and answers the channel and a position whose offset grows by one', async () => {
    const first = await post(server, '/api/publish', JSON.stringify({ channel: 'pub', data: { a: 1 } }));
    const second = await post(server, '/api/publish', JSON.stringify({ channel: 'pub', event: 'e', data: null }));
    assert.equal(first.status, 200);
    assert.match(first.contentType, /^application\/json/);
    assert.deepEqual(Object.keys(first.body).sort(), ['channel', 'position']);
    assert.equal(first.body.channel, 'pub');
    assert.equal(typeof first.body.position, 'string');
    assert.match(first.body.position, /^1:/);
    assert.match(second.body.position, /^2:/);
  });

  it('accepts any JSON value as data, including falsy ones', async () => {
    for (const data of [0, false, '', null, [], {}]) {
      const answer = await post(server, '/api/publish', JSON.stringify({ channel: 'falsy', data }));
      assert.equal(answer.status, 200, JSON.stringify(data));
    }
    const history = await get(server, '/api/history/falsy');
    assert.deepEqual(history.body.publications.map((p: { data: unknown }) => p.data), [0, false, '', null, [], {}]);
  });

  it('broadcasts to several channels once each and answers every position', async () => {
    const member = await TestSocket.open(`${server.wsUrl}?room=bc-2`);
    await waitForSubscribers(server, 'bc-2', 1);
    const { status, body } = await post(server, '/api/broadcast', JSON.stringify({ channels: ['bc-1', 'bc-2', 'bc-1'], event: 'news', data: 'hello' }));
    assert.equal(status, 200);
    assert.deepEqual(Object.keys(body.positions).sort(), ['bc-1', 'bc-2']);
    assert.match(body.positions['bc-1'], /^1:/, 'a channel named twice is published once');
    assert.equal(await member.waitFor(() => true), '"hello"');
    const history = await get(server, '/api/history/bc-1');
    assert.deepEqual(history.body.publications, [{ channel: 'bc-1', event: 'news', data: 'hello', position: body.positions['bc-1'] }]);
    member.close();
  });

  it('lists history, all of it or since a position with a limit', async () => {
    const positions: string[] = [];
    for (const n of [1, 2, 3, 4]) positions.push((await publish(server, 'hist', n, n === 2 ? 'even' : undefined)).position);
    const all = await get(server, '/api/history/hist');
    assert.equal(all.status, 200);
    assert.deepEqual(all.body.publications.map((p: { data: number }) => p.data), [1, 2, 3, 4]);
    assert.deepEqual(all.body.publications[1], { channel: 'hist', event: 'even', data: 2, position: positions[1] });
    assert.equal(all.body.position, positions[3]);
    const since = await get(server, `/api/history/hist?since=${encodeURIComponent(positions[1]!)}&limit=1`);
    assert.deepEqual(since.body.publications, [{ channel: 'hist', data: 3, position: positions[2] }]);
    assert.equal(since.body.position, positions[3]);
    const none = await get(server, '/api/history/hist?limit=0');
    assert.deepEqual(none.body.publications, []);
  });

  it('answers an empty history and a starting position for a channel never published to', async () => {
    const history = await get(server, '/api/history/never-used');
    assert.equal(history.status, 200);
    assert.deepEqual(history.body.publications, []);
    assert.match(history.body.position, /^0:/);
  });

  it('lists presence and the channels with subscribers on this node', async () => {
    const member = await TestSocket.open(`${server.wsUrl}?room=present`);
    const reader = await SseReader.open(`${server.url}/events/present`);
    await waitForSubscribers(server, 'present', 2);
    const presence = await get(server, '/api/presence/present');
    assert.equal(presence.status, 200);
    assert.equal(presence.body.clients.length, 1, 'SSE readers are not in presence');
    assert.equal(typeof presence.body.clients[0].client, 'string');
    const channels = await get(server, '/api/channels');
    assert.equal(channels.status, 200);
    assert.deepEqual(
      channels.body.channels.find((c: { channel: string }) => c.channel === 'present'),
      { channel: 'present', subscribers: 2 },
    );
    member.close();
    reader.close();
    await until(async () => (await get(server, '/api/presence/present')).body.clients.length === 0);
    await until(async () => !(await get(server, '/api/channels')).body.channels.some((c: { channel: string }) => c.channel === 'present'));
  });

  const errors: [string, () => Promise<Answer>, number, string][] = [
    ['bad JSON', () => post(server, '/api/publish', '{nope'), 400, 'bad_request'],
    ['an empty body', () => post(server, '/api/publish', ''), 400, 'bad_request'],
    ['a missing channel', () => post(server, '/api/publish', '{"data":1}'), 400, 'bad_request'],
    ['missing data', () => post(server, '/api/publish', '{"channel":"x"}'), 400, 'bad_request'],
    ['a bad channel name', () => post(server, '/api/publish', '{"channel":"no spaces","data":1}'), 400, 'bad_request'],
    ['a channel name over 255 bytes', () => post(server, '/api/publish', JSON.stringify({ channel: 'x'.repeat(256), data: 1 })), 400, 'bad_request'],
    ['a channel that is not a string', () => post(server, '/api/publish', '{"channel":5,"data":1}'), 400, 'bad_request'],
    ['an event that is not a string', () => post(server, '/api/publish', '{"channel":"x","event":5,"data":1}'), 400, 'bad_request'],
    ['a body that is not an object', () => post(server, '/api/publish', '[1]'), 400, 'bad_request'],
    ['an empty broadcast', () => post(server, '/api/broadcast', '{"channels":[],"data":1}'), 400, 'bad_request'],
    ['a broadcast without a channel list', () => post(server, '/api/broadcast', '{"channels":"a","data":1}'), 400, 'bad_request'],
    ['a broadcast without data', () => post(server, '/api/broadcast', '{"channels":["a"]}'), 400, 'bad_request'],
    ['data over --max-message-size', () => post(server, '/api/publish', JSON.stringify({ channel: 'x', data: 'y'.repeat(2000) })), 413, 'too_large'],
    ['broadcast data over --max-message-size', () => post(server, '/api/broadcast', JSON.stringify({ channels: ['x'], data: 'y'.repeat(2000) })), 413, 'too_large'],
    ['a body far over the limit', () => post(server, '/api/publish', JSON.stringify({ channel: 'x', data: 'y'.repeat(200_000) })), 413, 'too_large'],
    ['a non-JSON content type', () => post(server, '/api/publish', '{"channel":"x","data":1}', { 'Content-Type': 'text/plain' }), 415, 'unsupported_media_type'],
    ['no content type', () => post(server, '/api/publish', '{"channel":"x","data":1}', {}), 415, 'unsupported_media_type'],
    ['an unknown API route', () => get(server, '/api/nothing'), 404, 'not_found'],
    ['an unknown path', () => get(server, '/no/such/page'), 404, 'not_found'],
    ['GET on the publish route', () => get(server, '/api/publish'), 404, 'not_found'],
    ['POST on the history route', () => post(server, '/api/history/x', '{}'), 404, 'not_found'],
    ['a bad since position', () => get(server, '/api/history/hist?since=bogus'), 400, 'bad_request'],
    ['a bad limit', () => get(server, '/api/history/hist?limit=-1'), 400, 'bad_request'],
    ['a history channel with a bad name', () => get(server, `/api/history/${encodeURIComponent('a b')}`), 400, 'bad_request'],
    ['a presence channel with a bad name', () => get(server, `/api/presence/${encodeURIComponent('a*b')}`), 400, 'bad_request'],
    ['a channel that is not valid URL encoding', () => get(server, '/api/history/%E0%A4%A'), 400, 'bad_request'],
  ];
  for (const [name, request, status, code] of errors) {
    it(`answers ${status} {"error":{"code":"${code}"}} for ${name}`, async () => {
      const result = await request();
      assert.equal(result.status, status);
      assert.match(result.contentType, /^application\/json/);
      assert.deepEqual(Object.keys(result.body), ['error']);
      assert.deepEqual(Object.keys(result.body.error).sort(), ['code', 'message']);
      assert.equal(result.body.error.code, code);
      assert.equal(typeof result.body.error.message, 'string');
      assert.ok(result.body.error.message.length > 0);
    });
  }

  it('publishes nothing when one channel of a broadcast has a bad name', async () => {
    const answer = await post(server, '/api/broadcast', JSON.stringify({ channels: ['bc-good', 'bad name'], data: 1 }));
    assert.equal(answer.status, 400);
    assert.deepEqual((await get(server, '/api/history/bc-good')).body.publications, []);
  });

  it('answers 413 to a chunked body that grows over the limit, and keeps serving', async () => {
    const big = 'y'.repeat(100_000);
    const answer = await rawExchange(
      server.port,
      `POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`,
    );
    assert.match(answer, /^HTTP\/1.1 413 /);
    assert.match(answer, /\{"error":\{"code":"too_large","message":"[^"]+"\}\}$/);
    assert.equal((await get(server, '/healthz')).status, 200);
  });
});

describe('API key (SPEC §2, --api-key)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer({ 'api-key': 'k3y' })));
  after(() => server.stop());

  const body = JSON.stringify({ channel: 'secured', data: 1 });
  const json = { 'Content-Type': 'application/json' };

  it('refuses /api/* with 401 without the key or with a wrong one', async () => {
    for (const headers of [json, { ...json, Authorization: 'Bearer nope' }, { ...json, Authorization: 'k3y' }, { ...json, Authorization: 'Basic k3y' }]) {
      const answer = await post(server, '/api/publish', body, headers);
      assert.equal(answer.status, 401, JSON.stringify(headers));
      assert.equal(answer.body.error.code, 'unauthorized');
    }
    for (const path of ['/api/history/secured', '/api/presence/secured', '/api/channels']) {
      const answer = await get(server, path);
      assert.equal(answer.status, 401, path);
      assert.equal(answer.body.error.code, 'unauthorized');
    }
    assert.equal((await get(server, '/api/history/secured', { Authorization: 'Bearer k3y' })).body.publications.length, 0, 'nothing was published');
  });

  it('accepts /api/* with Authorization: Bearer <key>', async () => {
    const right = await post(server, '/api/publish', body, { ...json, Authorization: 'Bearer k3y' });
    assert.equal(right.status, 200);
    for (const path of ['/api/history/secured', '/api/presence/secured', '/api/channels']) {
      assert.equal((await get(server, path, { Authorization: 'Bearer k3y' })).status, 200, path);
    }
  });

  it('checks the key before reading the body, so an unauthenticated client cannot probe validation', async () => {
    const answer = await post(server, '/api/publish', '{bad json', json);
    assert.equal(answer.status, 401);
  });

  it('leaves /healthz and /readyz open, and guards /metrics with the key', async () => {
    assert.equal((await get(server, '/healthz')).status, 200);
    assert.equal((await get(server, '/readyz')).status, 200);
    assert.equal((await fetch(`${server.url}/metrics`)).status, 401);
    assert.equal((await fetch(`${server.url}/metrics`, { headers: { Authorization: 'Bearer k3y' } })).status, 200);
  });
});

describe('HTTP API while the broker is down (SPEC §2 503, §7)', () => {
  let server: TestServer;
  const broker = new SwitchableBroker();
  before(async () => (server = await startTestServer({}, { broker })));
  after(() => server.stop());

  it('turns /readyz to 503 with the reason, keeps /healthz at 200, and refuses publishes with 503', async () => {
    broker.downReason = 'connection refused';
    const ready = await get(server, '/readyz');
    assert.equal(ready.status, 503);
    assert.match(JSON.stringify(ready.body), /connection refused/);
    assert.equal((await get(server, '/healthz')).status, 200);
    const published = await post(server, '/api/publish', JSON.stringify({ channel: 'down', data: 1 }));
    assert.equal(published.status, 503);
    assert.equal(published.body.error.code, 'unavailable');
    const broadcast = await post(server, '/api/broadcast', JSON.stringify({ channels: ['down'], data: 1 }));
    assert.equal(broadcast.status, 503);
    const history = await get(server, '/api/history/down');
    assert.equal(history.status, 503);
    assert.match(await metricsText(server), /^herald_broker_up 0$/m);

    broker.downReason = undefined;
    assert.equal((await get(server, '/readyz')).status, 200);
    const again = await post(server, '/api/publish', JSON.stringify({ channel: 'down', data: 2 }));
    assert.equal(again.status, 200);
    assert.deepEqual((await get(server, '/api/history/down')).body.publications.map((p: { data: number }) => p.data), [2], 'the refused publish was not stored');
  });
});
