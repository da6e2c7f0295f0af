import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NodeContext } from '../context.js';
import { HeraldError } from '../core/errors.js';
import { PublishApi } from './api.js';
import { bearerToken, openEventStream } from './events-route.js';
import { sendError, sendJson } from './json.js';
import { serveClientBundle, serveDemoFile } from './static-files.js';

/**
 * Every plain HTTP route of SPEC §2 in one table-like switch. Handlers throw
 * HeraldError; this is the one place that turns them into JSON errors.
 */
export class HttpRouter {
  private readonly api: PublishApi;
  private readonly apiKeyDigest: Buffer | undefined;

  constructor(private readonly ctx: NodeContext) {
    this.api = new PublishApi(ctx);
    const key = ctx.settings['api-key'];
    this.apiKeyDigest = key === undefined ? undefined : digest(key);
    if (key === undefined && ctx.auth.required) {
      // The API is for backends and ignores token claims: without a key, anyone reaching it may publish anywhere and read any history.
      ctx.log.warn('token auth is on but /api/* is open to anyone: set --api-key');
    }
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    req.on('error', () => res.destroy());
    res.on('error', () => res.destroy());
    const url = new URL(req.url ?? '/', 'http://localhost');
    const cors = this.corsHeaders(req);
    this.route(req, res, url, cors).catch((err: unknown) => {
      const error = err instanceof HeraldError ? err : new HeraldError('unavailable', 'temporarily unavailable');
      if (!(err instanceof HeraldError)) this.ctx.log.error({ err, path: url.pathname }, 'request failed');
      this.ctx.metrics.rejects.inc({ reason: error.code });
      // A refused upload may still be arriving; do not keep reading it. (Once the
      // body iterator gave up, req.socket is already null: use the response's socket.)
      const unread = !req.complete && req.httpVersionMajor === 1;
      if (unread && !res.headersSent) res.setHeader('Connection', 'close');
      if (!res.headersSent) sendError(res, error, cors);
      else res.end();
      if (unread) (req.socket ?? res.socket)?.destroySoon();
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse, url: URL, cors: Record<string, string>): Promise<void> {
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (method === 'OPTIONS') return this.preflight(req, res, cors);
    if (path.startsWith('/api/')) {
      for (const [name, value] of Object.entries(cors)) res.setHeader(name, value);
      this.checkApiKey(req);
      return this.routeApi(method, path, url, req, res);
    }
    if (path === '/events' || path.startsWith('/events/')) {
      requireMethod(method, 'GET');
      if (req.headers.origin !== undefined && !this.ctx.origins.allows(req)) throw new HeraldError('forbidden', 'origin not allowed');
      return openEventStream(this.ctx, req, res, url, cors);
    }
    // Upgrades never reach the router: a request for /ws that arrives here lacks `Upgrade: websocket` (RFC 6455 §4.2.1).
    if (path === '/ws') throw new HeraldError('bad_request', '/ws needs a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)');
    if (method !== 'GET' && method !== 'HEAD') throw new HeraldError('not_found', `no route for ${method} ${path}`);
    switch (path) {
      case '/healthz':
        return sendJson(res, 200, { status: 'ok' });
      case '/readyz':
        return this.readiness(res);
      case '/metrics':
        if (this.ctx.settings['metrics-port'] !== undefined) break;
        return this.metrics(req, res);
      case '/herald.js':
        if (await serveClientBundle(res)) return;
        break;
      default:
        if (this.ctx.settings.demo && (await serveDemoFile(res, path))) return;
    }
    throw new HeraldError('not_found', `no route for ${method} ${path}`);
  }

  private async routeApi(method: string, path: string, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (path === '/api/publish') return requireMethod(method, 'POST'), this.api.publish(req, res);
    if (path === '/api/broadcast') return requireMethod(method, 'POST'), this.api.broadcast(req, res);
    if (path === '/api/channels') return requireMethod(method, 'GET'), this.api.channels(res);
    const history = /^\/api\/history\/([^/]+)$/.exec(path);
    if (history) return requireMethod(method, 'GET'), this.api.history(decodeSegment(history[1]!), url, res);
    const presence = /^\/api\/presence\/([^/]+)$/.exec(path);
    if (presence) return requireMethod(method, 'GET'), this.api.presence(decodeSegment(presence[1]!), res);
    throw new HeraldError('not_found', `no route for ${method} ${path}`);
  }

  private readiness(res: ServerResponse): void {
    if (this.ctx.draining()) return sendJson(res, 503, { status: 'unavailable', reason: 'draining' });
    const reason = this.ctx.hub.broker.unreadyReason();
    if (reason !== undefined) return sendJson(res, 503, { status: 'unavailable', reason: `broker: ${reason}` });
    sendJson(res, 200, { status: 'ok', broker: this.ctx.hub.broker.kind });
  }

  private async metrics(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.ctx.settings['api-key'] !== undefined) this.checkApiKey(req);
    const text = await this.ctx.metrics.registry.metrics();
    res.writeHead(200, { 'Content-Type': this.ctx.metrics.registry.contentType });
    res.end(text);
  }

  /** Constant-time comparison of digests, so neither content nor length leaks through timing. */
  private checkApiKey(req: IncomingMessage): void {
    if (this.apiKeyDigest === undefined) return;
    const given = bearerToken(req);
    if (given === undefined || !timingSafeEqual(digest(given), this.apiKeyDigest)) {
      throw new HeraldError('unauthorized', 'a valid API key is required (Authorization: Bearer <key>)');
    }
  }

  private corsHeaders(req: IncomingMessage): Record<string, string> {
    const origin = req.headers.origin;
    if (origin === undefined || !this.ctx.origins.allows(req)) return {};
    return { 'Access-Control-Allow-Origin': origin, 'Access-Control-Allow-Credentials': 'true', Vary: 'Origin' };
  }

  private preflight(req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): void {
    if (Object.keys(cors).length === 0) throw new HeraldError('forbidden', 'origin not allowed');
    res.writeHead(204, {
      ...cors,
      'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
      'Access-Control-Allow-Headers': 'Authorization, Content-Type, Last-Event-ID',
      'Access-Control-Max-Age': '600',
    });
    res.end();
  }
}

function requireMethod(method: string, expected: string): void {
  if (method !== expected && !(expected === 'GET' && method === 'HEAD')) throw new HeraldError('not_found', `use ${expected}`);
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HeraldError('bad_request', 'channel is not valid URL encoding');
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
