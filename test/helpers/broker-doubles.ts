import type { Broker } from '../../src/broker/broker.js';
import { MemoryBroker } from '../../src/broker/memory.js';
import type { HistoryQuery, HistoryResult } from '../../src/core/publication.js';

/** Small history limits for tests that do not care about them. */
const LIMITS = { size: 100, ttlSeconds: 300 };

/**
 * A memory broker whose history reads for chosen channels wait until the test
 * releases them: holds a subscribe half-way (subscribed, history not yet read)
 * so a test can act in that window without sleeping.
 */
export class GatedBroker extends MemoryBroker {
  private readonly gates = new Map<string, Promise<void>>();
  /** Channels whose history read is waiting at a gate right now. */
  readonly waiting = new Set<string>();

  constructor(limits = LIMITS) {
    super(limits);
  }

  /** Holds history reads of `channel` until the returned function is called. */
  hold(channel: string): () => void {
    let release!: () => void;
    this.gates.set(channel, new Promise<void>((resolve) => (release = resolve)));
    return () => {
      this.gates.delete(channel);
      release();
    };
  }

  override async history(channel: string, query: HistoryQuery): Promise<HistoryResult> {
    const gate = this.gates.get(channel);
    if (gate) {
      this.waiting.add(channel);
      await gate;
      this.waiting.delete(channel);
    }
    return super.history(channel, query);
  }
}

/** A memory broker that can be switched "down" (SPEC §7 outage), as the hub sees it. */
export class SwitchableBroker extends MemoryBroker {
  downReason: string | undefined;

  constructor(limits = LIMITS) {
    super(limits);
  }

  override unreadyReason(): string | undefined {
    return this.downReason;
  }
}

/** The broker outlives each server (stop() closes its broker), so history survives the restart. */
export function outliving(broker: Broker): Broker {
  return {
    kind: broker.kind,
    presence: broker.presence,
    stats: broker.stats,
    start: (listener) => broker.start(listener),
    subscribe: (channel) => broker.subscribe(channel),
    unsubscribe: (channel) => broker.unsubscribe(channel),
    publish: (request) => broker.publish(request),
    publishPresence: (event) => broker.publishPresence(event),
    history: (channel, query) => broker.history(channel, query),
    unreadyReason: () => broker.unreadyReason(),
    close: async () => {},
  };
}
