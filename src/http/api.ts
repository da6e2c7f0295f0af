import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NodeContext } from '../context.js';
import { assertChannelName } from '../core/channel-name.js';
import { badRequest, HeraldError } from '../core/errors.js';
import { encodeHistoryEntry } from '../core/outbound.js';
import { formatPosition } from '../core/position.js';
import { parseEventName, parseHistoryQuery } from '../protocol/fields.js';
import { isObject, readJsonBody, sendJson, sendJsonText } from './json.js';

/** Room for the envelope around `data` (channel names, event, broadcast list). */
const ENVELOPE_BYTES = 64 * 1024;
/** Channels one broadcast may name. */
export const MAX_BROADCAST_CHANNELS = 1000;

/** The backend-facing HTTP API (SPEC §2): publish, broadcast, history, presence, channels. */
export class PublishApi {
  constructor(private readonly ctx: NodeContext) {}

  async publish(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await this.readBody(req);
    const channel = assertChannelName(body.channel);
    const { event, data } = this.readPayload(body);
    const position = await this.timedPublish(channel, event, data);
    sendJson(res, 200, { channel, position: formatPosition(position) });
  }

  async broadcast(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await this.readBody(req);
    const channels = body.channels;
    if (!Array.isArray(channels) || channels.length === 0) throw badRequest('"channels" must be a non-empty array');
    if (channels.length > MAX_BROADCAST_CHANNELS) throw badRequest(`at most ${MAX_BROADCAST_CHANNELS} channels per broadcast`);
    const names = [...new Set(channels.map(assertChannelName))];
    const { event, data } = this.readPayload(body);
    const published = await Promise.all(names.map((channel) => this.timedPublish(channel, event, data)));
    const positions: Record<string, string> = {};
    names.forEach((channel, i) => (positions[channel] = formatPosition(published[i]!)));
    sendJson(res, 200, { positions });
  }

  async history(channelParam: string, url: URL, res: ServerResponse): Promise<void> {
    const channel = assertChannelName(channelParam);
    const { since, limit } = parseHistoryQuery(url.searchParams.get('since') ?? undefined, url.searchParams.get('limit') ?? undefined);
    const result = await this.ctx.hub.history(channel, since, limit);
    const publications = result.publications.map(encodeHistoryEntry).join(',');
    sendJsonText(res, 200, `{"publications":[${publications}],"position":"${formatPosition(result.position)}"}`);
  }

  async presence(channelParam: string, res: ServerResponse): Promise<void> {
    const channel = assertChannelName(channelParam);
    sendJson(res, 200, { clients: await this.ctx.hub.presence(channel) });
  }

  channels(res: ServerResponse): void {
    sendJson(res, 200, { channels: this.ctx.hub.listChannels() });
  }

  private async readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
    const body = await readJsonBody(req, this.ctx.settings['max-message-size'] + ENVELOPE_BYTES);
    if (!isObject(body)) throw badRequest('body must be a JSON object');
    return body;
  }

  private readPayload(body: Record<string, unknown>): { event?: string; data: string } {
    if (!('data' in body)) throw badRequest('"data" is required');
    const event = parseEventName(body.event);
    const data = JSON.stringify(body.data);
    if (Buffer.byteLength(data) > this.ctx.settings['max-message-size']) throw new HeraldError('too_large', 'data exceeds --max-message-size');
    return { event, data };
  }

  private async timedPublish(channel: string, event: string | undefined, data: string) {
    const stop = this.ctx.metrics.publishLatency.startTimer();
    const position = await this.ctx.hub.publish({ channel, event, data });
    stop();
    return position;
  }
}
