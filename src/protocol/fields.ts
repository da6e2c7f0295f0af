import { badRequest } from '../core/errors.js';
import { parsePosition, type Position } from '../core/position.js';
import { EVENT_NAME } from './messages.js';

/** Validation of fields shared by herald.v1 commands and the HTTP API. */
export function parseEventName(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !EVENT_NAME.test(value)) throw badRequest('"event" must be a string of 1-128 characters without control characters');
  return value;
}

/** `since` and `limit` of a history query, from the protocol or the HTTP query string. */
export function parseHistoryQuery(sinceValue: unknown, limitValue: unknown): { since?: Position; limit?: number } {
  let since: Position | undefined;
  if (sinceValue !== undefined) {
    since = parsePosition(sinceValue);
    if (!since) throw badRequest('"since" is not a valid position');
  }
  let limit: number | undefined;
  if (limitValue !== undefined) {
    limit = typeof limitValue === 'string' && /^\d{1,9}$/.test(limitValue) ? Number(limitValue) : limitValue as number;
    if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 0) throw badRequest('"limit" must be a non-negative integer');
  }
  return { since, limit };
}
