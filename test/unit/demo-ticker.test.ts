import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { DemoOrderTicker, DEMO_ORDERS_CHANNEL, ORDER_UPDATE_EVENT, type OrderStatus, type OrderUpdate } from '../../src/demo/ticker.js';
import type { PublishRequest } from '../../src/core/publication.js';
import { createLogger } from '../../src/log.js';
import { until } from '../helpers/wait.js';

const ALLOWED_NEXT: Record<OrderStatus, OrderStatus[]> = {
  placed: ['paid', 'cancelled'],
  paid: ['packed'],
  packed: ['shipped'],
  shipped: ['delivered'],
  delivered: [],
  cancelled: [],
};

function capturingLogger(): { log: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(String(chunk));
      callback();
    },
  });
  return { log: createLogger('debug', sink), lines };
}

/** A deterministic source of randomness (LCG), so runs are repeatable. */
function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1664525 + 1013904223) % 2 ** 32;
    return state / 2 ** 32;
  };
}

describe('demo order ticker (SPEC §1 --demo)', () => {
  it('moves every order through placed → paid → packed → shipped → delivered, or cancels it after placed', async () => {
    const published: PublishRequest[] = [];
    const ticker = new DemoOrderTicker({ publish: async (r) => (published.push(r), { offset: published.length, epoch: 'e' }) }, capturingLogger().log, { random: seeded(7) });
    for (let i = 0; i < 500; i++) await ticker.tick();
    assert.equal(published.length, 500);
    const lastStatus = new Map<string, OrderStatus>();
    for (const request of published) {
      assert.equal(request.channel, DEMO_ORDERS_CHANNEL);
      assert.equal(request.event, ORDER_UPDATE_EVENT);
      const order = JSON.parse(request.data) as OrderUpdate;
      assert.match(order.id, /^ORD-\d+$/);
      assert.ok(order.amount > 0 && Number.isFinite(order.amount));
      assert.ok(order.items >= 1);
      assert.ok(!Number.isNaN(Date.parse(order.updatedAt)));
      const before = lastStatus.get(order.id);
      if (before === undefined) assert.equal(order.status, 'placed');
      else {
        assert.equal(order.previous, before);
        assert.ok(ALLOWED_NEXT[before].includes(order.status), `${before} → ${order.status}`);
      }
      lastStatus.set(order.id, order.status);
    }
    const finals = [...lastStatus.values()];
    assert.ok(finals.includes('delivered'));
    assert.ok(finals.filter((s) => s !== 'delivered' && s !== 'cancelled').length <= 8, 'at most 8 orders open');
  });

  it('logs a refused publish at debug and keeps ticking', async () => {
    const { log, lines } = capturingLogger();
    let calls = 0;
    const ticker = new DemoOrderTicker(
      {
        publish: async () => {
          calls++;
          if (calls <= 2) throw new Error('broker down');
          return { offset: calls, epoch: 'e' };
        },
      },
      log,
    );
    await ticker.tick();
    await ticker.tick();
    await ticker.tick();
    assert.equal(calls, 3);
    const refused = lines.map((line) => JSON.parse(line) as { level: number; msg: string }).filter((l) => l.msg === 'demo ticker: publish refused');
    assert.equal(refused.length, 2);
    assert.ok(refused.every((l) => l.level === 20), 'debug level');
  });

  it('skips a tick while the previous publish is still waiting, rather than piling them up', async () => {
    let release!: () => void;
    let calls = 0;
    const ticker = new DemoOrderTicker(
      {
        publish: () => {
          calls++;
          return new Promise((resolve) => (release = () => resolve({ offset: calls, epoch: 'e' })));
        },
      },
      capturingLogger().log,
    );
    const first = ticker.tick();
    await ticker.tick();
    assert.equal(calls, 1);
    release();
    await first;
    void ticker.tick();
    assert.equal(calls, 2);
    release();
  });

  it('publishes on start and every interval until stopped', async () => {
    let calls = 0;
    const ticker = new DemoOrderTicker({ publish: async () => ({ offset: ++calls, epoch: 'e' }) }, capturingLogger().log, { intervalMs: 5 });
    ticker.start();
    assert.equal(calls, 1, 'the first update goes out at once');
    await until(() => calls >= 3, 2000, 'three ticks');
    ticker.stop();
    const stoppedAt = calls;
    // Nothing to await for "no more ticks": wait out several intervals.
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(calls, stoppedAt);
  });
});
