/**
 * A position is (offset, epoch): the offset grows by one per publication in a
 * channel; the epoch names one unbroken history and changes when that history
 * is lost (SPEC §5). On the wire it is the opaque string "<offset>:<epoch>".
 */
export interface Position {
  readonly offset: number;
  readonly epoch: string;
}

const POSITION_TEXT = /^(0|[1-9][0-9]{0,14}):([A-Za-z0-9_-]{1,32})$/;
export const MAX_POSITION_TEXT_LENGTH = 48;

export function formatPosition(position: Position): string {
  return `${position.offset}:${position.epoch}`;
}

/** Strict parse of untrusted input (Last-Event-ID, `since`): anything odd is `undefined`. */
export function parsePosition(text: unknown): Position | undefined {
  if (typeof text !== 'string' || text.length > MAX_POSITION_TEXT_LENGTH) return undefined;
  const match = POSITION_TEXT.exec(text);
  if (!match) return undefined;
  const offset = Number(match[1]);
  if (!Number.isSafeInteger(offset)) return undefined;
  return { offset, epoch: match[2]! };
}

/** Epochs are short random tokens: unique enough that a lost history never reuses one. */
export function newEpoch(): string {
  return Math.random().toString(36).slice(2, 10) + Date.now().toString(36).slice(-4);
}
