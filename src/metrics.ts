import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What metrics read from the running node on each scrape (no work on the hot path). */
export interface MetricsSources {
  connections(transport: 'websocket' | 'sse'): number;
  subscriptions(): number;
  channels(): number;
  brokerUp(): boolean;
  publications(): number;
  deliveries(): number;
  resets(): number;
  repairs(): number;
  brokerReconnects(): number;
  probeTimeouts(): number;
}

/**
 * One registry per node, so several nodes can live in one test process.
 * Totals kept as plain numbers by the hub are copied in at scrape time.
 */
export class HeraldMetrics {
  readonly registry = new Registry();
  readonly closes: Counter<'code'>;
  readonly rejects: Counter<'reason'>;
  readonly drops: Counter<'reason'>;
  readonly publishLatency: Histogram;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'herald_' });
    new Gauge({
      name: 'herald_connections',
      help: 'Open client connections by transport',
      labelNames: ['transport'],
      registers,
      collect() {
        this.set({ transport: 'websocket' }, sources.connections('websocket'));
        this.set({ transport: 'sse' }, sources.connections('sse'));
      },
    });
    new Gauge({ name: 'herald_subscriptions', help: 'Active channel subscriptions on this node', registers, collect() { this.set(sources.subscriptions()); } });
    new Gauge({ name: 'herald_channels', help: 'Channels with local subscribers', registers, collect() { this.set(sources.channels()); } });
    new Gauge({ name: 'herald_broker_up', help: '1 when the broker is connected', registers, collect() { this.set(sources.brokerUp() ? 1 : 0); } });
    const total = (name: string, help: string, read: () => number) =>
      new Counter({ name, help, registers, collect() { this.reset(); this.inc(read()); } });
    total('herald_publications_total', 'Publications accepted by this node', sources.publications);
    total('herald_deliveries_total', 'Publications written to subscribers on this node', sources.deliveries);
    total('herald_resets_total', 'Times subscribers were told a gap could not be filled', sources.resets);
    total('herald_gap_repairs_total', 'Times a channel re-read its history: a skipped offset on the live path, or a broker reconnect', sources.repairs);
    total('herald_broker_reconnects_total', "Times the broker's subscriber link came back and this node's channels were subscribed again", sources.brokerReconnects);
    total('herald_broker_probe_timeouts_total', 'Liveness probes that never came back: a subscription open but starved, restarted', sources.probeTimeouts);
    this.closes = new Counter({ name: 'herald_closes_total', help: 'Connections closed, by close code or reason', labelNames: ['code'], registers });
    this.rejects = new Counter({ name: 'herald_rejects_total', help: 'Requests or commands refused, by reason', labelNames: ['reason'], registers });
    this.drops = new Counter({ name: 'herald_drops_total', help: 'Clients dropped or messages not delivered, by reason', labelNames: ['reason'], registers });
    this.publishLatency = new Histogram({
      name: 'herald_publish_duration_seconds',
      help: 'Time to store and fan out one publication through the broker',
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
  }
}
