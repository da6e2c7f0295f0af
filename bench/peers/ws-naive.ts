/**
 * Peer P1: the seed's room code, the way it is usually written with `ws` —
 * Map<room, Set<ws>>, each message validated as JSON, then `ws.send(text)`
 * to every other member.
 */
import { WebSocketServer, WebSocket } from 'ws';
import { announceReady } from './harness.js';

const rooms = new Map<string, Set<WebSocket>>();
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/ws' });

wss.on('connection', (ws, req) => {
  const room = new URL(req.url ?? '/', 'http://localhost').searchParams.get('room');
  if (!room) return ws.close(4001, 'Room ID required');
  let members = rooms.get(room);
  if (!members) rooms.set(room, (members = new Set()));
  members.add(ws);
  ws.on('message', (data, isBinary) => {
    if (isBinary) return ws.close(1003, 'binary not accepted');
    const text = data.toString();
    try {
      JSON.parse(text);
    } catch {
      return ws.close(1007, 'not JSON');
    }
    for (const client of members!) {
      if (client !== ws && client.readyState === WebSocket.OPEN) client.send(text);
    }
  });
  ws.on('close', () => {
    members!.delete(ws);
    if (members!.size === 0) rooms.delete(room);
  });
});

wss.on('listening', () => announceReady((wss.address() as { port: number }).port));
