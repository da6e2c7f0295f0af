import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { channelToken } from '../../src/broker/nats-subjects.js';
import { decodeEnvelope, decodePresenceEvent, encodeEnvelope, encodePresenceEvent } from '../../src/broker/envelope.js';
import { RedisKeys } from '../../src/broker/redis-keys.js';
import { parseBrokerUrl, redact } from '../../src/config/broker-url.js';

describe('--broker URLs (SPEC §1, docs/scaling.md)', () => {
  it('reads Herald tuning parameters and hands the client a clean URL', () => {
    const url = parseBrokerUrl('redis://user:secret@10.0.0.5:6380/3?probe_interval=0.5&command_timeout=2&presence_ttl=30&prefix=eu1');
    assert.equal(url.kind, 'redis');
    assert.deepEqual(url.servers, ['redis://user:secret@10.0.0.5:6380/3']);
    assert.equal(url.probeIntervalMs, 500);
    assert.equal(url.commandTimeoutMs, 2000);
    assert.equal(url.presenceTtlMs, 30_000);
    assert.equal(url.prefix, 'eu1');
  });

  it('defaults to a 5 s probe, 1 s command timeout, 60 s presence TTL and the herald prefix', () => {
    const url = parseBrokerUrl('nats://127.0.0.1:4222');
    assert.deepEqual(url, { kind: 'nats', servers: ['nats://127.0.0.1:4222'], probeIntervalMs: 5000, commandTimeoutMs: 1000, presenceTtlMs: 60_000, prefix: 'herald' });
  });

  it('accepts several NATS servers separated by commas', () => {
    assert.deepEqual(parseBrokerUrl('nats://a:4222,nats://b:4222').servers, ['nats://a:4222', 'nats://b:4222']);
  });

  for (const [value, problem] of [
    ['kafka://x', /memory/],
    ['redis://h:6379/x', /database number/],
    ['redis://h:6379?probe_interval=0', /probe_interval/],
    ['redis://h:6379?probe_interval=abc', /probe_interval/],
    ['redis://h:6379?colour=blue', /unknown broker parameter "colour"/],
    ['redis://h:6379?prefix=a.b', /prefix/],
  ] as const) {
    it(`refuses ${value}`, () => assert.throws(() => parseBrokerUrl(value), problem));
  }

  it('never repeats a password in messages', () => {
    assert.equal(redact('redis://user:hunter2@host:6379'), 'redis://user:***@host:6379');
  });
});

describe('broker wire forms', () => {
  it('round-trips a publication envelope with any event text, a sender, and JSON data', () => {
    for (const request of [
      { channel: 'c', data: '{"a":1}' },
      { channel: 'c', event: 'with,commas,', data: '"x"' },
      { channel: 'c', sender: 'n1-2', data: '[1,2]' },
      { channel: 'c', event: 'ünïcödé 🎉', sender: 'n1-3', data: '{"text":"héllo, 12,3,"}' },
    ]) {
      const decoded = decodeEnvelope(encodeEnvelope(request));
      assert.deepEqual(decoded, { event: request.event, sender: request.sender, data: request.data });
    }
  });

  it('refuses malformed envelopes instead of guessing', () => {
    assert.equal(decodeEnvelope('x,,{}'), undefined);
    assert.equal(decodeEnvelope('no commas'), undefined);
    assert.equal(decodeEnvelope('99,,ab'), undefined);
  });

  it('round-trips presence events', () => {
    const event = { type: 'leave' as const, channel: 'room', info: { client: 'n1-1', user: 'alice' } };
    assert.deepEqual(decodePresenceEvent('room', encodePresenceEvent(event)), event);
  });

  it('keeps every key of a channel in one Redis Cluster slot (hash tag) and maps PUB/SUB names back', () => {
    const keys = new RedisKeys('herald');
    for (const name of [keys.meta('a:b'), keys.stream('a:b'), keys.presence('a:b'), keys.pubsub('a:b')]) assert.match(name, /\{a:b\}/);
    assert.equal(keys.channelOfPubsub(keys.pubsub('chat/room=1,x')), 'chat/room=1,x');
    assert.equal(keys.channelOfPubsub('other:{x}'), undefined);
  });

  it('maps every channel name to a distinct single NATS subject token', () => {
    assert.equal(channelToken('orders'), 'orders');
    assert.equal(channelToken('a.b'), 'a=2Eb');
    assert.notEqual(channelToken('a=2Eb'), channelToken('a.b'));
    assert.match(channelToken('chat:lobby@eu/1,x'), /^[A-Za-z0-9_=-]+$/);
  });
});
