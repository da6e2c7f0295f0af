/**
 * The --broker setting (SPEC §1): `memory`, `redis://[user:pass@]host:port[/db]`
 * (or `rediss://` for TLS), `nats://host:port[,nats://host2:port]`.
 * Herald's own tuning knobs ride along as query parameters, so one setting
 * names the broker and how it is watched:
 *   probe_interval   seconds between PUB/SUB liveness probes (default 5)
 *   command_timeout  seconds before a broker command counts as failed (default 1)
 *   presence_ttl     seconds a node's presence entries live without a refresh (default 60)
 *   prefix           key / subject prefix, to share a broker between clusters (default herald)
 */
export interface BrokerUrl {
  readonly kind: 'memory' | 'redis' | 'nats';
  /** What the broker client connects to: the URL(s) without Herald's parameters. */
  readonly servers: string[];
  readonly probeIntervalMs: number;
  readonly commandTimeoutMs: number;
  readonly presenceTtlMs: number;
  readonly prefix: string;
}

export const BROKER_DEFAULTS = {
  probeIntervalMs: 5000,
  commandTimeoutMs: 1000,
  presenceTtlMs: 60_000,
  prefix: 'herald',
} as const;

const SECONDS_PARAMS = {
  probe_interval: { field: 'probeIntervalMs', min: 0.05, max: 3600 },
  command_timeout: { field: 'commandTimeoutMs', min: 0.05, max: 600 },
  presence_ttl: { field: 'presenceTtlMs', min: 0.5, max: 86_400 },
} as const;

const PREFIX = /^[A-Za-z0-9_-]{1,64}$/;

/** Parses and validates the setting; throws an Error whose message says what is wrong. */
export function parseBrokerUrl(value: string): BrokerUrl {
  if (value === 'memory') return { kind: 'memory', servers: [], ...BROKER_DEFAULTS };
  const scheme = /^([a-z]+):\/\//.exec(value)?.[1];
  if (scheme !== 'redis' && scheme !== 'rediss' && scheme !== 'nats') {
    throw new Error('must be "memory", redis://host:port[/db] or nats://host:port');
  }
  const settings: { -readonly [K in keyof typeof BROKER_DEFAULTS]: (typeof BROKER_DEFAULTS)[K] | number | string } = { ...BROKER_DEFAULTS };
  const servers: string[] = [];
  const parts = scheme === 'nats' ? value.split(',') : [value];
  for (const part of parts) {
    let url: URL;
    try {
      url = new URL(part);
    } catch {
      throw new Error(`"${redact(part)}" is not a URL`);
    }
    if (!url.hostname) throw new Error(`"${redact(part)}" has no host`);
    if (scheme !== 'nats' && url.pathname !== '' && url.pathname !== '/' && !/^\/[0-9]{1,2}$/.test(url.pathname)) {
      throw new Error('the path of a redis URL must be a database number, e.g. redis://host:6379/0');
    }
    for (const [name, raw] of url.searchParams) {
      if (name === 'prefix') {
        if (!PREFIX.test(raw)) throw new Error('prefix must be 1-64 characters of A-Z a-z 0-9 _ -');
        settings.prefix = raw;
        continue;
      }
      const spec = SECONDS_PARAMS[name as keyof typeof SECONDS_PARAMS];
      if (!spec) throw new Error(`unknown broker parameter "${name}" (known: ${[...Object.keys(SECONDS_PARAMS), 'prefix'].join(', ')})`);
      const seconds = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(seconds) || seconds < spec.min || seconds > spec.max) {
        throw new Error(`${name} must be a number of seconds from ${spec.min} to ${spec.max}`);
      }
      settings[spec.field] = Math.round(seconds * 1000);
    }
    url.search = '';
    servers.push(url.toString().replace(/\/$/, ''));
  }
  return {
    kind: scheme === 'nats' ? 'nats' : 'redis',
    servers,
    probeIntervalMs: settings.probeIntervalMs as number,
    commandTimeoutMs: settings.commandTimeoutMs as number,
    presenceTtlMs: settings.presenceTtlMs as number,
    prefix: settings.prefix as string,
  };
}

/** The URL with any password masked, for messages and logs. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
