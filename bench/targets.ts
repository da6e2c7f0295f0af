import { fileURLToPath } from 'node:url';
import type { Dialect } from './load/client.js';

/**
 * A server under test and how clients talk to it. Herald and every peer
 * serve rooms the same way: a subscriber names its room in the URL (or
 * subscribes to it in herald.v1), a publisher's message goes to every
 * other member, and SSE publishers POST /api/publish.
 */
export interface Target {
  readonly name: string;
  readonly description: string;
  readonly script: string;
  readonly args: readonly string[];
  readonly dialect: Dialect;
  /** Path for a connection in `room`. herald.v1 subscribes after connecting instead. */
  path(room: string): string;
  /** One publisher connection publishes to every room (herald.v1), instead of one member per room. */
  readonly singlePublisher: boolean;
  /** SSE targets publish over HTTP. */
  readonly httpPublisher: boolean;
  readonly isHerald: boolean;
  /** Nodes started side by side (Redis fan-out); subscribers are spread over them. */
  readonly nodes: number;
  /** Needs a Redis URL in `--broker`; filled in by the Redis scenario. */
  readonly needsRedis: boolean;
}

const peer = (file: string) => fileURLToPath(new URL(`./peers/${file}`, import.meta.url));

/**
 * Herald's settings for load tests: the per-IP connection cap and the
 * per-connection message rate are policies for untrusted clients, and the
 * generator's clients all come from 127.0.0.x with one publisher sending
 * thousands of messages a second. Everything else stays at its default.
 */
export const HERALD_BENCH_FLAGS = ['--max-connections-per-ip', '0', '--message-rate', '1000000', '--message-burst', '1000000'] as const;

const roomPath = (room: string) => `/ws?room=${encodeURIComponent(room)}`;

function herald(name: string, description: string, dialect: Dialect, extra: Partial<Target> = {}): Target {
  return {
    name,
    description,
    script: peer('herald.js'),
    args: [...HERALD_BENCH_FLAGS],
    dialect,
    path: dialect === 'proto' ? () => '/ws' : dialect === 'sse' ? (room) => `/events/${encodeURIComponent(room)}` : roomPath,
    singlePublisher: dialect === 'proto',
    httpPublisher: dialect === 'sse',
    isHerald: true,
    nodes: 1,
    needsRedis: false,
    ...extra,
  };
}

function peerTarget(name: string, description: string, file: string, dialect: Dialect, args: string[] = []): Target {
  return {
    name,
    description,
    script: peer(file),
    args,
    dialect,
    path: dialect === 'sio' ? (room) => `/socket.io/?EIO=4&transport=websocket&room=${encodeURIComponent(room)}` : dialect === 'sse' ? (room) => `/events/${encodeURIComponent(room)}` : roomPath,
    singlePublisher: false,
    httpPublisher: dialect === 'sse',
    isHerald: false,
    nodes: 1,
    needsRedis: false,
  };
}

export const TARGETS: Record<string, Target> = {
  'herald-room': herald('herald-room', 'Herald, room mode (SPEC §3a)', 'room'),
  'herald-v1': herald('herald-v1', 'Herald, herald.v1 protocol mode (SPEC §3b)', 'proto'),
  'herald-sse': herald('herald-sse', 'Herald, SSE streams (SPEC §4)', 'sse'),
  'herald-redis': herald('herald-redis', 'Herald, two nodes on a private Redis, room mode', 'room', { nodes: 2, needsRedis: true }),
  uws: peerTarget('uws', 'uWebSockets.js pub/sub (ws.publish)', 'uws.js', 'room'),
  'ws-naive': peerTarget('ws-naive', 'seed-style ws rooms: Map<room,Set<ws>>, ws.send loop', 'ws-naive.js', 'room'),
  'ws-prepared': peerTarget('ws-prepared', 'ws rooms, frame built once (Sender.frame), sendFrame loop', 'ws-prepared.js', 'room'),
  socketio: peerTarget('socketio', 'Socket.IO 4 defaults, socket.to(room).emit', 'socketio.js', 'sio'),
  'sse-naive': peerTarget('sse-naive', 'node:http SSE, res.write(string) loop', 'sse-naive.js', 'sse', ['--mode', 'naive']),
  'sse-buffer': peerTarget('sse-buffer', 'node:http SSE, one pre-built Buffer res.write loop', 'sse-naive.js', 'sse', ['--mode', 'buffer']),
};
