import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { OriginPolicy } from './auth/origin.js';
import { OPEN_ACCESS, type Authenticator } from './auth/principal.js';
import type { Broker } from './broker/broker.js';
import { createBroker } from './broker/create.js';
import type { Settings } from './config/schema.js';
import type { Drainable, NodeContext } from './context.js';
import { Hub } from './core/hub.js';
import { HttpRouter } from './http/router.js';
import { createLogger } from './log.js';
import { HeraldMetrics } from './metrics.js';
import { HeartbeatSweep } from './transport/heartbeat.js';
import { WebSocketGateway } from './transport/websocket/upgrade.js';

/** Node's header timeout is 60 s; a slowloris needs far less to hold a socket (TESTPLAN A4). */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;
export const MAX_HEADERS_COUNT = 100;

export interface StartOptions {
  logger?: Logger;
  broker?: Broker;
  authenticator?: Authenticator;
}

export interface HeraldServer {
  readonly port: number;
  /** http://host:port of this node, for tests and logs. */
  readonly url: string;
  readonly ctx: NodeContext;
  readonly http: Server;
  /** Graceful drain (SPEC §1 --shutdown-timeout); resolves when everything is closed. */
  stop(): Promise<void>;
}

/** Assembles config → broker → hub → transports and starts listening. */
export async function startHerald(settings: Settings, options: StartOptions = {}): Promise<HeraldServer> {
  const log = options.logger ?? createLogger(settings['log-level']);
  const broker = options.broker ?? createBroker(settings);
  const hub = new Hub(broker, { historySize: settings['history-size'] }, (err, context) => log.warn({ err, context }, 'hub error'));
  const websockets = new Set<Drainable>();
  const streams = new Set<Drainable>();
  let draining = false;
  const nodeId = randomBytes(4).toString('hex');
  let clientCounter = 0;

  const metrics = new HeraldMetrics({
    connections: (transport) => (transport === 'websocket' ? websockets.size : streams.size),
    subscriptions: () => hub.listChannels().reduce((sum, c) => sum + c.subscribers, 0),
    channels: () => hub.channelCount,
    brokerUp: () => broker.unreadyReason() === undefined,
    publications: () => hub.stats.publications,
    deliveries: () => hub.stats.deliveries,
    resets: () => hub.stats.resets,
  });

  const ctx: NodeContext = {
    settings,
    hub,
    log,
    metrics,
    heartbeat: new HeartbeatSweep(settings['ping-interval'] * 1000),
    auth: options.authenticator ?? OPEN_ACCESS,
    origins: new OriginPolicy(settings['allowed-origins']),
    websockets,
    streams,
    draining: () => draining,
    nextClientId: () => `${nodeId}-${(++clientCounter).toString(36)}`,
  };

  await hub.start();
  const router = new HttpRouter(ctx);
  const gateway = new WebSocketGateway(ctx);
  const http = createServer({ headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS }, (req, res) => router.handle(req, res));
  http.maxHeadersCount = MAX_HEADERS_COUNT;
  http.on('upgrade', (req, socket, head) => gateway.handleUpgrade(req, socket, head));
  http.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(settings.port, settings.host, () => {
      http.off('error', reject);
      resolve();
    });
  });
  const port = (http.address() as AddressInfo).port;
  const displayHost = settings.host === '0.0.0.0' || settings.host === '::' ? '127.0.0.1' : settings.host;
  log.info({ port, host: settings.host, broker: broker.kind }, `herald listening on http://${displayHost}:${port}`);

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      draining = true;
      log.info({ websockets: websockets.size, streams: streams.size }, 'draining');
      http.close();
      gateway.close();
      for (const connection of [...websockets, ...streams]) connection.drain();
      const deadline = Date.now() + settings['shutdown-timeout'] * 1000;
      while ((websockets.size > 0 || streams.size > 0) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      for (const connection of [...websockets, ...streams]) connection.terminate();
      http.closeAllConnections();
      ctx.heartbeat.stop();
      await broker.close();
      log.info('stopped');
    })());

  return { port, url: `http://${displayHost}:${port}`, ctx, http, stop };
}
