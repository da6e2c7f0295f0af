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
