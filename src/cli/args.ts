import { SETTINGS, type SettingName } from '../config/schema.js';
import { ConfigError } from '../config/load.js';

export interface ParsedArgs {
  readonly positional: string[];
  readonly flags: Record<string, string | boolean>;
}

/**
 * `--name value`, `--name=value`, `--flag`, `--no-flag`. A bare flag is
 * boolean true when the setting is boolean or no value follows.
 */
export function parseArgs(argv: readonly string[], booleanFlags: ReadonlySet<string> = new Set()): ParsedArgs {
  const positional: string[] = [];
  const flags: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (eq >= 0) {
      flags[name] = arg.slice(eq + 1);
    } else if (name.startsWith('no-') && isBoolean(name.slice(3), booleanFlags)) {
      flags[name.slice(3)] = false;
    } else if (isBoolean(name, booleanFlags) || i + 1 >= argv.length || argv[i + 1]!.startsWith('--')) {
      flags[name] = true;
    } else {
      flags[name] = argv[++i]!;
    }
  }
  return { positional, flags };
}

function isBoolean(name: string, extra: ReadonlySet<string>): boolean {
  return extra.has(name) || (name in SETTINGS && SETTINGS[name as SettingName].type === 'boolean');
}

export function requireString(flags: Record<string, string | boolean>, name: string): string | undefined {
  const value = flags[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') throw new ConfigError(name, 'needs a value');
  return value;
}
