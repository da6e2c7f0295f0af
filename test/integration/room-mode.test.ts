import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

describe('WebSocket room mode (SPEC §3a)', () => {
  let server: TestServer;
  before(async () => (server = await startTestServer()));
  after(() => server.stop());

  it('closes 4001 "Room ID required" without ?room=', async () => {
    const socket = await TestSocket.open(server.wsUrl);
    const { code, reason } = await socket.closed;
    assert.equal(code, 4001);
    assert.equal(reason, 'Room ID required');
  });

  it('delivers a message verbatim to every other member, not back to the sender', async () => {
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => TestSocket.open(`${server.wsUrl}?room=lobby`)));
    await waitForSubscribers(server, 'lobby', 3);
    const text = '{ "text" : "hi",\n "n": 1 }';
    a!.send(text);
    assert.equal(await b!.waitFor(() => true), text);
    assert.equal(await c!.waitFor(() => true), text);
    // a sends again; if a had received its own first message it would be first in its log
    b!.send('"second"');
    assert.equal(await a!.waitFor(() => true), '"second"');
    assert.deepEqual(a!.messages, ['"second"']);
    for (const s of [a, b, c]) s!.close();
  });

  it('delivers API publications as their data JSON alone', async () => {
    const member = await TestSocket.open(`${server.wsUrl}?room=news`);
    await waitForSubscribers(server, 'news', 1);
    await publish(server, 'news', { headline: 'x' }, 'story');
    assert.equal(await member.waitFor(() => true), '{"headline":"x"}');
    member.close();
  });

  for (const [name, send, code] of [
    ['not JSON', (s: TestSocket) => s.ws.send('not json'), 1007],
    ['a binary frame', (s: TestSocket) => s.ws.send(Buffer.from('{}')), 1003],
    ['an oversized message', (s: TestSocket) => s.ws.send(JSON.stringify('x'.repeat(70_000))), 1009],
  ] as const) {
    it(`closes ${code} for ${name}, and other members are unaffected`, async () => {
      const [bad, good, other] = await Promise.all([1, 2, 3].map(() => TestSocket.open(`${server.wsUrl}?room=r-${code}`)));
      await waitForSubscribers(server, `r-${code}`, 3);
      send(bad!);
      assert.equal((await bad!.closed).code, code);
      good!.send('{"still":"here"}');
      assert.equal(await other!.waitFor(() => true), '{"still":"here"}');
      good!.close();
      other!.close();
    });
  }

  it('frees a room when its last member leaves', async () => {
    const member = await TestSocket.open(`${server.wsUrl}?room=ephemeral`);
    await waitForSubscribers(server, 'ephemeral', 1);
    member.close();
    await member.closed;
    await until(() => server.ctx.hub.subscriberCount('ephemeral') === 0 && !server.ctx.hub.listChannels().some((c) => c.channel === 'ephemeral'));
  });
});


