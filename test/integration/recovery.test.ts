import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryBroker } from '../../src/broker/memory.js';
import type { HistoryQuery, HistoryResult } from '../../src/core/publication.js';
import { ProtocolSocket, epochOf, offsetOf, type Frame } from '../helpers/protocol.js';
import { publish, startTestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

/** Offsets of the publications `peer` received in `channel`, in arrival order. */
function offsets(peer: ProtocolSocket, channel: string): number[] {
  return peer.messagesIn(channel).map((m) => offsetOf(m.position));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

async function publishMany(server: { url: string }, channel: string, count: number): Promise<string[]> {
  const positions: string[] = [];
  for (let i = 0; i < count; i++) positions.push((await publish(server, channel, { i })).position);
  return positions;
}

describe('recovery with since (SPEC §3b, §5)', () => {
  it('delivers exactly the publications after since, in order, then goes live with no gap or duplicate', async () => {
    const server = await startTestServer();
    const positions = await publishMany(server, 'rec', 10);
    const peer = await ProtocolSocket.open(server.wsUrl);
    const answer = await peer.command({ type: 'subscribe', channel: 'rec', since: positions[2] });
    assert.equal(answer.recovered, true);
    assert.equal(answer.position, positions[2], 'the stream continues from since');
    await peer.waitForMessages('rec', 7);
    assert.deepEqual(peer.messagesIn('rec').map((m) => m.position), positions.slice(3));
    assert.deepEqual(peer.messagesIn('rec').map((m) => m.data), range(3, 9).map((i) => ({ i })));
    const live = await publish(server, 'rec', 'live');
    await peer.waitForMessages('rec', 8);
    assert.equal(peer.messagesIn('rec')[7]!.position, live.position);
    assert.ok(!peer.frames.some((f) => f.type === 'reset'));
    peer.close();
    await server.stop();
  });

  it('recovers nothing, with recovered:true, when since is the current top', async () => {
    const server = await startTestServer();
    const positions = await publishMany(server, 'top', 3);
    const peer = await ProtocolSocket.open(server.wsUrl);
    const answer = await peer.command({ type: 'subscribe', channel: 'top', since: positions[2] });
    assert.deepEqual([answer.recovered, answer.position], [true, positions[2]]);
    const live = await publish(server, 'top', 'next');
    assert.equal((await peer.next('message')).position, live.position);
    assert.equal(peer.messagesIn('top').length, 1);
    peer.close();
    await server.stop();
  });

  it('starts a subscription without since at the current top, and delivers only what follows', async () => {
    const server = await startTestServer();
    const positions = await publishMany(server, 'fresh', 3);
    const peer = await ProtocolSocket.open(server.wsUrl);
    const answer = await peer.command({ type: 'subscribe', channel: 'fresh' });
    assert.deepEqual([answer.recovered, answer.position], [false, positions[2]]);
    const live = await publish(server, 'fresh', 'next');
    assert.equal((await peer.next('message')).position, live.position);
    assert.ok(!peer.frames.some((f) => f.type === 'reset'), 'no since, nothing to reset');
    peer.close();
    await server.stop();
  });

  const impossible: [string, (positions: string[]) => string, string][] = [
    ['an unknown epoch', (p) => `1:${epochOf(p[0])}x`, 'epoch changed'],
    ['an offset beyond the top', (p) => `${offsetOf(p[p.length - 1]) + 5}:${epochOf(p[0])}`, 'position ahead of history'],
    ['a position older than the history kept', (p) => p[0]!, 'history expired'],
    ['a malformed position', () => 'garbage', 'invalid position'],
    ['a negative offset', (p) => `-1:${epochOf(p[0])}`, 'invalid position'],
  ];
  for (const [what, since, reason] of impossible) {
    it(`answers since = ${what} with recovered:false and a reset "${reason}", then continues live`, async () => {
      const server = await startTestServer({ 'history-size': 5 });
      const positions = await publishMany(server, 'gone', 10);
      const peer = await ProtocolSocket.open(server.wsUrl);
      const answer = await peer.command({ type: 'subscribe', channel: 'gone', since: since(positions) });
      assert.equal(answer.type, 'subscribed');
      assert.equal(answer.recovered, false);
      assert.equal(answer.position, positions[9], 'continues from the current top');
      const reset = await peer.next('reset');
      assert.deepEqual(reset, { type: 'reset', channel: 'gone', reason, position: positions[9] });
      assert.equal(peer.messagesIn('gone').length, 0, 'nothing from history after a reset');
      const live = await publish(server, 'gone', 'after');
      assert.equal((await peer.next('message')).position, live.position);
      peer.close();
      await server.stop();
    });
  }

  it('resets a resume after the channel history expired (new epoch)', async () => {
    const server = await startTestServer({ 'history-ttl': 0.1 });
    const old = await publish(server, 'ttl', 'old');
    const broker = server.ctx.hub.broker as MemoryBroker;
    await until(() => broker.streamCount === 0, 5000, 'history freed');
    const peer = await ProtocolSocket.open(server.wsUrl);
    const answer = await peer.command({ type: 'subscribe', channel: 'ttl', since: old.position });
    assert.equal(answer.recovered, false);
    assert.equal((await peer.next('reset')).reason, 'epoch changed');
    peer.close();
    await server.stop();
  });

  it('keeps a live subscriber on its epoch when the quiet channel history expires: no reset, the next offset follows', async () => {
    const server = await startTestServer({ 'history-ttl': 0.1 });
    const peer = await ProtocolSocket.open(server.wsUrl);
    await peer.command({ type: 'subscribe', channel: 'epoch' });
    const first = await publish(server, 'epoch', 1);
    await peer.next('message');
    const broker = server.ctx.hub.broker as MemoryBroker;
    await until(() => broker.historyCount === 0, 5000, 'history freed');
    assert.equal(broker.streamCount, 1, 'the position stays while the channel has subscribers');
    const second = await publish(server, 'epoch', 2);
    assert.equal(epochOf(second.position), epochOf(first.position));
    const message = await peer.next('message');
    assert.equal(message.position, second.position);
    assert.match(second.position, /^2:/);
    assert.deepEqual(peer.frames.filter((f) => f.type === 'reset'), []);
    // A resume from before the freed publications cannot be filled: reset, with the reason.
    const late = await ProtocolSocket.open(server.wsUrl);
    await until(() => broker.historyCount === 0, 5000, 'history freed again');
    const answer = await late.command({ type: 'subscribe', channel: 'epoch', since: `0:${epochOf(first.position)}` });
    assert.equal(answer.recovered, false);
    assert.equal((await late.next('reset')).reason, 'history expired');
    late.close();
    peer.close();
    await server.stop();
  });
});

/**
 * A memory broker whose history read can be held open, so a test can
 * publish while a subscribe is between "subscribed to the live stream" and
 * "history read" — the race the hub's merge exists for.
 */
class GatedBroker extends MemoryBroker {
  private gate: { opened: Promise<void>; open: () => void; entered: () => void } | undefined;
  /** true: read history, then wait (live publications are missing from it); false: wait, then read (they are in both). */
  readBeforeGate = false;

  /** Holds the next history read; resolves once a read is being held. */
  hold(): { held: Promise<void>; release: () => void } {
    let open!: () => void;
    let entered!: () => void;
    const opened = new Promise<void>((resolve) => (open = resolve));
    const held = new Promise<void>((resolve) => (entered = resolve));
    this.gate = { opened, open, entered };
    return { held, release: open };
  }

  override async history(channel: string, query: HistoryQuery): Promise<HistoryResult> {
    const gate = this.gate;
    if (!gate) return super.history(channel, query);
    this.gate = undefined;
    gate.entered();
    if (this.readBeforeGate) {
      const result = await super.history(channel, query);
      await gate.opened;
      return result;
    }
    await gate.opened;
    return super.history(channel, query);
  }
}

describe('the subscribe/publish race (TESTPLAN T16)', () => {
  for (const readBeforeGate of [true, false]) {
    const when = readBeforeGate ? 'after the history read (only on the live path)' : 'before the history read (in both)';
    it(`delivers publications that arrive ${when} exactly once, in order`, async () => {
      const broker = new GatedBroker({ size: 1000, ttlSeconds: 60 });
      broker.readBeforeGate = readBeforeGate;
      const server = await startTestServer({}, { broker });
      const positions = await publishMany(server, 'race', 5);
      const peer = await ProtocolSocket.open(server.wsUrl);
      const { held, release } = broker.hold();
      peer.send({ id: 1, type: 'subscribe', channel: 'race', since: positions[1] });
      await held;
      const during = await publishMany(server, 'race', 4);
      release();
      const answer = await peer.next('subscribed');
      assert.deepEqual([answer.recovered, answer.position], [true, positions[1]]);
      await peer.waitForMessages('race', 7);
      const live = await publish(server, 'race', 'live');
      await peer.waitForMessages('race', 8);
      assert.deepEqual(peer.messagesIn('race').map((m) => m.position), [...positions.slice(2), ...during, live.position]);
      peer.close();
      await server.stop();
    });
  }

  it('gives subscribers that resume at random moments under continuous publishing contiguous, unique offsets', async () => {
    const server = await startTestServer({ 'history-size': 100_000, 'message-rate': 1_000_000, 'message-burst': 1_000_000, 'log-level': 'warn' });
    const publisher = await ProtocolSocket.open(server.wsUrl);
    const acked: string[] = [];
    let publishing = true;
    // Several publishes in flight at once, so fan-out and subscribes interleave at every step.
    const lanes = Array.from({ length: 4 }, async () => {
      while (publishing) acked.push(String((await publisher.command({ type: 'publish', channel: 'storm', data: acked.length })).position));
    });
    const subscribers: { peer: ProtocolSocket; from: number }[] = [];
    const joins = Array.from({ length: 40 }, async (_, i) => {
      const threshold = 20 + Math.floor(Math.random() * 600);
      await until(() => acked.length >= threshold, 20_000, `publisher reached ${threshold}`);
      const peer = await ProtocolSocket.open(server.wsUrl);
      // Most resume from an earlier position; a few subscribe fresh.
      const since = i % 8 === 7 ? undefined : acked[Math.floor(Math.random() * acked.length)];
      const answer = await peer.command({ type: 'subscribe', channel: 'storm', since });
      assert.equal(answer.recovered, since !== undefined, 'every resume point is within history');
      subscribers.push({ peer, from: offsetOf(answer.position) + 1 });
    });
    await Promise.all(joins);
    const stopAt = acked.length + 200;
    await until(() => acked.length >= stopAt, 20_000, 'publishing after the last subscribe');
    publishing = false;
    await Promise.all(lanes);
    const top = Math.max(...acked.map(offsetOf));
    for (const { peer, from } of subscribers) {
      await until(() => offsets(peer, 'storm').at(-1) === top, 10_000, 'subscriber caught up to the top');
      const got = offsets(peer, 'storm');
      assert.deepEqual(got, range(from, top), `contiguous from ${from} to ${top} with no gap or duplicate`);
      assert.ok(!peer.frames.some((f: Frame) => f.type === 'reset'));
      peer.close();
    }
    publisher.close();
    await server.stop();
  });
});
