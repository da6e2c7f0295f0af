import type { Position } from './position.js';

/**
 * One publication as the broker stores and delivers it. `data` stays the JSON
 * text it arrived as, so room mode can deliver it byte-for-byte and no node
 * ever parses or re-serializes it on the fan-out path.
 */
export interface Publication {
  readonly channel: string;
  readonly event?: string;
  readonly data: string;
  readonly offset: number;
  readonly epoch: string;
  /** Client id of a room-mode sender, so its own message is not echoed back. */
  readonly sender?: string;
}

export interface PublishRequest {
  readonly channel: string;
  readonly event?: string;
  readonly data: string;
  readonly sender?: string;
}

export interface HistoryQuery {
  /** Return publications after this position (its epoch must match). */
  readonly since?: Position;
  readonly limit?: number;
}

export interface HistoryResult {
  readonly publications: Publication[];
  /** The channel's current top position (offset of the last publication). */
  readonly position: Position;
}

export function positionOf(pub: Publication): Position {
  return { offset: pub.offset, epoch: pub.epoch };
}

/**
 * Was the stream after `since` fully recovered? (Centrifuge's isStreamRecovered.)
 * Epoch must match; with nothing returned the client must already be at the top;
 * otherwise the returned run must start right after `since` and end at the top.
 */
export function isRecovered(since: Position, result: HistoryResult): boolean {
  if (since.epoch !== result.position.epoch) return false;
  const pubs = result.publications;
  if (pubs.length === 0) return since.offset === result.position.offset;
  return pubs[0]!.offset === since.offset + 1 && pubs[pubs.length - 1]!.offset === result.position.offset;
}
