import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_JSON_DEPTH } from '../../src/protocol/json-depth.js';
import { ProtocolSocket, type Frame } from '../helpers/protocol.js';
import { startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';
import { SseReader } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

/**
 * Property-based fuzz of the herald.v1 parser and room-mode input (issue 5
 * #9, TESTPLAN P1/P2/T05): random bytes and strings, deep JSON, huge
 * numbers, wrong types, __proto__/constructor keys. The server must answer
 * with a documented error or close code (never 1011, never a crash), a
 * bystander on the same channel keeps receiving, and nothing is polluted.
 */

const SEED = 20260505;
const RUNS = 120;
const MAX_MESSAGE_SIZE = 65536;
/** SPEC §3b error codes a fuzzed command may earn; `unavailable` would mean a bug, the memory broker is always up. */
const FUZZ_ERROR_CODES = new Set(['bad_request', 'forbidden', 'not_found', 'too_large']);
/** Close codes for bad input (SPEC §3a/§3c): binary 1003, not JSON / bad UTF-8 1007, too large 1009. */
const INPUT_CLOSE_CODES = new Set([1003, 1007, 1009]);

/** A JSON fragment written as is, for what JSON.stringify cannot produce (1e400, 10k nesting, own __proto__ keys). */
class Raw {
  constructor(readonly text: string) {}
}
type Value = unknown;

function toJsonText(value: Value): string {
  if (value instanceof Raw) return value.text;
  if (Array.isArray(value)) return `[${value.map(toJsonText).join(',')}]`;
  if (value instanceof Map) return `{${[...value].map(([k, v]) => `${JSON.stringify(k)}:${toJsonText(v)}`).join(',')}}`;
  return JSON.stringify(value) ?? 'null';
}

const deep = (depth: number, pretty: boolean) => new Raw((pretty ? '[\n' : '[').repeat(depth) + ']'.repeat(depth));
const deepObject = (depth: number) => new Raw('{"a":'.repeat(depth) + '1' + '}'.repeat(depth));
const hugeNumbers = fc.constantFrom('1e400', '-1e400', '1e-400', '-0', '123456789012345678901234567890', '9007199254740993', '0.1e999999').map((t) => new Raw(t));
const nastyKeys = fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', 'polluted');
const pollution = fc.constantFrom(new Raw('{"polluted":true}'), new Raw('{"prototype":{"polluted":true}}'), new Raw('{"toString":1,"valueOf":1}'));

const anyValue: fc.Arbitrary<Value> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: hugeNumbers },
  { weight: 1, arbitrary: pollution },
  { weight: 1, arbitrary: fc.constantFrom(10, 100, 1000, 5000, 10_000).chain((d) => fc.constantFrom(deep(d, false), deep(d, true), deepObject(d))) },
  { weight: 1, arbitrary: fc.constantFrom(1000, 60_000, 70_000).map((n) => 'x'.repeat(n)) },
);

const commandType = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('subscribe', 'unsubscribe', 'publish', 'history', 'presence', 'auth', 'pong') },
  { weight: 1, arbitrary: fc.constantFrom('bogus', '__proto__', 'constructor', 'toString', '') },
  { weight: 1, arbitrary: anyValue },
);
const commandId = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 1_000_000 }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, 1.5, 2 ** 53, -(2 ** 53), '7', null, true).map((v) => v as Value) },
  { weight: 1, arbitrary: hugeNumbers },
);
const channelName = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('fuzz', 'fuzz-other', 'a', 'x:y/z=1,2@3') },
  { weight: 1, arbitrary: fc.string({ maxLength: 300 }) },
  { weight: 1, arbitrary: anyValue },
);

/** A herald.v1 command: known fields with good or bad values, plus nasty extra keys, as a key→value Map (keeps own __proto__). */
const command: fc.Arbitrary<Value> = fc
  .tuple(
    fc.record(
      {
        id: commandId,
        type: commandType,
        channel: channelName,
        data: anyValue,
        event: fc.oneof(fc.constantFrom('e', 'order.paid', 'a\nb', ''), anyValue),
        since: fc.oneof(fc.constantFrom('0:abc', '1:zzz', '-1:x', '999999999999:e', 'garbage'), anyValue),
        limit: fc.oneof(fc.integer({ min: -5, max: 1_000_000_000 }), anyValue),
        presence: fc.oneof(fc.boolean(), anyValue),
        token: fc.oneof(fc.string(), anyValue),
      },
      { requiredKeys: ['id', 'type'] },
    ),
    fc.array(fc.tuple(nastyKeys, anyValue), { maxLength: 3 }),
  )
  .map(([fields, extras]) => new Map<string, Value>([...extras, ...Object.entries(fields)]));

interface Sent {
  readonly kind: 'text' | 'binary';
  readonly bytes: Buffer;
}

/** A frame that prints short in counterexamples (a 70 KB buffer would drown the report). */
function sent(kind: Sent['kind'], bytes: Buffer): Sent {
  return {
    kind,
    bytes,
    [fc.toStringMethod]: () => `${kind}(${bytes.length} B: ${JSON.stringify(bytes.toString('utf8').slice(0, 120))})`,
  } as Sent;
}
const text = (value: string): Sent => sent('text', Buffer.from(value));

/** One frame of fuzz: mostly JSON-ish text, some raw strings, invalid UTF-8 and binary. */
const frame = (jsonish: fc.Arbitrary<Value>): fc.Arbitrary<Sent> =>
  fc.oneof(
    { weight: 8, arbitrary: jsonish.map((v) => text(toJsonText(v))) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => text(JSON.stringify(v, null, 2))) },
    { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }).map(text) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => sent('text', Buffer.from(b))) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => sent('binary', Buffer.from(b))) },
  );

function send(socket: TestSocket, frame: Sent): void {
  socket.ws.send(frame.bytes, { binary: frame.kind === 'binary' });
}

/**
 * What a well-behaved server does with one frame, per SPEC §3: a close code,
 * or nothing (it goes on). Room mode also closes 1007 for JSON nested deeper
 * than MAX_JSON_DEPTH; herald.v1 answers that with bad_request instead.
 */
function closeCodeFor(frame: Sent, limit: number, mode: 'room' | 'protocol'): number | undefined {
  if (frame.bytes.length > limit) return 1009;
  if (frame.kind === 'binary') return 1003;
  if (!isValidUtf8(frame.bytes)) return 1007;
  let value: unknown;
  try {
    value = JSON.parse(frame.bytes.toString('utf8'));
  } catch {
    return 1007;
  }
  if (mode === 'room' && depthOf(value) > MAX_JSON_DEPTH) return 1007;
  return undefined;
}

/** Nesting depth of a parsed JSON value, without recursion (the values here nest 10k deep). */
function depthOf(value: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (typeof item !== 'object' || item === null) continue;
    max = Math.max(max, depth + 1);
    for (const child of Object.values(item)) stack.push([child, depth + 1]);
  }
  return max;
}

function isValidUtf8(bytes: Buffer): boolean {
  return Buffer.from(bytes.toString('utf8')).equals(bytes);
}

function assertNotPolluted(): void {
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.deepEqual(Object.keys(Object.prototype), []);
  assert.equal(typeof Object.prototype.toString, 'function');
}

describe('fuzz: herald.v1 commands and room-mode input (fast-check)', () => {
  let server: TestServer;
  let protocolBystander: ProtocolSocket;
  let roomBystander: TestSocket;
  let sseBystander: SseReader;
  let markers = 0;

  before(async () => {
    server = await startTestServer({ 'max-message-size': MAX_MESSAGE_SIZE, 'log-level': 'info' });
    protocolBystander = await ProtocolSocket.open(server.wsUrl);
    await protocolBystander.command({ type: 'subscribe', channel: 'fuzz' });
    roomBystander = await TestSocket.open(`${server.wsUrl}?room=fuzz`);
    sseBystander = await SseReader.open(`${server.url}/events/fuzz`);
    await sseBystander.waitFor((e) => e.event === 'connected');
    await waitForSubscribers(server, 'fuzz', 3);
  });
  after(async () => {
    protocolBystander.close();
    roomBystander.close();
    sseBystander.close();
    await server.stop();
    const all = server.logs.join('');
    assert.equal(all.includes('message handler failed'), false, 'a handler threw (1011)');
    assert.equal(/"level":(50|60)/.test(all), false, `error logged: ${server.logs.find((l) => /"level":(50|60)/.test(l))?.slice(0, 300)}`);
  });

  /** Publishes a marker and waits until every bystander has it: they are still served, in order. */
  async function bystandersStillServed(): Promise<void> {
    const marker = `marker-${++markers}`;
    await server.ctx.hub.publish({ channel: 'fuzz', data: JSON.stringify(marker) });
    await protocolBystander.next('message', (m) => m.data === marker, 5000);
    await roomBystander.waitFor((t) => t === JSON.stringify(marker), 0, 5000);
    await sseBystander.waitFor((e) => e.data === JSON.stringify(marker), 0, 5000);
    // Bystanders only ever see publications of their channel: no errors, no one else's answers.
    for (const f of protocolBystander.frames.slice(2)) assert.ok(f.type === 'ping' || (f.type === 'message' && f.channel === 'fuzz'), `bystander got ${JSON.stringify(f).slice(0, 200)}`);
    for (const t of roomBystander.messages) JSON.parse(t);
    for (const e of sseBystander.events) JSON.parse(e.data);
    protocolBystander.socket.messages.length = 0;
    roomBystander.messages.length = 0;
    sseBystander.events.length = 0;
    // ProtocolSocket keeps a cursor into the messages; start it over with them.
    (protocolBystander as unknown as { cursor: number }).cursor = 0;
  }

  it('herald.v1: every frame earns a documented answer or close code; bystanders keep receiving', async () => {
    const limit = MAX_MESSAGE_SIZE + 4096; // herald.v1 frames get the command envelope on top (docs/decisions.md)
    await fc.assert(
      fc.asyncProperty(fc.array(frame(fc.oneof({ weight: 5, arbitrary: command }, { weight: 1, arbitrary: anyValue })), { minLength: 1, maxLength: 6 }), async (frames) => {
        await bystandersStillServed(); // also clears what an earlier failing run left behind
        const peer = await TestSocket.open(server.wsUrl, 'herald.v1');
        await peer.waitFor(() => true);
        // The model: which frames are answered with their id, which with an id-less error, and where the server must close.
        const expectedIds: number[] = [];
        let idless = 0;
        let expectedClose: number | undefined;
        for (const frame of frames) {
          send(peer, frame);
          expectedClose = closeCodeFor(frame, limit, 'protocol');
          if (expectedClose !== undefined) break;
          const value = JSON.parse(frame.bytes.toString('utf8')) as unknown;
          if (typeof value !== 'object' || value === null || Array.isArray(value)) idless++;
          else if ((value as { type?: unknown }).type === 'pong') continue;
          else if (Number.isSafeInteger((value as { id?: unknown }).id)) expectedIds.push((value as { id: number }).id);
          else idless++;
        }
        const answered = () => peer.messages.slice(1).map((t) => JSON.parse(t) as Frame).filter((f) => f.type !== 'ping' && f.type !== 'message' && f.type !== 'reset' && f.type !== 'join' && f.type !== 'leave');
        if (expectedClose !== undefined) {
          assert.equal((await peer.closed).code, expectedClose);
        } else {
          await peer.waitFor(() => answered().length >= expectedIds.length + idless, 0, 5000);
          assert.equal(peer.closeCode, undefined);
          const answers = answered();
          assert.deepEqual(answers.filter((f) => f.id !== undefined).map((f) => f.id).sort(), [...expectedIds].sort());
          assert.equal(answers.filter((f) => f.id === undefined).length, idless);
        }
        for (const f of answered()) {
          if (f.type === 'error') assert.ok(FUZZ_ERROR_CODES.has(String(f.code)), `error code ${String(f.code)}: ${String(f.message)}`);
        }
        peer.close();
        await peer.closed;
        assertNotPolluted();
        await bystandersStillServed();
      }),
      { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: 20_000 },
    );
  });

  it('room mode: valid JSON reaches the other members exactly as sent, bad input closes with its code', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(frame(anyValue), { minLength: 1, maxLength: 6 }), async (frames) => {
        await bystandersStillServed();
        const member = await TestSocket.open(`${server.wsUrl}?room=fuzz`);
        await waitForSubscribers(server, 'fuzz', 4);
        const delivered: string[] = [];
        let expectedClose: number | undefined;
        for (const frame of frames) {
          send(member, frame);
          expectedClose = closeCodeFor(frame, MAX_MESSAGE_SIZE, 'room');
          if (expectedClose !== undefined) break;
          delivered.push(frame.bytes.toString('utf8'));
        }
        if (expectedClose === undefined) member.close();
        const { code } = await member.closed;
        if (expectedClose !== undefined) assert.equal(code, expectedClose);
        else assert.ok(code === 1000 || code === 1005, `closed ${code}`);
        assert.deepEqual(member.messages, [], 'the sender got something back');
        assertNotPolluted();
        await until(() => roomBystander.messages.length >= delivered.length, 5000, `${delivered.length} room messages`);
        assert.deepEqual(roomBystander.messages.slice(0, delivered.length), delivered);
        await bystandersStillServed();
      }),
      { seed: SEED + 1, numRuns: RUNS, interruptAfterTimeLimit: 20_000 },
    );
  });

  it('deep JSON and hostile types, explicitly: refused with a code at every entry point, accepted at the limit', async () => {
    const tooDeep = (pretty: boolean) => (pretty ? '[\n' : '[').repeat(10_000) + ']'.repeat(10_000);
    const atLimit = '['.repeat(MAX_JSON_DEPTH) + ']'.repeat(MAX_JSON_DEPTH);
    await bystandersStillServed();

    const peer = await ProtocolSocket.open(server.wsUrl);
    const hostile: [number, string][] = [
      [70, `{"id":70,"type":"publish","channel":"fuzz","data":${tooDeep(false)}}`],
      [71, `{"id":71,"type":"publish","channel":"fuzz","data":${tooDeep(true)}}`],
      [72, `{"id":72,"type":${tooDeep(false)}}`],
      [73, '{"id":73,"type":{"toString":1}}'],
      [74, '{"id":74,"type":{"valueOf":1,"toString":1}}'],
      [75, '{"id":75,"type":"subscribe","channel":{"toString":1}}'],
      [76, '{"__proto__":{"polluted":true},"id":76,"type":"publish","channel":"fuzz","data":{"__proto__":{"polluted":true}},"event":{"toString":1}}'],
    ];
    for (const [id, text] of hostile) {
      peer.send(text);
      const answer = await peer.next('error', (f) => f.id === id);
      assert.equal(answer.code, 'bad_request', text.slice(0, 80));
    }
    peer.send(`{"id":80,"type":"publish","channel":"fuzz","data":${atLimit.slice(2, -2)}}`);
    assert.equal((await peer.next('published', (f) => f.id === 80)).type, 'published');
    peer.close();

    for (const body of [tooDeep(false), `{"channel":"fuzz","data":${tooDeep(true)}}`]) {
      const response = await fetch(`${server.url}/api/publish`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
      assert.equal(response.status, 400);
      assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'bad_request');
    }

    for (const message of [tooDeep(false), tooDeep(true)]) {
      const member = await TestSocket.open(`${server.wsUrl}?room=fuzz`);
      member.send(message);
      assert.equal((await member.closed).code, 1007);
    }
    const member = await TestSocket.open(`${server.wsUrl}?room=fuzz`);
    const pretty = atLimit.replace(/\[/g, '[\n');
    member.send(pretty);
    await roomBystander.waitFor((t) => t === pretty);
    // The SSE bystander gets it re-encoded on one line.
    await sseBystander.waitFor((e) => e.data === atLimit);
    member.close();
    assertNotPolluted();
    await bystandersStillServed();
  });
});
