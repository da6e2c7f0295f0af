import { badRequest } from './errors.js';

/** SPEC §2: 1–255 bytes of [A-Za-z0-9_\-:.@/=,]. ASCII-only, so characters equal bytes. */
const CHANNEL_NAME = /^[A-Za-z0-9_\-:.@/=,]{1,255}$/;

export function isValidChannelName(value: unknown): value is string {
  return typeof value === 'string' && CHANNEL_NAME.test(value);
}

export function assertChannelName(value: unknown): string {
  if (!isValidChannelName(value)) {
    throw badRequest('channel must be 1-255 characters of [A-Za-z0-9_-:.@/=,]');
  }
  return value;
}
