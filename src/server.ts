import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { OriginPolicy } from './auth/origin.js';
import { JwtAuthenticator } from './auth/jwt.js';
import { OPEN_ACCESS, type Authenticator } from './auth/principal.js';
import type { Broker } from './broker/broker.js';
import { createBroker } from './broker/create.js';
import { ConfigError } from './config/load.js';
import type { Settings } from './config/schema.js';
import type { Drainable, NodeContext } from './context.js';
import { Hub } from './core/hub.js';
import { createListener, type HttpListener } from './http/listener.js';
import { HttpRouter } from './http/router.js';
import { createLogger } from './log.js';
import { HeraldMetrics } from './metrics.js';
import { TokenBucket } from './core/token-bucket.js';
import { ConnectionCounter } from './transport/connection-counter.js';
import { DeadlineSweep } from './transport/deadlines.js';
import { HeartbeatSweep } from './transport/heartbeat.js';
import { drainConnections } from './transport/drain.js';
import { WebSocketGateway } from './transport/websocket/upgrade.js';
import { DemoOrderTicker } from './demo/ticker.js';


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
  readonly http: HttpListener;
  /** The separate metrics listener (--metrics-port), if any. */
  readonly metricsHttp?: Server;
  /** Re-reads the TLS certificate and key (SIGHUP). */
  reloadTls(): void;
  /** Graceful drain (SPEC §1 --shutdown-timeout); resolves when everything is closed. */
  stop(): Promise<void>;
}

/** Assembles config → broker → hub → transports and starts listening. */
export async function startHerald(settings: Settings, options: StartOptions = {}): Promise<HeraldServer> {
  const log = options.logger ?? createLogger(settings['log-level']);
  if (settings['message-burst'] < settings['max-subscriptions']) {
    // A reconnecting client re-sends every subscribe at once; a smaller bucket refuses the rest and ends in 4429.
    log.warn('--message-burst is below --max-subscriptions: clients re-subscribing many channels after a reconnect will be rate-limited');
  }
  const broker = options.broker ?? createBroker(settings, log);
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
    repairs: () => hub.stats.repairs,
    brokerReconnects: () => broker.stats.reconnects,
    probeTimeouts: () => broker.stats.probeTimeouts,
  });

  const ctx: NodeContext = {
    settings,
    hub,
    log,
    metrics,
    heartbeat: new HeartbeatSweep(settings['ping-interval'] * 1000),
    deadlines: new DeadlineSweep(),
    connectionsPerIp: new ConnectionCounter(settings['max-connections-per-ip']),
    connectionsPerUser: new ConnectionCounter(settings['max-connections-per-user']),
    messageBucket: new TokenBucket(settings['message-rate'], settings['message-burst']),
    auth: options.authenticator ?? JwtAuthenticator.fromSettings(settings) ?? OPEN_ACCESS,
    origins: new OriginPolicy(settings['allowed-origins']),
    websockets,
    streams,
    draining: () => draining,
    nextClientId: () => `${nodeId}-${(++clientCounter).toString(36)}`,
  };

  await hub.start();
  const router = new HttpRouter(ctx);
  const gateway = new WebSocketGateway(ctx);
  const listener = createListener(settings, (req, res) => router.handle(req, res), (req, socket, head) => gateway.handleUpgrade(req, socket, head));
  const http = listener.server;
  // server.close() leaves open sockets open; remember them so shutdown can close them.
  const openSockets = new Set<Socket>();
  http.on(listener.tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    openSockets.add(socket);
    socket.once('close', () => openSockets.delete(socket));
  });

  await listen(http, settings.port, settings.host, 'port');
  const port = (http.address() as AddressInfo).port;
  let metricsHttp: Server | undefined;
  if (settings['metrics-port'] !== undefined) {
    try {
      metricsHttp = await listenForMetrics(settings['metrics-port'], settings.host, metrics);
    } catch (err) {
      http.close();
      throw err;
    }
  }
  const displayHost = settings.host === '0.0.0.0' || settings.host === '::' ? '127.0.0.1' : settings.host;
  log.info({ port, host: settings.host, broker: broker.kind, tls: listener.tls }, `herald listening on ${listener.tls ? 'https' : 'http'}://${displayHost}:${port}`);
  // --demo: the orders dashboard's live data, published through the hub like any other publication.
  const demoTicker = settings.demo ? new DemoOrderTicker(hub, log) : undefined;
  demoTicker?.start();

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      draining = true;
      demoTicker?.stop();
      log.info({ websockets: websockets.size, streams: streams.size }, 'draining');
      http.close();
      gateway.close();
      await drainConnections([...websockets, ...streams], () => websockets.size + streams.size, settings['shutdown-timeout'] * 1000);
      for (const connection of [...websockets, ...streams]) connection.terminate();
      for (const socket of openSockets) socket.destroy();
      metricsHttp?.close();
      ctx.heartbeat.stop();
      ctx.deadlines.stop();
      await broker.close();
      log.info('stopped');
    })());

  const scheme = listener.tls ? 'https' : 'http';
  return { port, url: `${scheme}://${displayHost}:${port}`, ctx, http, metricsHttp, reloadTls: listener.reloadTls, stop };
}

/** --metrics-port: Prometheus text on its own listener, so it need not be exposed with the API. */
async function listenForMetrics(port: number, host: string, metrics: HeraldMetrics): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    metrics.registry.metrics().then((text) => {
      res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
      res.end(text);
    });
  });
  await listen(server, port, host, 'metrics-port');
  return server;
}

/**
 * Listens, turning the errors a bad --host or port causes into a ConfigError
 * naming the setting (exit 2, SPEC §1) instead of a crash with a stack trace.
 */
function listen(server: HttpListener, port: number, host: string, portSetting: 'port' | 'metrics-port'): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') reject(new ConfigError(portSetting, `port ${port} on ${host} is already in use`));
      else if (err.code === 'EACCES') reject(new ConfigError(portSetting, `not permitted to listen on port ${port}`));
      else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') reject(new ConfigError('host', `cannot listen on ${host} (${err.code})`));
      else reject(err);
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
