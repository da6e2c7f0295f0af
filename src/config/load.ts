import { readFileSync } from 'node:fs';
import { SETTINGS, type SettingName, type Settings, type SettingSpec } from './schema.js';

/** A setting that failed validation; the CLI prints it and exits 2. */
export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    reason: string,
  ) {
    super(`invalid setting "${setting}": ${reason}`);
    this.name = 'ConfigError';
  }
}

export interface ConfigSources {
  /** Raw flags as given on the command line (values are strings, or true for a bare flag). */
  readonly flags?: Record<string, string | boolean>;
  readonly env?: NodeJS.ProcessEnv;
  /** Path of a JSON config file (--config). */
  readonly file?: string;
}

const envName = (name: string) => `HERALD_${name.toUpperCase().replace(/-/g, '_')}`;
const camelName = (name: string) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Resolves every setting with precedence flag > env > file > default, validating each once. */
export function loadSettings(sources: ConfigSources): Settings {
  const flags = sources.flags ?? {};
  const env = sources.env ?? {};
  const fileValues = sources.file ? readConfigFile(sources.file) : {};
  for (const key of Object.keys(flags)) {
    if (!(key in SETTINGS)) throw new ConfigError(key, 'unknown flag');
  }
  const settings: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(SETTINGS) as [SettingName, SettingSpec][]) {
    const raw = flags[name] ?? env[envName(name)] ?? fileValues[name];
    const value = raw === undefined ? spec.default : parseSetting(name, spec, raw);
    if (value !== undefined) settings[name] = value;
  }
  if ((settings['tls-cert'] === undefined) !== (settings['tls-key'] === undefined)) {
    throw new ConfigError('tls-cert', '--tls-cert and --tls-key must be given together');
  }
  return settings as Settings;
}

function readConfigFile(path: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError('config', `cannot read JSON file ${path}: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError('config', `${path} must hold a JSON object`);
  }
  const byName: Record<string, unknown> = {};
  const known = new Map(Object.keys(SETTINGS).flatMap((name) => [[name, name], [camelName(name), name]]));
  for (const [key, value] of Object.entries(parsed)) {
    const name = known.get(key);
    if (!name) throw new ConfigError(key, `unknown key in ${path}`);
    byName[name] = value;
  }
  return byName;
}

function parseSetting(name: string, spec: SettingSpec, raw: unknown): string | number | boolean {
  const value = coerce(name, spec, raw);
  if (typeof value === 'number') {
    if (spec.min !== undefined && value < spec.min) throw new ConfigError(name, `must be at least ${spec.min}`);
    if (spec.max !== undefined && value > spec.max) throw new ConfigError(name, `must be at most ${spec.max}`);
  }
  const problem = spec.check?.(value as never);
  if (problem) throw new ConfigError(name, problem);
  return value;
}

function coerce(name: string, spec: SettingSpec, raw: unknown): string | number | boolean {
  switch (spec.type) {
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (typeof raw === 'string' && /^(true|1|yes|on)$/i.test(raw)) return true;
      if (typeof raw === 'string' && /^(false|0|no|off)$/i.test(raw)) return false;
      throw new ConfigError(name, 'must be true or false');
    case 'string':
      if (typeof raw === 'string' && raw.length > 0) return raw;
      throw new ConfigError(name, 'must be a non-empty string');
    case 'integer':
    case 'number': {
      const number = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
      if (!Number.isFinite(number)) throw new ConfigError(name, `must be a number, got ${JSON.stringify(raw)}`);
      if (spec.type === 'integer' && !Number.isInteger(number)) throw new ConfigError(name, 'must be a whole number');
      return number;
    }
  }
}

/** Settings for tests and embedding: defaults, overridden by the given values. */
export function settingsWith(overrides: Partial<Record<SettingName, string | number | boolean>>): Settings {
  const flags: Record<string, string | boolean> = {};
  for (const [key, value] of Object.entries(overrides)) flags[key] = typeof value === 'boolean' ? value : String(value);
  return loadSettings({ flags });
}
