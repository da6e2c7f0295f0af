/**
 * The scenarios of issue 6. Fan-out scenarios publish open-loop at a fixed
 * rate, identical for every server in the scenario. The big rooms run at
 * the load (1,000 subscribers × 200 msg/s = 200k deliveries/s; the
 * 10k room at the same delivery rate): uWebSockets.js and Herald are near
 * saturation there and coalesce writes, the naive peers cannot keep up, so
 * their latency is a backlog, not a latency. `room-1k-light` is the same
 * room at 40 msg/s, below every server's saturation: nothing coalesces,
 * each delivery is one socket write, and latencies compare like for like.
 * `connect` opens connections as fast as the generator can and then
 * measures idle memory.
 */
export type ScenarioKind = 'fanout' | 'connect';

export interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly kind: ScenarioKind;
  readonly targets: readonly string[];
  /** Fan-out: rooms × subscribers per room, publications per second over all rooms. */
  readonly rooms: number;
  readonly perRoom: number;
  readonly rate: number;
  /** Connect: how many connections (each in a room of `perRoom`). */
  readonly connections: number;
}

/** ws-prepared (PERFORMANCE.md's P2, the best pure-ws loop) only where it adds information, to keep the default run short. */
const WEBSOCKET_TARGETS = ['herald-room', 'herald-v1', 'uws', 'ws-naive', 'ws-prepared', 'socketio'];
const WEBSOCKET_TARGETS_SHORT = ['herald-room', 'herald-v1', 'uws', 'ws-naive', 'socketio'];

export const SCENARIOS: readonly Scenario[] = [
  {
    id: 'room-1k',
    title: 'One room, 1,000 subscribers',
    kind: 'fanout',
    targets: WEBSOCKET_TARGETS,
    rooms: 1,
    perRoom: 1000,
    rate: 200,
    connections: 0,
  },
  {
    id: 'room-1k-light',
    title: 'One room, 1,000 subscribers, light load (no write coalescing)',
    kind: 'fanout',
    targets: WEBSOCKET_TARGETS,
    rooms: 1,
    perRoom: 1000,
    rate: 40,
    connections: 0,
  },
  {
    id: 'room-10k',
    title: 'One room, 10,000 subscribers',
    kind: 'fanout',
    targets: WEBSOCKET_TARGETS_SHORT,
    rooms: 1,
    perRoom: 10_000,
    rate: 20,
    connections: 0,
  },
  {
    id: 'rooms-1000x10',
    title: '1,000 rooms × 10 subscribers',
    kind: 'fanout',
    targets: WEBSOCKET_TARGETS_SHORT,
    rooms: 1000,
    perRoom: 10,
    rate: 2000,
    connections: 0,
  },
  {
    id: 'sse-1k',
    title: 'SSE, one channel, 1,000 streams',
    kind: 'fanout',
    targets: ['herald-sse', 'sse-naive', 'sse-buffer'],
    rooms: 1,
    perRoom: 1000,
    rate: 100,
    connections: 0,
  },
  {
    id: 'redis-2node',
    title: 'Redis fan-out, two Herald nodes, 1,000 subscribers split 500/500',
    kind: 'fanout',
    targets: ['herald-room', 'herald-redis'],
    rooms: 1,
    perRoom: 1000,
    rate: 40,
    connections: 0,
  },
  {
    id: 'connect-10k',
    title: 'Connect storm and idle memory, 10,000 connections (rooms of 100)',
    kind: 'connect',
    targets: ['herald-room', 'herald-v1', 'uws', 'ws-naive', 'socketio'],
    rooms: 100,
    perRoom: 100,
    rate: 0,
    connections: 10_000,
  },
];

/** Names a user may type for a group of scenarios. */
export const ALIASES: Record<string, readonly string[]> = {
  all: SCENARIOS.map((s) => s.id),
  big: ['room-1k', 'room-10k'],
  light: ['room-1k-light'],
  small: ['rooms-1000x10'],
  sse: ['sse-1k'],
  redis: ['redis-2node'],
  idle: ['connect-10k'],
  storm: ['connect-10k'],
  connect: ['connect-10k'],
};
