import { isValidChannelName } from '../../core/channel-name.js';
import { formatPosition, parsePosition, type Position } from '../../core/position.js';

/**
 * SSE event ids (SPEC §4). A stream of one channel uses the plain position
 * ("12:epoch"); a multiplexed stream uses one entry per channel,
 * "channel|position;channel|position", so its ids resume all of them.
 * Neither '|' nor ';' can occur in a channel name or a position.
 */
export const MAX_LAST_EVENT_ID_LENGTH = 8192;

/** What a resuming request asked for: a position per channel, or `invalid` when it could not be read. */
export type ResumePoint = Position | 'invalid';

export function formatStreamId(channels: readonly string[], positions: ReadonlyMap<string, string>): string {
  if (channels.length === 1) return positions.get(channels[0]!) ?? '';
  let id = '';
  for (const channel of channels) {
    const position = positions.get(channel);
    if (position !== undefined) id += `${id === '' ? '' : ';'}${channel}|${position}`;
  }
  return id;
}

/**
 * Parses an untrusted Last-Event-ID: nothing here throws. Channels the id
 * does not mention are absent from the result (they start live); channels
 * whose entry is unreadable are `invalid` (they get a reset).
 */
export function parseLastEventId(text: string | undefined, channels: readonly string[]): Map<string, ResumePoint> {
  const resume = new Map<string, ResumePoint>();
  if (text === undefined || text === '') return resume;
  if (text.length > MAX_LAST_EVENT_ID_LENGTH) {
    for (const channel of channels) resume.set(channel, 'invalid');
    return resume;
  }
  if (!text.includes('|')) {
    const position = parsePosition(text);
    if (channels.length === 1) resume.set(channels[0]!, position ?? 'invalid');
    else for (const channel of channels) resume.set(channel, 'invalid');
    return resume;
  }
  const wanted = new Set(channels);
  let readable = true;
  for (const entry of text.split(';')) {
    const bar = entry.indexOf('|');
    const channel = entry.slice(0, bar);
    const position = parsePosition(entry.slice(bar + 1));
    if (bar < 0 || !isValidChannelName(channel) || !position) {
      readable = false;
      continue;
    }
    if (wanted.has(channel)) resume.set(channel, position);
  }
  if (!readable) for (const channel of channels) if (!resume.has(channel)) resume.set(channel, 'invalid');
  return resume;
}

export { formatPosition };
