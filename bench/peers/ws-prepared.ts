/**
 * Peer P2: the same rooms with the best known pure-`ws` fan-out — the frame
 * is built once per message (WebSocket.Sender.frame) and the same buffers
 * go to every member's sender (what Socket.IO ≥ 4.6 does for broadcasts).
 */
import { createRequire } from 'node:module';
import { WebSocketServer, WebSocket } from 'ws';
import { announceReady } from './harness.js';

interface FrameSender {
  sendFrame(list: Buffer[], cb?: () => void): void;
}
const Sender = (createRequire(import.meta.url)('ws') as { Sender: { frame(data: Buffer, options: object): Buffer[] } }).Sender;
const frameOf = Sender.frame;
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
    const payload = data as Buffer;
    try {
      JSON.parse(payload.toString());
    } catch {
      return ws.close(1007, 'not JSON');
    }
    const frame = frameOf(payload, { fin: true, opcode: 1, mask: false, readOnly: false, rsv1: false });
    for (const client of members!) {
      if (client !== ws && client.readyState === WebSocket.OPEN) (client as unknown as { _sender: FrameSender })._sender.sendFrame(frame);
    }
  });
  ws.on('close', () => {
    members!.delete(ws);
    if (members!.size === 0) rooms.delete(room);
  });
});

wss.on('listening', () => announceReady((wss.address() as { port: number }).port));
