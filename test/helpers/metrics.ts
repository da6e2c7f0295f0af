import assert from 'node:assert/strict';
import type { HeraldServer } from '../../src/server.js';

/**
 * Reads one sample from the node's Prometheus registry, e.g.
 * `metricValue(server, 'herald_closes_total', { code: '4408' })`; 0 when absent.
 */
export async function metricValue(server: HeraldServer, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await server.ctx.metrics.registry.metrics();
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const present = (match[2] ?? '').split(',').filter(Boolean);
    if (wanted.every((label) => present.includes(label))) return Number(match[3]);
  }
  return 0;
}

/** What an operator sees of a starved broker subscription: the probe timed out, the link was restarted, the gap re-read. */
export async function assertStarvationInMetrics(server: HeraldServer): Promise<void> {
  assert.ok((await metricValue(server, 'herald_broker_probe_timeouts_total')) >= 1, 'probe timeout in /metrics');
  assert.ok((await metricValue(server, 'herald_broker_reconnects_total')) >= 1, 'the starved subscription restarted, in /metrics');
  assert.ok((await metricValue(server, 'herald_gap_repairs_total')) >= 1, 'the missed run read from history, in /metrics');
}
