/**
 * A load-generator child process (pinned to the generator core by the
 * coordinator). It holds subscriber and/or publisher connections and obeys
 * commands over IPC; every command is answered with the same `seq`.
 */
import { encodeHistogram, newLatencyHistogram } from '../histogram.js';
import { HttpPublisher, LoadClient, type ConnectionSpec, type Tally } from './client.js';
import { nowMicros, payloadText, PROBE_PAYLOAD } from './payload.js';

export type GeneratorCommand =
  | { cmd: 'open'; specs: ConnectionSpec[]; concurrency: number; publishers: boolean }
  | { cmd: 'http-publisher'; port: number; localAddress: string }
  | { cmd: 'status' }
  | { cmd: 'reset' }
  | { cmd: 'probe'; rooms: string[] }
  | { cmd: 'publish'; rooms: string[]; rate: number; durationMs: number; measured: boolean; payloadBytes: number }
  | { cmd: 'report' }
  | { cmd: 'close' };

export interface GeneratorStatus {
  received: number;
  warmups: number;
  probed: number;
  opened: number;
  failed: number;
  closed: number;
}

export interface OpenResult extends GeneratorStatus {
  /** From the first connect to the last connection settled. */
  ms: number;
}

export interface PublishResult {
  sent: number;
  /** Worst lateness of a publication against its open-loop schedule. */
  maxLagMs: number;
  ms: number;
}

export interface GeneratorReport extends GeneratorStatus {
  histogram: string;
}

const histogram = newLatencyHistogram();
const tally: Tally = {
  received: 0,
  warmups: 0,
  probed: 0,
  opened: 0,
  failed: 0,
  closed: 0,
  record: (latency: number) => histogram.recordValue(latency),
};
const subscribers: LoadClient[] = [];
const publishers: LoadClient[] = [];
let httpPublisher: HttpPublisher | undefined;

function status(): GeneratorStatus {
  return { received: tally.received, warmups: tally.warmups, probed: tally.probed, opened: tally.opened, failed: tally.failed, closed: tally.closed };
}

/** Opens every connection, at most `concurrency` handshakes in flight. */
function openAll(specs: ConnectionSpec[], concurrency: number, asPublishers: boolean): Promise<OpenResult> {
  const started = performance.now();
  const target = asPublishers ? publishers : subscribers;
  return new Promise((resolve) => {
    let next = 0;
    let settled = 0;
    if (specs.length === 0) resolve({ ...status(), ms: 0 });
    const onSettled = () => {
      settled++;
      if (next < specs.length) startOne();
      if (settled === specs.length) resolve({ ...status(), ms: performance.now() - started });
    };
    const startOne = () => target.push(new LoadClient(specs[next++]!, tally, onSettled));
    for (let i = 0; i < concurrency && next < specs.length; i++) startOne();
  });
}

function sendOne(index: number, rooms: readonly string[], payload: string): void {
  const room = rooms[index % rooms.length]!;
  if (httpPublisher) httpPublisher.publish(payload, room);
  else publishers[index % publishers.length]!.publish(payload, room);
}

/**
 * Open-loop: publication i is due at start + i/rate, whatever the server
 * does, so a slow server shows up as latency, not as a slower schedule.
 */
function publish(rooms: string[], rate: number, durationMs: number, measured: boolean, payloadBytes: number): Promise<PublishResult> {
  const total = Math.max(1, Math.round((rate * durationMs) / 1000));
  const intervalMs = 1000 / rate;
  const started = performance.now();
  let sent = 0;
  let maxLagMs = 0;
  return new Promise((resolve) => {
    const tick = () => {
      const elapsed = performance.now() - started;
      const due = Math.min(total, Math.floor(elapsed / intervalMs) + 1);
      if (sent < due) maxLagMs = Math.max(maxLagMs, elapsed - sent * intervalMs);
      while (sent < due) sendOne(sent++, rooms, payloadText(nowMicros(), measured, payloadBytes));
      if (sent >= total) {
        resolve({ sent, maxLagMs, ms: performance.now() - started });
        return;
      }
      // Sleep until the next one is due (timers wake in whole milliseconds, so at high rates a tick sends a few);
      // spinning on setImmediate instead would burn the generator core the subscribers need.
      const wait = sent * intervalMs - (performance.now() - started);
      if (wait > 0) setTimeout(tick, Math.max(1, Math.floor(wait)));
      else setImmediate(tick);
    };
    tick();
  });
}

async function handle(command: GeneratorCommand): Promise<unknown> {
  switch (command.cmd) {
    case 'open':
      return openAll(command.specs, command.concurrency, command.publishers);
    case 'http-publisher':
      httpPublisher = new HttpPublisher(command.port, command.localAddress);
      await httpPublisher.whenConnected();
      return {};
    case 'status':
      return status();
    case 'reset':
      tally.received = 0;
      tally.warmups = 0;
      histogram.reset();
      return {};
    case 'probe':
      command.rooms.forEach((_, i) => sendOne(i, command.rooms, PROBE_PAYLOAD));
      return {};
    case 'publish':
      return publish(command.rooms, command.rate, command.durationMs, command.measured, command.payloadBytes);
    case 'report':
      return { ...status(), histogram: encodeHistogram(histogram) } satisfies GeneratorReport;
    case 'close':
      for (const client of [...subscribers, ...publishers]) client.destroy();
      httpPublisher?.close();
      setTimeout(() => process.exit(0), 50);
      return {};
  }
}

process.on('message', (message: GeneratorCommand & { seq: number }) => {
  handle(message).then(
    (result) => process.send!({ seq: message.seq, result }),
    (err: unknown) => process.send!({ seq: message.seq, error: String((err as Error)?.stack ?? err) }),
  );
});
process.on('disconnect', () => process.exit(0));
