import { Writable } from 'node:stream';
import type { SettingName } from '../../src/config/schema.js';
import { settingsWith } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { startHerald, type HeraldServer, type StartOptions } from '../../src/server.js';

export interface TestServer extends HeraldServer {
  /** Every log line the node wrote, as text (for log-hygiene assertions). */
  readonly logs: string[];
  readonly wsUrl: string;
}

/** Starts a node on 127.0.0.1 and a random port, logs captured in memory. */
export async function startTestServer(
  overrides: Partial<Record<SettingName, string | number | boolean>> = {},
  options: StartOptions = {},
): Promise<TestServer> {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(String(chunk));
      callback();
    },
  });
  const settings = settingsWith({ host: '127.0.0.1', port: 0, 'log-level': 'debug', ...overrides });
  const server = await startHerald(settings, { logger: createLogger(settings['log-level'], sink), ...options });
  return Object.assign(server, { logs, wsUrl: server.url.replace(/^http/, 'ws') + '/ws' });
}

export async function publish(server: { url: string }, channel: string, data: unknown, event?: string): Promise<{ channel: string; position: string }> {
  const response = await fetch(`${server.url}/api/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel, data, event }),
  });
  if (!response.ok) throw new Error(`publish failed: ${response.status} ${await response.text()}`);
  return (await response.json()) as { channel: string; position: string };
}

/** Resolves once `count` subscribers are live in `channel` on this node. */
export async function waitForSubscribers(server: HeraldServer, channel: string, count: number): Promise<void> {
  const { until } = await import('./wait.js');
  await until(() => server.ctx.hub.subscriberCount(channel) >= count, 5000, `${count} subscribers in ${channel}`);
}
