import type { Settings } from '../config/schema.js';
import { ConfigError } from '../config/load.js';
import type { Broker } from './broker.js';
import { MemoryBroker } from './memory.js';

/** Picks the broker named by --broker. */
export function createBroker(settings: Settings): Broker {
  const limits = { size: settings['history-size'], ttlSeconds: settings['history-ttl'] };
  const url = settings.broker;
  if (url === 'memory') return new MemoryBroker(limits);
  throw new ConfigError('broker', `${url.split(':')[0]} brokers are not supported by this build yet`);
}
