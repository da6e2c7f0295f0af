/**
 * The herald.v1 wire protocol (SPEC §3b): one JSON object per WebSocket text
 * frame. Shared by the server and the client library.
 */
export const SUBPROTOCOL = 'herald.v1';

export type ErrorCodeName = 'bad_request' | 'unauthorized' | 'forbidden' | 'not_found' | 'too_large' | 'rate_limited' | 'unavailable';

export type ClientCommand =
  | { id: number; type: 'auth'; token: string }
  | { id: number; type: 'subscribe'; channel: string; since?: string; presence?: boolean }
  | { id: number; type: 'unsubscribe'; channel: string }
  | { id: number; type: 'publish'; channel: string; event?: string; data: unknown }
  | { id: number; type: 'history'; channel: string; since?: string; limit?: number }
  | { id: number; type: 'presence'; channel: string }
  | { type: 'pong' };

export interface WirePublication {
  channel: string;
  event?: string;
  data: unknown;
  position: string;
}

export interface WirePresenceClient {
  client: string;
  user?: string;
}

export type ServerMessage =
  | { type: 'connected'; client: string; user?: string; pingInterval: number }
  | { id: number; type: 'authed'; user: string | null }
  | { id: number; type: 'subscribed'; channel: string; position: string; recovered: boolean }
  | { id: number; type: 'unsubscribed'; channel: string }
  | { id: number; type: 'published'; channel: string; position: string }
  | { id: number; type: 'history'; channel: string; publications: WirePublication[]; position: string }
  | { id: number; type: 'presence'; channel: string; clients: WirePresenceClient[] }
  | ({ type: 'message' } & WirePublication)
  | { type: 'join' | 'leave'; channel: string; client: string; user?: string }
  | { type: 'ping' }
  | { type: 'reset'; channel: string; reason: string; position?: string }
  | { id?: number; type: 'error'; code: ErrorCodeName; message: string };

/** Event names end up on SSE `event:` lines, so they may hold no control characters. */
export const EVENT_NAME = /^[^\x00-\x1f\x7f]{1,128}$/;
