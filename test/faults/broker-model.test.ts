import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { MemoryBroker } from '../../src/broker/memory.js';
import type { BrokerListener } from '../../src/broker/broker.js';
import { Hub, type Subscriber, type SubscribeOutcome, type Subscription } from '../../src/core/hub.js';
import type { OutboundPublication } from '../../src/core/outbound.js';
import { formatPosition, type Position } from '../../src/core/position.js';
import type { HistoryQuery, HistoryResult, Publication } from '../../src/core/publication.js';
import { RedisProcess } from '../helpers/brokers.js';
import { parsePosition, StreamClient, verifyStream, type StreamEvent } from '../helpers/faults-broker.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

/**
 * TESTPLAN T15 and T16: the fan-out and the subscribe/history merge checked
 * against issue 8's invariant — every subscriber sees every offset once, in
 * order, or an explicit reset — first with fast-check driving the race
 * in-process, then against real nodes on a real Redis.
 */

const SEED = 0x7e16;

// ---- T16 (a): the race in-process, driven by fast-check's scheduler ----

/**
 * A memory broker whose three asynchronous edges are under the scheduler's
 * control, as they are on Redis: the SUBSCRIBE taking effect, the history
 * read (a snapshot taken at one moment, its reply arriving at another) and
 * each PUB/SUB delivery (in offset order, but at any moment relative to the
 * history reply, since it travels on another connection). Optionally drops
 * deliveries, as a starved subscriber connection does.
 */
class RacingBroker extends MemoryBroker {
  private readonly inFlight: Publication[] = [];

  constructor(
    private readonly s: fc.Scheduler,
    limits: { size: number; ttlSeconds: number },
    private readonly dropped: (pub: Publication) => boolean,
  ) {
    super(limits);
  }

  override async start(listener: BrokerListener): Promise<void> {
    await super.start({
      onPublication: (pub) => {
        this.inFlight.push(pub);
        // Each step delivers the oldest publication in flight: order is kept, timing is the scheduler's.
        void this.s.schedule(Promise.resolve(), 'pubsub delivery').then(() => {
          const next = this.inFlight.shift()!;
          if (!this.dropped(next)) listener.onPublication(next);
        });
      },
      onPresence: (event) => listener.onPresence(event),
      onStateChange: (ready, reason) => listener.onStateChange(ready, reason),
    });
  }

  /** The channel's history is lost (eviction, TTL, a broker restart without persistence): the next publication starts a new epoch. */
  loseHistory(channel: string): void {
    (this as unknown as { streams: Map<string, unknown> }).streams.delete(channel);
  }

  override async subscribe(channel: string): Promise<void> {
    await this.s.schedule(Promise.resolve(), 'SUBSCRIBE');
    return super.subscribe(channel);
  }

  override async history(channel: string, query: HistoryQuery): Promise<HistoryResult> {
    await this.s.schedule(Promise.resolve(), 'history read');
    const snapshot = await super.history(channel, query);
    await this.s.schedule(Promise.resolve(), 'history reply');
    return snapshot;
  }
}

/** A subscriber that records its stream the way herald.v1 puts it on the wire. */
class RecordingSubscriber implements Subscriber {
  readonly tracksPresence = false;
  readonly events: StreamEvent[] = [];
  constructor(readonly id: string) {}

  announce(outcome: SubscribeOutcome): void {
    this.events.push({ type: 'subscribed', position: formatPosition(outcome.position), recovered: outcome.recovered });
    if (outcome.resetReason !== undefined) this.events.push({ type: 'reset', position: formatPosition(outcome.position), reason: outcome.resetReason });
  }

  deliver(pub: OutboundPublication): void {
    this.events.push({ type: 'message', position: pub.position, data: JSON.parse(pub.pub.data) });
  }

  reset(_subscription: unknown, reason: string, position: Position): void {
    this.events.push({ type: 'reset', position: formatPosition(position), reason });
  }

  left(): void {
    this.events.push({ type: 'unsubscribed' });
  }

  /** Where its stream stands: what a client would send as `since` when it comes back. */
  get position(): Position | undefined {
    const last = this.events.at(-1);
    return last && last.type !== 'unsubscribed' ? parse(last.position) : undefined;
  }
}

type SinceChoice = { kind: 'none' } | { kind: 'published'; index: number } | { kind: 'top' } | { kind: 'stale' };

const sinceChoice: fc.Arbitrary<SinceChoice> = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  fc.record({ kind: fc.constant('published' as const), index: fc.nat(12) }),
  fc.constant({ kind: 'top' as const }),
  fc.constant({ kind: 'stale' as const }),
);

const raceScenario = fc.record({
  prePublished: fc.nat(4),
  publishes: fc.integer({ min: 1, max: 10 }),
  subscribers: fc.array(sinceChoice, { minLength: 1, maxLength: 5 }),
  historySize: fc.constantFrom(3, 1000),
  /** Before which scheduled publishes the channel's history is lost. */
  loseHistoryBefore: fc.array(fc.nat(9), { maxLength: 2 }),
  /** Before which scheduled publishes the broker connection drops and comes back (the hub re-checks every channel). */
  reconnectBefore: fc.array(fc.nat(9), { maxLength: 2 }),
  /** Subscribers that leave at some moment and come back with their last position. */
  rejoins: fc.array(fc.nat(3), { maxLength: 2 }),
  /** Lose some PUB/SUB deliveries, then reconnect (the hub re-checks every channel). */
  lossy: fc.boolean(),
  dropMask: fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
});

describe('T16 (a): subscribe while publishing, every interleaving (fast-check scheduler)', () => {
  it('T16: history read vs live arrival — each subscriber gets every offset once, in order, or a reset; 200 seeded runs, no counterexample', async (t) => {
    const started = performance.now();
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), raceScenario, async (s, scenario) => {
        const channel = 'race';
        const broker = new RacingBroker(s, { size: scenario.historySize, ttlSeconds: 300 }, (pub) => scenario.lossy && scenario.dropMask[pub.offset - 1] === true);
        const errors: unknown[] = [];
        const hub = new Hub(broker, { historySize: scenario.historySize }, (err) => errors.push(err));
        await hub.start();
        const positions: string[] = [];
        const publishOne = async () => {
          const position = await hub.publish({ channel, data: JSON.stringify(positions.length + 1) });
          positions.push(formatPosition(position));
        };
        for (let i = 0; i < scenario.prePublished; i++) await publishOne();

        const publisher = (async () => {
          for (let i = 0; i < scenario.publishes; i++) {
            await s.schedule(Promise.resolve(), 'publish');
            if (scenario.loseHistoryBefore.includes(i)) broker.loseHistory(channel);
            if (scenario.reconnectBefore.includes(i)) {
              hub.onStateChange(false);
              hub.onStateChange(true);
            }
            await publishOne();
          }
        })();
        const recorders = scenario.subscribers.map((_, k) => new RecordingSubscriber(`s${k}`));
        const subscriptions = new Map<RecordingSubscriber, Subscription>();
        const join = async (recorder: RecordingSubscriber, since: Position | undefined) => {
          const subscription = await hub.subscribe(recorder, channel, { since }, (_subscription, outcome) => recorder.announce(outcome));
          if (subscription) subscriptions.set(recorder, subscription);
        };
        const joins = scenario.subscribers.map(async (choice, k) => {
          await s.schedule(Promise.resolve(), `subscriber ${k} subscribes`);
          let since: Position | undefined;
          if (choice.kind === 'stale') since = { offset: 1, epoch: 'stale' };
          else if (choice.kind === 'top' && positions.length > 0) since = parse(positions.at(-1)!);
          else if (choice.kind === 'published' && positions.length > 0) since = parse(positions[choice.index % positions.length]!);
          await join(recorders[k]!, since);
          if (!scenario.rejoins.includes(k)) return;
          await s.schedule(Promise.resolve(), `subscriber ${k} leaves`);
          hub.unsubscribe(subscriptions.get(recorders[k]!)!);
          recorders[k]!.left();
          await s.schedule(Promise.resolve(), `subscriber ${k} comes back`);
          await join(recorders[k]!, recorders[k]!.position ?? parse(positions.at(-1) ?? '0:none'));
        });
        await drain(s, Promise.all([publisher, ...joins]));
        if (scenario.lossy) {
          // Losses at the end of the run are only noticed by a re-check: what the hub does once the broker is back.
          hub.onStateChange(false);
          hub.onStateChange(true);
          await drain(s, Promise.resolve());
        }
        await broker.close();

        const top = positions.at(-1)!;
        for (const recorder of recorders) {
          const verdict = verifyStream(recorder.events);
          assert.deepEqual(verdict.problems, [], `${recorder.id}: ${JSON.stringify(recorder.events)}\n${s.report().map((r) => r.label).join(' → ')}`);
          assert.equal(verdict.cursor && formatPosition(verdict.cursor), top, `${recorder.id} reached the top: ${JSON.stringify(recorder.events)}`);
        }
        assert.deepEqual(errors, []);
      }),
      { seed: Number(process.env.T16_SEED ?? SEED), path: process.env.T16_PATH, numRuns: Number(process.env.T16_RUNS ?? 200), includeErrorInReport: true },
    );
    t.diagnostic(`200 scheduled runs in ${(performance.now() - started).toFixed(0)} ms`);
  });
});

/** Releases scheduled tasks one by one until `work` has settled and nothing is left scheduled. */
async function drain(s: fc.Scheduler, work: Promise<unknown>): Promise<void> {
  let settled = false;
  const outcome = work.finally(() => (settled = true));
  for (let idle = 0; idle < 100; ) {
    if (s.count() > 0) {
      idle = 0;
      await s.waitOne();
    } else if (settled && idle >= 3) {
      break; // nothing scheduled for a few turns of the event loop: done
    } else {
      idle++;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  assert.ok(settled && s.count() === 0, 'the scenario finished (nothing hangs)');
  await outcome;
}

// ---- T15: fan-out, model-based, two nodes on a real Redis ----

const T15_HISTORY = 4;
const T15_CHANNELS = ['a', 'b'];
const T15_CLIENTS = 3;

interface ClientModel {
  node: number;
  connected: boolean;
  /** Channels it wants (kept across a disconnect, like herald/client), with the last offset it holds. */
  readonly wanted: Map<string, number>;
  /** Per channel, each subscription of its current connection: the offsets it must receive, and whether a reset comes first. */
  readonly expected: Map<string, Expected[]>;
}

interface Expected {
  readonly offsets: number[];
  readonly reset: boolean;
}

interface FanOutModel {
  readonly tops: Map<string, number>;
  readonly clients: ClientModel[];
}

interface ClientReal {
  connection: StreamClient | undefined;
  /** Every connection it had, with what the model expected of each when it ended. */
  readonly finished: { connection: StreamClient; expected: Map<string, Expected[]> }[];
}

interface FanOutReal {
  readonly nodes: TestServer[];
  readonly channel: (name: string) => string;
  readonly epochs: Map<string, string>;
  readonly published: Map<string, Map<string, string>>;
  readonly clients: ClientReal[];
}

type FanOutCommand = fc.AsyncCommand<FanOutModel, FanOutReal>;

class SubscribeCommand implements FanOutCommand {
  constructor(readonly client: number, readonly channel: string) {}
  check(m: Readonly<FanOutModel>): boolean {
    const c = m.clients[this.client]!;
    return c.connected && !c.wanted.has(this.channel);
  }
  async run(m: FanOutModel, r: FanOutReal): Promise<void> {
    const answer = await r.clients[this.client]!.connection!.subscribe(r.channel(this.channel));
    const at = parsePosition(String(answer.position));
    assert.equal(at.offset, m.tops.get(this.channel), 'a fresh subscription starts at the top');
    r.epochs.set(this.channel, at.epoch);
    const c = m.clients[this.client]!;
    c.wanted.set(this.channel, at.offset);
    subscriptionsOf(c, this.channel).push({ offsets: [], reset: false });
  }
  toString(): string {
    return `subscribe(c${this.client}, ${this.channel})`;
  }
}

class UnsubscribeCommand implements FanOutCommand {
  constructor(readonly client: number, readonly channel: string) {}
  check(m: Readonly<FanOutModel>): boolean {
    const c = m.clients[this.client]!;
    return c.connected && c.wanted.has(this.channel);
  }
  async run(m: FanOutModel, r: FanOutReal): Promise<void> {
    await r.clients[this.client]!.connection!.unsubscribe(r.channel(this.channel));
    m.clients[this.client]!.wanted.delete(this.channel);
  }
  toString(): string {
    return `unsubscribe(c${this.client}, ${this.channel})`;
  }
}

class PublishCommand implements FanOutCommand {
  constructor(readonly node: number, readonly channel: string) {}
  check(): boolean {
    return true;
  }
  async run(m: FanOutModel, r: FanOutReal): Promise<void> {
    const data = { n: (m.tops.get(this.channel) ?? 0) + 1 };
    const response = await fetch(`${r.nodes[this.node]!.url}/api/publish`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ channel: r.channel(this.channel), data }),
    });
    assert.equal(response.status, 200);
    const position = String(((await response.json()) as { position: string }).position);
    const at = parsePosition(position);
    const top = m.tops.get(this.channel)! + 1;
    assert.equal(at.offset, top, 'offsets grow by one per publication, whichever node publishes');
    if (r.epochs.has(this.channel)) assert.equal(at.epoch, r.epochs.get(this.channel), 'one epoch');
    r.epochs.set(this.channel, at.epoch);
    r.published.get(this.channel)!.set(position, JSON.stringify(data));
    m.tops.set(this.channel, top);
    // Every connected subscriber, on either node, receives it.
    for (const [index, client] of m.clients.entries()) {
      if (!client.connected || !client.wanted.has(this.channel)) continue;
      subscriptionsOf(client, this.channel).at(-1)!.offsets.push(top);
      client.wanted.set(this.channel, top);
      const connection = r.clients[index]!.connection!;
      await connection.waitUntil(() => connection.lastOffset(r.channel(this.channel)) >= top, 5000, `c${index} receives ${this.channel}:${top}`);
    }
  }
  toString(): string {
    return `publish(node ${this.node}, ${this.channel})`;
  }
}

class DisconnectCommand implements FanOutCommand {
  constructor(readonly client: number) {}
  check(m: Readonly<FanOutModel>): boolean {
    return m.clients[this.client]!.connected;
  }
  async run(m: FanOutModel, r: FanOutReal): Promise<void> {
    const real = r.clients[this.client]!;
    const c = m.clients[this.client]!;
    real.connection!.close();
    await real.connection!.closed;
    real.finished.push({ connection: real.connection!, expected: new Map(c.expected) });
    real.connection = undefined;
    c.connected = false;
    c.expected.clear();
  }
  toString(): string {
    return `disconnect(c${this.client})`;
  }
}

class ReconnectCommand implements FanOutCommand {
  constructor(readonly client: number, readonly node: number) {}
  check(m: Readonly<FanOutModel>): boolean {
    return !m.clients[this.client]!.connected;
  }
  async run(m: FanOutModel, r: FanOutReal): Promise<void> {
    const real = r.clients[this.client]!;
    const c = m.clients[this.client]!;
    const connection = await StreamClient.open(r.nodes[this.node]!.wsUrl);
    real.connection = connection;
    c.connected = true;
    c.node = this.node;
    // Resubscribe every wanted channel from the last position held, as herald/client does.
    for (const [channel, last] of c.wanted) {
      const top = m.tops.get(channel)!;
      const answer = await connection.subscribe(r.channel(channel), `${last}:${r.epochs.get(channel)}`);
      const recoverable = top - last <= T15_HISTORY;
      assert.equal(answer.recovered, recoverable, `resume of ${channel} from ${last} with top ${top} and history ${T15_HISTORY}`);
      const offsets = recoverable ? Array.from({ length: top - last }, (_, i) => last + 1 + i) : [];
      subscriptionsOf(c, channel).push({ offsets, reset: !recoverable });
      c.wanted.set(channel, top);
      await connection.waitUntil(
        () => (recoverable ? top === last || connection.lastOffset(r.channel(channel)) >= top : connection.events(r.channel(channel)).some((e) => e.type === 'reset')),
        5000,
        `c${this.client} caught up in ${channel}`,
      );
    }
  }
  toString(): string {
    return `reconnect(c${this.client}, node ${this.node})`;
  }
}

const fanOutCommands = [
  fc.tuple(fc.nat(T15_CLIENTS - 1), fc.constantFrom(...T15_CHANNELS)).map(([c, ch]) => new SubscribeCommand(c, ch)),
  fc.tuple(fc.nat(T15_CLIENTS - 1), fc.constantFrom(...T15_CHANNELS)).map(([c, ch]) => new UnsubscribeCommand(c, ch)),
  fc.tuple(fc.nat(1), fc.constantFrom(...T15_CHANNELS)).map(([n, ch]) => new PublishCommand(n, ch)),
  fc.tuple(fc.nat(1), fc.constantFrom(...T15_CHANNELS)).map(([n, ch]) => new PublishCommand(n, ch)),
  fc.nat(T15_CLIENTS - 1).map((c) => new DisconnectCommand(c)),
  fc.tuple(fc.nat(T15_CLIENTS - 1), fc.nat(1)).map(([c, n]) => new ReconnectCommand(c, n)),
];

describe('T15: fan-out across two nodes on a real Redis, model-based (fc.commands)', () => {
  let redis: RedisProcess;
  let nodes: TestServer[];

  before(async () => {
    redis = await RedisProcess.start();
    nodes = await Promise.all([0, 1].map(() => startTestServer({ broker: `${redis.url}?probe_interval=0.5`, 'history-size': T15_HISTORY, 'log-level': 'warn' })));
  });

  after(async () => {
    await Promise.all(nodes.map((node) => node.stop()));
    await redis.stop();
  });

  it('T15: every client gets exactly the offsets published while it was subscribed, plus recovered runs or a reset; unsubscribed clients get none', async (t) => {
    const started = performance.now();
    let run = 0;
    let commandsRun = 0;
    await fc.assert(
      fc.asyncProperty(fc.commands(fanOutCommands, { maxCommands: 20, size: 'max' }), async (commands) => {
        const prefix = `t15-${++run}-`;
        const model: FanOutModel = {
          tops: new Map(T15_CHANNELS.map((ch) => [ch, 0])),
          clients: Array.from({ length: T15_CLIENTS }, (_, i) => ({ node: i % 2, connected: true, wanted: new Map(), expected: new Map() })),
        };
        const real: FanOutReal = {
          nodes,
          channel: (name) => prefix + name,
          epochs: new Map(),
          published: new Map(T15_CHANNELS.map((ch) => [ch, new Map()])),
          clients: await Promise.all(model.clients.map(async (c) => ({ connection: await StreamClient.open(nodes[c.node]!.wsUrl), finished: [] }))),
        };
        try {
          await fc.asyncModelRun(() => ({ model, real }), commands);
          commandsRun += [...commands].length;
          // What each connection got must be exactly what the model expected of it — no more (nothing after an
          // unsubscribe, nothing in channels it never joined), no less, in order, each offset once.
          for (const [index, client] of real.clients.entries()) {
            const connections = [...client.finished];
            if (client.connection) connections.push({ connection: client.connection, expected: model.clients[index]!.expected });
            for (const { connection, expected } of connections) {
              for (const ch of T15_CHANNELS) {
                const events = connection.events(real.channel(ch));
                const verdict = verifyStream(events, real.published.get(ch));
                assert.deepEqual(verdict.problems, [], `c${index} in ${ch}: ${JSON.stringify(events)}`);
                const got = bySubscription(events);
                const wanted = expected.get(ch) ?? [];
                assert.deepEqual(got.map((g) => g.offsets), wanted.map((w) => w.offsets), `c${index} in ${ch}: offsets per subscription`);
                assert.deepEqual(got.map((g) => g.reset), wanted.map((w) => w.reset), `c${index} in ${ch}: a reset exactly where history could not cover the resume`);
              }
            }
          }
        } finally {
          for (const client of real.clients) client.connection?.close();
        }
      }),
      { seed: SEED, numRuns: Number(process.env.T15_RUNS ?? 100), includeErrorInReport: true },
    );
    t.diagnostic(`${run} runs, ${commandsRun} commands in ${(performance.now() - started).toFixed(0)} ms`);
  });
});

function subscriptionsOf(client: ClientModel, channel: string): Expected[] {
  let list = client.expected.get(channel);
  if (!list) client.expected.set(channel, (list = []));
  return list;
}

// ---- T16 (b): the same race for real ----

describe('T16 (b): subscribe with `since` while publishing, two nodes on a real Redis', () => {
  it('T16: a publisher at a steady rate, 50 clients resuming at random moments on either node — each stream is since+1…top, no gap, no duplicate', async (t) => {
    const redis = await RedisProcess.start();
    const settings = { broker: `${redis.url}?probe_interval=0.5`, 'history-size': 100_000, 'message-rate': 1_000_000, 'message-burst': 1_000_000, 'log-level': 'warn' } as const;
    const nodes = await Promise.all([0, 1].map(() => startTestServer(settings)));
    const clients: { client: StreamClient; since: string | undefined }[] = [];
    try {
      const channel = 'storm';
      const publisher = await StreamClient.open(nodes[0]!.wsUrl);
      const acked: string[] = [];
      const published = new Map<string, string>();
      const perSecond = 2000;
      const started = performance.now();
      let publishing = true;
      // Several publishes in flight at once, paced to a steady rate; every acknowledged position is kept.
      const lanes = Array.from({ length: 8 }, async () => {
        while (publishing) {
          const due = ((performance.now() - started) / 1000) * perSecond;
          if (acked.length >= due) {
            await new Promise((resolve) => setTimeout(resolve, 2));
            continue;
          }
          const data = { n: acked.length };
          const answer = await publisher.command({ type: 'publish', channel, data });
          assert.equal(answer.type, 'published', JSON.stringify(answer));
          acked.push(String(answer.position));
          published.set(String(answer.position), JSON.stringify(data));
        }
      });
      const joins = Array.from({ length: 50 }, async (_, i) => {
        const threshold = 50 + Math.floor(Math.random() * 3000);
        await until(() => acked.length >= threshold, 20_000, `publisher reached ${threshold}`);
        const client = await StreamClient.open(nodes[i % 2]!.wsUrl);
        // Most resume from a recent position (often still in flight to the other node); a few subscribe fresh.
        const since = i % 10 === 9 ? undefined : acked[Math.max(0, acked.length - 1 - Math.floor(Math.random() * 200))];
        clients.push({ client, since });
        const answer = await client.subscribe(channel, since);
        assert.equal(answer.recovered, since !== undefined, 'every resume point is within history');
      });
      await Promise.all(joins);
      const stopAt = acked.length + 500;
      await until(() => acked.length >= stopAt, 20_000, 'publishing after the last subscribe');
      publishing = false;
      await Promise.all(lanes);
      const seconds = (performance.now() - started) / 1000;
      const top = Math.max(...acked.map((p) => parsePosition(p).offset));
      for (const { client, since } of clients) {
        await client.waitUntil(() => client.lastOffset(channel) === top, 10_000, 'caught up to the top');
        const events = client.events(channel);
        const verdict = verifyStream(events, published);
        assert.deepEqual(verdict.problems, [], `since ${since}: ${verdict.problems.slice(0, 5).join('; ')}`);
        assert.equal(verdict.resets.length, 0, 'nothing to reset: history holds everything');
        const from = parsePosition(String((events[0] as { position: string }).position)).offset;
        if (since !== undefined) assert.equal(from, parsePosition(since).offset, 'the stream continues from since');
        assert.equal(verdict.offsets.length, top - from, `every offset from ${from + 1} to ${top} once`);
      }
      t.diagnostic(`${acked.length} publications in ${seconds.toFixed(1)} s (${(acked.length / seconds).toFixed(0)}/s, target ${perSecond}/s); 50 subscribers joined at random moments on 2 nodes, all contiguous`);
      publisher.close();
    } finally {
      for (const { client } of clients) client.close();
      await Promise.all(nodes.map((node) => node.stop()));
      await redis.stop();
    }
  });
});

/** One connection's events in a channel, split at each `subscribed` answer: the offsets and whether a reset came. */
function bySubscription(events: readonly StreamEvent[]): Expected[] {
  const subscriptions: { offsets: number[]; reset: boolean }[] = [];
  for (const event of events) {
    if (event.type === 'subscribed') subscriptions.push({ offsets: [], reset: false });
    else if (event.type === 'message') subscriptions.at(-1)?.offsets.push(parsePosition(event.position).offset);
    else if (event.type === 'reset') subscriptions.at(-1)!.reset = true;
  }
  return subscriptions;
}

function parse(position: string): Position {
  const [offset, epoch] = position.split(':');
  return { offset: Number(offset), epoch: epoch! };
}
