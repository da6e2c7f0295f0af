import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { TestSocket } from '../helpers/ws.js';

async function post(server: TestServer, path: string, body: string, headers: Record<string, string> = { 'Content-Type': 'application/json' }) {
  const response = await fetch(`${server.url}${path}`, { method: 'POST', headers, body });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

describe('HTTP API (SPEC §2)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer({ 'max-message-size': 1024 })));
  after(() => server.stop());

  it('reports health and readiness', async () => {
    const health = await fetch(`${server.url}/healthz`);
    assert.deepEqual([health.status, await health.json()], [200, { status: 'ok' }]);
    const ready = await fetch(`${server.url}/readyz`);
    assert.equal(ready.status, 200);
  });

  it('serves Prometheus metrics', async () => {
    await publish(server, 'metered', 1);
    const response = await fetch(`${server.url}/metrics`);
    const text = await response.text();
    assert.equal(response.status, 200);
    for (const name of ['herald_connections', 'herald_subscriptions', 'herald_publications_total', 'herald_deliveries_total', 'herald_drops_total', 'herald_broker_up', 'herald_publish_duration_seconds']) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    assert.match(text, /^herald_broker_up 1$/m);
  });

  it('publishes and answers the position', async () => {
    const first = await post(server, '/api/publish', JSON.stringify({ channel: 'pub', data: { a: 1 } }));
    const second = await post(server, '/api/publish', JSON.stringify({ channel: 'pub', event: 'e', data: null }));
    assert.equal(first.status, 200);
    assert.equal(first.body.channel, 'pub');
    assert.match(first.body.position, /^1:/);
    assert.match(second.body.position, /^2:/);
  });

  it('broadcasts to several channels and answers each position', async () => {
    const member = await TestSocket.open(`${server.wsUrl}?room=bc-2`);
    await waitForSubscribers(server, 'bc-2', 1);
    const { status, body } = await post(server, '/api/broadcast', JSON.stringify({ channels: ['bc-1', 'bc-2'], data: 'hello' }));
    assert.equal(status, 200);
    assert.deepEqual(Object.keys(body.positions).sort(), ['bc-1', 'bc-2']);
    assert.equal(await member.waitFor(() => true), '"hello"');
    member.close();
  });

  it('lists history since a position with a limit', async () => {
    const positions: string[] = [];
    for (const n of [1, 2, 3, 4]) positions.push((await publish(server, 'hist', n)).position);
    const all = await (await fetch(`${server.url}/api/history/hist`)).json();
    assert.deepEqual(all.publications.map((p: { data: number }) => p.data), [1, 2, 3, 4]);
    assert.equal(all.position, positions[3]);
    const since = await (await fetch(`${server.url}/api/history/hist?since=${positions[1]}&limit=1`)).json();
    assert.deepEqual(since.publications, [{ channel: 'hist', data: 3, position: positions[2] }]);
  });

  it('lists presence and channels', async () => {
    const member = await TestSocket.open(`${server.wsUrl}?room=present`);
    await waitForSubscribers(server, 'present', 1);
    const presence = await (await fetch(`${server.url}/api/presence/present`)).json();
    assert.equal(presence.clients.length, 1);
    assert.equal(typeof presence.clients[0].client, 'string');
    const channels = await (await fetch(`${server.url}/api/channels`)).json();
    assert.ok(channels.channels.some((c: { channel: string; subscribers: number }) => c.channel === 'present' && c.subscribers === 1));
    member.close();
  });

  const errors: [string, () => Promise<{ status: number; body: Record<string, any> }>, number, string][] = [
    ['bad JSON', () => post(server, '/api/publish', '{nope'), 400, 'bad_request'],
    ['a missing channel', () => post(server, '/api/publish', '{"data":1}'), 400, 'bad_request'],
    ['missing data', () => post(server, '/api/publish', '{"channel":"x"}'), 400, 'bad_request'],
    ['a bad channel name', () => post(server, '/api/publish', '{"channel":"no spaces","data":1}'), 400, 'bad_request'],
    ['a body that is not an object', () => post(server, '/api/publish', '[1]'), 400, 'bad_request'],
    ['an empty broadcast', () => post(server, '/api/broadcast', '{"channels":[],"data":1}'), 400, 'bad_request'],
    ['data over --max-message-size', () => post(server, '/api/publish', JSON.stringify({ channel: 'x', data: 'y'.repeat(2000) })), 413, 'too_large'],
    ['a body far over the limit', () => post(server, '/api/publish', JSON.stringify({ channel: 'x', data: 'y'.repeat(200_000) })), 413, 'too_large'],
    ['a non-JSON content type', () => post(server, '/api/publish', '{"channel":"x","data":1}', { 'Content-Type': 'text/plain' }), 415, 'unsupported_media_type'],
    ['an unknown route', async () => {
      const response = await fetch(`${server.url}/api/nothing`);
      return { status: response.status, body: await response.json() };
    }, 404, 'not_found'],
    ['a bad since position', async () => {
      const response = await fetch(`${server.url}/api/history/hist?since=bogus`);
      return { status: response.status, body: await response.json() };
    }, 400, 'bad_request'],
  ];
  for (const [name, call, status, code] of errors) {
    it(`answers ${status} ${code} for ${name}`, async () => {
      const result = await call();
      assert.equal(result.status, status);
      assert.equal(result.body.error.code, code);
      assert.equal(typeof result.body.error.message, 'string');
    });
  }
});

describe('API key (SPEC §2, --api-key)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer({ 'api-key': 'k3y' })));
  after(() => server.stop());

  it('refuses /api/* without the key or with a wrong one, and accepts the right one', async () => {
    const body = JSON.stringify({ channel: 'secured', data: 1 });
    const none = await post(server, '/api/publish', body);
    const wrong = await post(server, '/api/publish', body, { 'Content-Type': 'application/json', Authorization: 'Bearer nope' });
    const right = await post(server, '/api/publish', body, { 'Content-Type': 'application/json', Authorization: 'Bearer k3y' });
    assert.deepEqual([none.status, wrong.status, right.status], [401, 401, 200]);
    assert.equal(none.body.error.code, 'unauthorized');
  });
});
