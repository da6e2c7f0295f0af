import type { Logger } from 'pino';
import type { Settings } from '../config/schema.js';
import { parseBrokerUrl } from '../config/broker-url.js';
import type { Broker } from './broker.js';
import { MemoryBroker } from './memory.js';
import { NatsBroker } from './nats.js';
import { RedisBroker } from './redis.js';

/** Picks the broker named by --broker (already validated by the settings check). */
export function createBroker(settings: Settings, log?: Logger): Broker {
  const limits = { size: settings['history-size'], ttlSeconds: settings['history-ttl'] };
  const url = parseBrokerUrl(settings.broker);
  const tuning = {
    limits,
    prefix: url.prefix,
    probeIntervalMs: url.probeIntervalMs,
    commandTimeoutMs: url.commandTimeoutMs,
    presenceTtlMs: url.presenceTtlMs,
    log,
  };
  switch (url.kind) {
    case 'memory':
      return new MemoryBroker(limits);
    case 'redis':
      return new RedisBroker({ url: url.servers[0]!, ...tuning });
    case 'nats':
      return new NatsBroker({ servers: url.servers, ...tuning });
  }
}
