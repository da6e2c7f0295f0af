import type { Logger } from 'pino';
import type { Position } from '../core/position.js';
import type { PublishRequest } from '../core/publication.js';

/** The channel and event the demo dashboard (web/dashboard.js) listens to. */
export const DEMO_ORDERS_CHANNEL = 'orders';
export const ORDER_UPDATE_EVENT = 'order-update';
export const DEFAULT_TICK_MS = 1000;
/** Orders still moving through their statuses; beyond this the ticker only advances them. */
const MAX_OPEN_ORDERS = 8;
/** Below this the ticker always opens a new order, so the board never looks idle. */
const MIN_OPEN_ORDERS = 3;
/** Share of ticks that open a new order while between the two bounds. */
const NEW_ORDER_SHARE = 0.35;
/** Share of placed orders that are cancelled instead of paid. */
const CANCEL_SHARE = 0.08;

export type OrderStatus = 'placed' | 'paid' | 'packed' | 'shipped' | 'delivered' | 'cancelled';

/** The `data` of one `order-update` publication. */
export interface OrderUpdate {
  readonly id: string;
  readonly customer: string;
  readonly city: string;
  readonly items: number;
  /** Order total in `currency`, two decimals. */
  readonly amount: number;
  readonly currency: 'EUR';
  readonly status: OrderStatus;
  /** The status this update moved the order from (absent for a new order). */
  readonly previous?: OrderStatus;
  /** ISO 8601 time of this update. */
  readonly updatedAt: string;
}

const NEXT_STATUS: Readonly<Record<OrderStatus, OrderStatus | undefined>> = {
  placed: 'paid',
  paid: 'packed',
  packed: 'shipped',
  shipped: 'delivered',
  delivered: undefined,
  cancelled: undefined,
};

const CUSTOMERS = [
  ['Ada Lovelace', 'London'],
  ['Grace Hopper', 'Arlington'],
  ['Alan Turing', 'Manchester'],
  ['Katherine Johnson', 'Hampton'],
  ['Linus Torvalds', 'Portland'],
  ['Margaret Hamilton', 'Boston'],
  ['Tim Berners-Lee', 'Geneva'],
  ['Barbara Liskov', 'Cambridge'],
  ['Edsger Dijkstra', 'Eindhoven'],
  ['Frances Allen', 'Peru, NY'],
  ['Ken Thompson', 'Berkeley'],
  ['Radia Perlman', 'Redmond'],
  ['Donald Knuth', 'Stanford'],
  ['Hedy Lamarr', 'Vienna'],
] as const;

/** Unit prices of the shop's catalogue, in cents. */
const PRICES_CENTS = [499, 1250, 1999, 2490, 3900, 4999, 7450, 12900];

/** What the ticker needs from the hub: only publishing. */
export interface OrderPublisher {
  publish(request: PublishRequest): Promise<Position>;
}

export interface DemoTickerOptions {
  readonly intervalMs?: number;
  /** Source of randomness in [0, 1); replaceable in tests. */
  readonly random?: () => number;
  readonly now?: () => Date;
}

/**
 * The demo's live data (SPEC §1 `--demo`): an imaginary shop whose orders
 * move placed → paid → packed → shipped → delivered (a few are cancelled),
 * one `order-update` in channel `orders` per tick, through the hub like any
 * other publication — so history, resume and SSE apply to it unchanged.
 */
export class DemoOrderTicker {
  private readonly openOrders = new Map<string, OrderUpdate>();
  private readonly random: () => number;
  private readonly now: () => Date;
  private nextOrderNumber: number;
  private timer: NodeJS.Timeout | undefined;
  /** A publish still waiting (a slow broker): the next tick is skipped rather than piled up. */
  private inFlight = false;

  constructor(
    private readonly publisher: OrderPublisher,
    private readonly log: Logger,
    private readonly options: DemoTickerOptions = {},
  ) {
    this.random = options.random ?? Math.random;
    this.now = options.now ?? (() => new Date());
    this.nextOrderNumber = 10_000 + Math.floor(this.random() * 80_000);
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.options.intervalMs ?? DEFAULT_TICK_MS);
    this.timer.unref();
    void this.tick();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Publishes one update; a refused publish (broker down) is logged at debug and the demo carries on. */
  async tick(): Promise<void> {
    if (this.inFlight) return;
    this.inFlight = true;
    const update = this.nextUpdate();
    try {
      await this.publisher.publish({ channel: DEMO_ORDERS_CHANNEL, event: ORDER_UPDATE_EVENT, data: JSON.stringify(update) });
    } catch (err) {
      this.log.debug({ err, order: update.id }, 'demo ticker: publish refused');
    } finally {
      this.inFlight = false;
    }
  }

  /** Opens a new order or moves an open one to its next status. */
  nextUpdate(): OrderUpdate {
    const open = this.openOrders.size;
    const opensNew = open < MIN_OPEN_ORDERS || (open < MAX_OPEN_ORDERS && this.random() < NEW_ORDER_SHARE);
    const update = opensNew ? this.newOrder() : this.advance(this.pick([...this.openOrders.values()]));
    if (NEXT_STATUS[update.status] === undefined) this.openOrders.delete(update.id);
    else this.openOrders.set(update.id, update);
    return update;
  }

  private newOrder(): OrderUpdate {
    const [customer, city] = this.pick(CUSTOMERS);
    const items = 1 + Math.floor(this.random() * 4);
    let cents = 0;
    for (let i = 0; i < items; i++) cents += this.pick(PRICES_CENTS);
    return {
      id: `ORD-${this.nextOrderNumber++}`,
      customer,
      city,
      items,
      amount: cents / 100,
      currency: 'EUR',
      status: 'placed',
      updatedAt: this.now().toISOString(),
    };
  }

  private advance(order: OrderUpdate): OrderUpdate {
    const next = order.status === 'placed' && this.random() < CANCEL_SHARE ? 'cancelled' : NEXT_STATUS[order.status]!;
    return { ...order, status: next, previous: order.status, updatedAt: this.now().toISOString() };
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }
}
