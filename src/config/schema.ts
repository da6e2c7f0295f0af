/**
 * Every setting Herald reads, with its default and validation, in one table
 * (SPEC §1). Flags are the keys in kebab-case; env vars are HERALD_<KEY>;
 * the JSON config file may use kebab-case or camelCase keys.
 */
import { parseBrokerUrl } from './broker-url.js';

export type SettingType = 'string' | 'integer' | 'number' | 'boolean';

export interface SettingSpec {
  readonly type: SettingType;
  readonly default?: string | number | boolean;
  readonly min?: number;
  readonly max?: number;
  readonly description: string;
  /** Extra check on the parsed value; returns an error text or undefined. */
  readonly check?: (value: never) => string | undefined;
}

const brokerUrl = (value: string) => {
  try {
    parseBrokerUrl(value);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
};

/** --allowed-origins: `*` or origins exactly as browsers send them, else nothing would ever match. */
const originList = (value: string) => {
  for (const entry of value.split(',').map((o) => o.trim().replace(/\/+$/, '')).filter(Boolean)) {
    if (entry === '*') continue;
    let origin: string;
    try {
      origin = new URL(entry).origin;
    } catch {
      origin = 'null';
    }
    if (origin === 'null' || origin !== entry.toLowerCase()) return `"${entry}" is not an origin: use scheme://host[:port] (no path, no default port) or *`;
  }
  return undefined;
};

export const SETTINGS = {
  host: { type: 'string', default: '0.0.0.0', description: 'listen address' },
  port: { type: 'integer', default: 8080, min: 0, max: 65535, description: 'listen port (0 = any free port)' },
  broker: { type: 'string', default: 'memory', description: 'memory, redis://host:port[/db] or nats://host:port (tuning: ?probe_interval=&command_timeout=&presence_ttl=&prefix=)', check: brokerUrl },
  'history-size': { type: 'integer', default: 100, min: 0, max: 1_000_000, description: 'publications kept per channel (0 = off)' },
  'history-ttl': { type: 'number', default: 300, min: 0.001, max: 31_536_000, description: 'seconds a channel history lives after its last publication' },
  'ping-interval': { type: 'number', default: 30, min: 0.05, max: 3600, description: 'seconds between heartbeats' },
  'max-message-size': { type: 'integer', default: 65536, min: 16, max: 16 * 1024 * 1024, description: 'bytes, inbound frame / publish body data' },
  'jwt-secret': { type: 'string', description: 'HS256 secret; enables token auth' },
  'jwt-public-key': { type: 'string', description: 'PEM file with an RS256/ES256 public key; enables token auth' },
  'jwks-url': { type: 'string', description: 'JWKS URL; enables token auth' },
  'jwt-audience': { type: 'string', description: 'required "aud" claim' },
  'jwt-issuer': { type: 'string', description: 'required "iss" claim' },
  'api-key': { type: 'string', description: 'required as "Authorization: Bearer <key>" on /api/*' },
  'allowed-origins': { type: 'string', description: 'comma list of origins (or *) allowed for WebSocket, SSE and CORS; default: same host', check: originList },
  'tls-cert': { type: 'string', description: 'PEM certificate file; serves HTTPS/WSS' },
  'tls-key': { type: 'string', description: 'PEM private key file' },
  demo: { type: 'boolean', default: false, description: 'serve the demo pages and run the demo ticker' },
  'shutdown-timeout': { type: 'number', default: 10, min: 0, max: 3600, description: 'seconds to drain on SIGTERM/SIGINT' },
  'log-level': { type: 'string', default: 'info', description: 'fatal, error, warn, info, debug, trace or silent', check: (v: string) => (['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(v) ? undefined : 'must be one of fatal, error, warn, info, debug, trace, silent') },
  'max-subscriptions': { type: 'integer', default: 128, min: 1, max: 100_000, description: 'channels one connection may subscribe to' },
  'max-outbound-buffer': { type: 'integer', default: 1_048_576, min: 1024, max: 1024 * 1024 * 1024, description: 'bytes queued to one slow client before it is disconnected (4008)' },
  'auth-timeout': { type: 'number', default: 5, min: 0.05, max: 600, description: 'seconds a WebSocket without a token has to send its first auth message (4408)' },
  'message-rate': { type: 'number', default: 50, min: 0.1, max: 1_000_000, description: 'room messages / protocol commands per second per connection (token bucket)' },
  'message-burst': { type: 'integer', default: 200, min: 1, max: 1_000_000, description: 'token bucket size for --message-rate (above --max-subscriptions, so a reconnecting client can re-subscribe everything at once)' },
  'max-connections-per-ip': { type: 'integer', default: 1000, min: 0, max: 10_000_000, description: 'WebSocket + SSE connections from one IP (0 = unlimited); excess gets 429' },
  'max-connections-per-user': { type: 'integer', default: 0, min: 0, max: 10_000_000, description: "WebSocket + SSE connections of one token user (its sub) on this node (0 = unlimited); excess gets 429, or close 4429 after first-message auth" },
  'max-header-size': { type: 'integer', default: 16384, min: 1024, max: 1_048_576, description: 'bytes of request headers (431 beyond)' },
  'max-headers': { type: 'integer', default: 100, min: 10, max: 10_000, description: 'request header count kept per request' },
  'metrics-port': { type: 'integer', min: 0, max: 65535, description: 'serve /metrics on this port instead of the main one' },
  'sse-retry': { type: 'integer', default: 2000, min: 0, max: 3_600_000, description: 'milliseconds an SSE client waits before reconnecting' },
} as const satisfies Record<string, SettingSpec>;

export type SettingName = keyof typeof SETTINGS;

type ValueOf<S extends SettingSpec> = S['type'] extends 'string' ? string : S['type'] extends 'boolean' ? boolean : number;

/** Parsed settings: keys with a default are always present. */
export type Settings = {
  [K in SettingName as (typeof SETTINGS)[K] extends { default: unknown } ? K : never]: ValueOf<(typeof SETTINGS)[K]>;
} & {
  [K in SettingName as (typeof SETTINGS)[K] extends { default: unknown } ? never : K]?: ValueOf<(typeof SETTINGS)[K]>;
};
