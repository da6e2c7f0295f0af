import { ConfigError } from '../config/load.js';
import { parseArgs, requireString } from './args.js';

/** `herald publish CHANNEL JSON [--event E] [--url U] [--api-key K]` through the HTTP API. */
export async function publishCommand(argv: readonly string[]): Promise<void> {
  const { positional, flags } = parseArgs(argv);
  const [channel, json] = positional;
  if (!channel || json === undefined) throw new ConfigError('publish', 'usage: herald publish CHANNEL JSON [--event E] [--url U] [--api-key K]');
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch {
    throw new ConfigError('publish', 'JSON argument is not valid JSON');
  }
  const url = requireString(flags, 'url') ?? process.env.HERALD_URL ?? 'http://127.0.0.1:8080';
  const apiKey = requireString(flags, 'api-key') ?? process.env.HERALD_API_KEY;
  const event = requireString(flags, 'event');
  let endpoint: URL;
  try {
    endpoint = new URL('/api/publish', url);
  } catch {
    throw new ConfigError('url', `"${url}" is not a URL like http://127.0.0.1:8080`);
  }
  let response: Response;
  try {
    response = await fetch(endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...(apiKey ? { Authorization: `Bearer ${apiKey}` } : {}) },
      body: JSON.stringify({ channel, event, data }),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    process.stderr.write(`herald: cannot reach ${endpoint.origin}: ${cause?.code ?? cause?.message ?? (err as Error).message}\n`);
    process.exitCode = 1;
    return;
  }
  const text = await response.text();
  process.stdout.write(text + '\n');
  if (!response.ok) process.exitCode = 1;
}
