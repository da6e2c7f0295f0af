import { localAddressFor, roomName } from './fanout.js';
import type { ConnectionSpec } from './load/client.js';
import type { OpenResult } from './load/generator.js';
import { coreTimes, SERVER_CPU, slabKb, sleep } from './process.js';
import type { Scenario } from './scenarios.js';
import { ServerSet, startGenerator, type ServerStartOptions } from './servers.js';
import type { Target } from './targets.js';

export interface ConnectSettings {
  readonly connections: number;
  readonly perRoom: number;
  /** Handshakes in flight at once. */
  readonly concurrency: number;
  /** How long to watch the idle server's CPU. */
  readonly idleMs: number;
}

export interface ConnectResult {
  readonly kind: 'connect';
  readonly scenario: string;
  readonly target: string;
  readonly connections: number;
  readonly opened: number;
  readonly failed: number;
  /** From the first connect to the last connection usable (101, or the first server message where the protocol has one). */
  readonly setupMs: number;
  readonly connectionsPerSec: number;
  /** Server CPU spent per connection set up. */
  readonly setupCpuMicrosPerConnection: number;
  readonly kbPerConnection: number;
  /** Kernel slab growth per connection (both ends of each loopback pair; outside any RSS). */
  readonly kernelKbPerConnection: number;
  readonly idleCpuMicrosPerConnectionSecond: number;
  /** Server-core time used by other processes during the storm (noise). */
  readonly foreignCpuPct: number;
  readonly warnings: string[];
}

/**
 * Connect storm, then idle memory: open every connection as fast as the
 * generator can (bounded handshakes in flight), time it, let the server
 * settle, watch its idle CPU, then RSS after GC minus RSS before, per
 * connection.
 */
export async function runConnect(scenario: Scenario, target: Target, settings: ConnectSettings, options: ServerStartOptions): Promise<ConnectResult> {
  const warnings: string[] = [];
  const servers = await ServerSet.start(target, options);
  const generator = startGenerator('connections', options.quiet);
  try {
    const rooms = Math.max(1, Math.ceil(settings.connections / settings.perRoom));
    const specs: ConnectionSpec[] = [];
    for (let i = 0; i < settings.connections; i++) {
      const room = roomName(scenario.id, i % rooms);
      const spec: ConnectionSpec = { dialect: target.dialect, port: servers.ports[i % servers.ports.length]!, path: target.path(room), localAddress: localAddressFor(i) };
      specs.push(target.dialect === 'proto' ? { ...spec, channel: room } : spec);
    }
    const rssBase = await servers.rssAfterGcKb();
    const slabBase = slabKb();
    const cpuStart = servers.cpuMicros();
    const coreStart = coreTimes(SERVER_CPU);
    const opened = await generator.request<OpenResult>({ cmd: 'open', specs, concurrency: settings.concurrency, publishers: false }, 300_000);
    const setupCpu = servers.cpuMicros() - cpuStart;
    const coreEnd = coreTimes(SERVER_CPU);
    const foreign = coreEnd.busy - coreStart.busy - (coreEnd.softirq - coreStart.softirq) - setupCpu;
    const foreignCpuPct = Math.max(0, (foreign / 1000 / opened.ms) * 100);
    if (foreignCpuPct > 10) warnings.push(`other processes used ${foreignCpuPct.toFixed(0)}% of the server core during the storm`);
    if (opened.failed > 0) warnings.push(`${opened.failed} connections failed`);

    // Let the storm's last subscriptions and the collector's background work finish before watching idle CPU.
    await sleep(2000);
    const idleStart = servers.cpuMicros();
    await sleep(settings.idleMs);
    const idleCpu = servers.cpuMicros() - idleStart;
    const rss = await servers.rssAfterGcKb();
    const slab = slabKb();
    const n = Math.max(1, opened.opened);
    return {
      kind: 'connect',
      scenario: scenario.id,
      target: target.name,
      connections: settings.connections,
      opened: opened.opened,
      failed: opened.failed,
      setupMs: opened.ms,
      connectionsPerSec: (opened.opened / opened.ms) * 1000,
      setupCpuMicrosPerConnection: setupCpu / n,
      kbPerConnection: (rss - rssBase) / n,
      kernelKbPerConnection: (slab - slabBase) / n,
      idleCpuMicrosPerConnectionSecond: idleCpu / n / (settings.idleMs / 1000),
      foreignCpuPct,
      warnings,
    };
  } finally {
    await generator.request({ cmd: 'close' }, 5000).catch(() => {});
    await servers.stop();
  }
}
