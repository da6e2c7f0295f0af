/**
 * Peer P3: Socket.IO 4 with its defaults (ws engine, no compression).
 * The room comes from the handshake query; an `m` event is broadcast to the
 * rest of the room (socket.to(room).emit), encoded once by Socket.IO.
 */
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { announceReady } from './harness.js';

const http = createServer();
const io = new Server(http, { serveClient: false });

io.on('connection', (socket) => {
  const room = socket.handshake.query.room;
  if (typeof room !== 'string' || room === '') return void socket.disconnect(true);
  void socket.join(room);
  socket.on('m', (data: unknown) => {
    socket.to(room).emit('m', data);
  });
});

http.listen(0, '127.0.0.1', () => announceReady((http.address() as { port: number }).port));
