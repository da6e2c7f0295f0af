import type { PresenceEvent, PresenceInfo } from '../core/presence.js';
import type { PublishRequest } from '../core/publication.js';

/**
 * The compact text form in which a publication travels through a shared
 * broker: `<eventLength>,<senderLength>,<event><sender><data>`, where an
 * empty length means "absent". `data` stays the JSON text it arrived as, so
 * no node parses or re-serializes it on the fan-out path (PERFORMANCE §3.1),
 * and event names may hold any character (no escaping needed).
 * Lengths count UTF-16 code units: the receiver decodes the whole message as
 * one string, which yields exactly the string that was encoded.
 */
export function encodeEnvelope(request: PublishRequest): string {
  const event = request.event;
  const sender = request.sender;
  const eventLength = event === undefined ? '' : String(event.length);
  const senderLength = sender === undefined ? '' : String(sender.length);
  return `${eventLength},${senderLength},${event ?? ''}${sender ?? ''}${request.data}`;
}

export interface EnvelopeFields {
  readonly event?: string;
  readonly sender?: string;
  readonly data: string;
}

/** Reads an envelope starting at `start` in `text`; `undefined` when it is malformed. */
export function decodeEnvelope(text: string, start = 0): EnvelopeFields | undefined {
  const firstComma = text.indexOf(',', start);
  const secondComma = firstComma < 0 ? -1 : text.indexOf(',', firstComma + 1);
  if (secondComma < 0) return undefined;
  const eventLength = parseLength(text.slice(start, firstComma));
  const senderLength = parseLength(text.slice(firstComma + 1, secondComma));
  if (eventLength === null || senderLength === null) return undefined;
  let cursor = secondComma + 1;
  const event = eventLength === undefined ? undefined : text.slice(cursor, (cursor += eventLength));
  const sender = senderLength === undefined ? undefined : text.slice(cursor, (cursor += senderLength));
  if (cursor > text.length) return undefined;
  return { event, sender, data: text.slice(cursor) };
}

/** `''` → absent (undefined); a decimal → the number; anything else → null (malformed). */
function parseLength(text: string): number | undefined | null {
  if (text === '') return undefined;
  if (!/^[0-9]{1,9}$/.test(text)) return null;
  return Number(text);
}

/** Presence join/leave as one short text: `j` or `l`, then the info as JSON. */
export function encodePresenceEvent(event: PresenceEvent): string {
  return (event.type === 'join' ? 'j' : 'l') + JSON.stringify(event.info);
}

export function decodePresenceEvent(channel: string, text: string, start = 0): PresenceEvent | undefined {
  const kind = text[start];
  if (kind !== 'j' && kind !== 'l') return undefined;
  const info = parsePresenceInfo(text.slice(start + 1));
  return info && { type: kind === 'j' ? 'join' : 'leave', channel, info };
}

export function parsePresenceInfo(json: string): PresenceInfo | undefined {
  try {
    const value = JSON.parse(json) as { client?: unknown; user?: unknown };
    if (typeof value.client !== 'string') return undefined;
    return typeof value.user === 'string' ? { client: value.client, user: value.user } : { client: value.client };
  } catch {
    return undefined;
  }
}
