/**
 * Peer: uWebSockets.js pub/sub (community rebuild, benchmark peer only).
 * Each connection subscribes to its room's topic; a message is published
 * to the topic with ws.publish, which is app.publish minus the sender — the
 * same "every other member" rule as the others. Backpressure limits are
 * raised so nothing is skipped (PERFORMANCE.md row 17).
 */
import { createRequire } from 'node:module';
import { announceReady } from './harness.js';

type UwsModule = typeof import('@trufflesuite/uws-js-unofficial');
const uWS = createRequire(import.meta.url)('@trufflesuite/uws-js-unofficial') as UwsModule;

interface RoomData {
  room: string;
}

uWS
  .App()
  .ws<RoomData>('/*', {
    compression: uWS.DISABLED,
    maxPayloadLength: 64 * 1024,
    maxBackpressure: 64 * 1024 * 1024,
    closeOnBackpressureLimit: 0,
    idleTimeout: 120,
    upgrade: (res, req, context) => {
      const room = req.getQuery('room') ?? '';
      res.upgrade<RoomData>(
        { room },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws) => {
      const { room } = ws.getUserData();
      if (room === '') return ws.end(4001, 'Room ID required');
      ws.subscribe(room);
    },
    message: (ws, message, isBinary) => {
      if (isBinary) return ws.end(1003, 'binary not accepted');
      try {
        JSON.parse(Buffer.from(message).toString());
      } catch {
        return ws.end(1007, 'not JSON');
      }
      ws.publish(ws.getUserData().room, message, false);
    },
  })
  .listen('127.0.0.1', 0, (listenSocket) => {
    if (!listenSocket) throw new Error('uWS could not listen');
    announceReady(uWS.us_socket_local_port(listenSocket));
  });
