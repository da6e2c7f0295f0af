import type { IncomingMessage, ServerResponse } from 'node:http';
import { ANONYMOUS, type Principal } from '../auth/principal.js';
import type { NodeContext } from '../context.js';
import { assertChannelName } from '../core/channel-name.js';
import { badRequest, HeraldError } from '../core/errors.js';
import { parseLastEventId } from '../transport/sse/last-event-id.js';
import { eventStreamHeaders, SseStream } from '../transport/sse/stream.js';

/**
 * GET /events/:channel and /events?channel=a&channel=b (SPEC §4). Refusals
 * happen before the stream opens (400/401/403); once open, trouble ends the
 * stream with a retry hint, never a 503 or 204.
 */
export async function openEventStream(ctx: NodeContext, req: IncomingMessage, res: ServerResponse, url: URL, corsHeaders: Record<string, string>): Promise<void> {
  refuseLargeBody(ctx, req);
  const channels = channelsOf(url);
  if (channels.length > ctx.settings['max-subscriptions']) throw badRequest(`at most ${ctx.settings['max-subscriptions']} channels per stream`);
  let principal: Principal;
  try {
    principal = await authenticateStream(ctx, req, url);
  } catch (err) {
    // The token keys are unreachable: not the reader's fault, and an error status would stop EventSource for good.
    if (!(err instanceof HeraldError && err.code === 'unavailable')) throw err;
    ctx.metrics.rejects.inc({ reason: 'unavailable' });
    return comeBackLater(ctx, req, res, corsHeaders);
  }
  for (const channel of channels) {
    if (!principal.canSubscribe(channel)) throw new HeraldError('forbidden', `not permitted to subscribe to ${channel}`);
  }
  const lastEventId = headerValue(req.headers['last-event-id']) ?? url.searchParams.get('lastEventId') ?? undefined;
  const resume = parseLastEventId(lastEventId, channels);
  if (req.method === 'HEAD') {
    // What a GET would answer, checked the same way, but no stream: HEAD has no body to hold one open in.
    res.writeHead(200, eventStreamHeaders(req, corsHeaders, 'keep-alive'));
    res.end();
    return;
  }
  const ip = req.socket.remoteAddress ?? '';
  if (!ctx.connectionsPerIp.holdWhileOpen(ip, res)) {
    ctx.metrics.rejects.inc({ reason: 'connection_limit' });
    throw new HeraldError('rate_limited', 'too many connections from this address');
  }
  if (principal.user !== undefined && !ctx.connectionsPerUser.holdWhileOpen(principal.user, res)) {
    ctx.metrics.rejects.inc({ reason: 'user_connection_limit' });
    throw new HeraldError('rate_limited', 'too many connections for this user');
  }
  if (ctx.draining()) return comeBackLater(ctx, req, res, corsHeaders);
  await new SseStream(ctx, req, res, ctx.nextClientId(), principal, channels).start(resume, corsHeaders);
}

/**
 * A stream opened only to tell the browser to come back later (to another
 * node, or once the token keys are reachable): the `retry:` hint and the end,
 * on a new connection rather than this keep-alive one.
 */
function comeBackLater(ctx: NodeContext, req: IncomingMessage, res: ServerResponse, corsHeaders: Record<string, string>): void {
  res.writeHead(200, eventStreamHeaders(req, corsHeaders, 'close'));
  res.end(`retry: ${ctx.settings['sse-retry']}\n\n`);
}

/**
 * An event stream request carries no body; one over --max-message-size, or of
 * unknown length, is refused 413 before any work (TESTPLAN A12) instead of
 * being left unread under an open stream.
 */
function refuseLargeBody(ctx: NodeContext, req: IncomingMessage): void {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (req.headers['transfer-encoding'] !== undefined || !(declared <= ctx.settings['max-message-size'])) {
    throw new HeraldError('too_large', 'an event stream request takes no body');
  }
}

function channelsOf(url: URL): string[] {
  const path = url.pathname;
  if (path === '/events' || path === '/events/') {
    const names = url.searchParams.getAll('channel');
    if (names.length === 0) throw badRequest('at least one ?channel= is required');
    return [...new Set(names.map(assertChannelName))];
  }
  let name: string;
  try {
    name = decodeURIComponent(path.slice('/events/'.length));
  } catch {
    throw badRequest('channel is not valid URL encoding');
  }
  return [assertChannelName(name)];
}

/** SPEC §6: Authorization: Bearer, ?token= or cookie herald_token. */
async function authenticateStream(ctx: NodeContext, req: IncomingMessage, url: URL): Promise<Principal> {
  const token = bearerToken(req) ?? url.searchParams.get('token') ?? cookieValue(req, 'herald_token');
  if (token === undefined || token === null) {
    if (ctx.auth.required) throw new HeraldError('unauthorized', 'a token is required');
    return ANONYMOUS;
  }
  return ctx.auth.verify(token);
}

export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return match ? match[1] : undefined;
}

function cookieValue(req: IncomingMessage, name: string): string | undefined {
  const cookies = req.headers.cookie;
  if (!cookies) return undefined;
  for (const part of cookies.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
