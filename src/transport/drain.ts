import type { Drainable } from '../context.js';

/**
 * Graceful drain (SPEC §1 --shutdown-timeout, TESTPLAN §4.3 and T21): the
 * connections are asked to leave one after another, spread over most of the
 * window instead of all at once, so their reconnects do not land on the
 * other nodes as one thundering herd.
 */

/** Share of the drain window over which the polite closes are spread (TESTPLAN §5: 80%). */
export const DRAIN_SPREAD_SHARE = 0.8;
/** …at no slower a pace than this, so a node with few connections does not keep them for nothing. */
export const DRAIN_MIN_CLOSES_PER_SECOND = 200;
const DRAIN_TICK_MS = 25;

/** Milliseconds over which `count` connections are asked to leave within a drain window of `windowMs`. */
export function drainSpreadMs(count: number, windowMs: number): number {
  return Math.min(windowMs * DRAIN_SPREAD_SHARE, (count / DRAIN_MIN_CLOSES_PER_SECOND) * 1000);
}

/**
 * Asks each connection to leave (WebSocket 1001, SSE retry hint + end) at
 * evenly spaced moments over drainSpreadMs, in random order (no transport
 * or channel goes first), and resolves once `remaining()`
 * is 0 or the window has passed; the caller terminates what is left.
 */
export async function drainConnections(all: readonly Drainable[], remaining: () => number, windowMs: number): Promise<void> {
  const connections = shuffled(all);
  const started = Date.now();
  const spreadMs = drainSpreadMs(connections.length, windowMs);
  let asked = 0;
  for (;;) {
    const elapsed = Date.now() - started;
    const due = spreadMs <= 0 ? connections.length : Math.min(connections.length, Math.floor((elapsed / spreadMs) * connections.length) + 1);
    while (asked < due) connections[asked++]!.drain();
    if (remaining() === 0 || elapsed >= windowMs) return;
    await new Promise((resolve) => setTimeout(resolve, Math.min(DRAIN_TICK_MS, windowMs - elapsed)));
  }
}

function shuffled<T>(items: readonly T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}
