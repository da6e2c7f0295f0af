import { once } from 'node:events';
import WebSocket from 'ws';
import { withTimeout } from './process.js';

/**
 * Forces full garbage collections in a node started with `--inspect`,
 * through the V8 inspector protocol (HeapProfiler.collectGarbage), so a
 * memory reading shows what is live rather than what awaits collection;
 * nothing is added to the product for it. Used by the soak and by T22.
 */
export async function forceGc(inspectorUrl: string, rounds = 2): Promise<void> {
  const ws = new WebSocket(inspectorUrl);
  await withTimeout(once(ws, 'open'), 10_000, `inspector ${inspectorUrl}: no connection within 10 s`);
  let id = 0;
  const call = (method: string) =>
    new Promise<void>((resolve, reject) => {
      const mine = ++id;
      const onMessage = (data: WebSocket.RawData) => {
        const message = JSON.parse(String(data)) as { id?: number; error?: unknown };
        if (message.id !== mine) return;
        ws.off('message', onMessage);
        if (message.error) reject(new Error(JSON.stringify(message.error)));
        else resolve();
      };
      ws.on('message', onMessage);
      ws.send(JSON.stringify({ id: mine, method }));
    });
  try {
    for (let i = 0; i < rounds; i++) await withTimeout(call('HeapProfiler.collectGarbage'), 30_000, 'inspector: no answer to collectGarbage within 30 s');
  } finally {
    ws.close();
  }
}
