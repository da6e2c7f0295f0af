/**
 * Peer P4: a bare node:http SSE server. GET /events/:room streams,
 * POST /api/publish {"channel","data"} fans out. `--mode naive` (default)
 * builds the event text once and res.write()s the string to every stream;
 * `--mode buffer` writes one pre-built Buffer to every stream.
 */
import { createServer, type ServerResponse } from 'node:http';
import { announceReady, peerArgs } from './harness.js';

const prebuilt = peerArgs(process.argv.slice(2)).get('mode') === 'buffer';
const rooms = new Map<string, Set<ServerResponse>>();
let lastId = 0;

const server = createServer((req, res) => {
  const url = req.url ?? '/';
  if (req.method === 'GET' && url.startsWith('/events/')) {
    const room = decodeURIComponent(url.slice('/events/'.length));
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    res.write('retry: 2000\n\n');
    let members = rooms.get(room);
    if (!members) rooms.set(room, (members = new Set()));
    members.add(res);
    res.on('close', () => {
      members!.delete(res);
      if (members!.size === 0) rooms.delete(room);
    });
    return;
  }
  if (req.method === 'POST' && url === '/api/publish') {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const { channel, data } = JSON.parse(Buffer.concat(parts).toString()) as { channel: string; data: unknown };
      const id = ++lastId;
      const text = `id: ${id}\nevent: message\ndata: ${JSON.stringify(data)}\n\n`;
      const event = prebuilt ? Buffer.from(text) : text;
      for (const stream of rooms.get(channel) ?? []) stream.write(event);
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(`{"position":"${id}"}`);
    });
    return;
  }
  res.writeHead(404).end();
});

server.listen(0, '127.0.0.1', () => announceReady((server.address() as { port: number }).port));
