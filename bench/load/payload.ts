/**
 * What the publisher sends and how a subscriber reads it back. Every
 * measured publication carries its send time as `"t":<µs>` on the
 * machine-wide monotonic clock (process.hrtime, CLOCK_MONOTONIC), so a
 * subscriber in another process can compute publish→receive latency. Warm-up
 * publications say `"w":` instead and probes `"probe"`, so neither is
 * counted. The same bytes survive every server's wire form (room frame,
 * herald.v1 envelope, Socket.IO event, SSE data line), so one scanner reads
 * them all.
 */

const STAMP_KEY = Buffer.from('"t":');
const PROBE_KEY = Buffer.from('"probe"');
const WARMUP_KEY = Buffer.from('{"w":');
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

export const PROBE_PAYLOAD = '{"probe":1}';

/** Microseconds on the shared monotonic clock. */
export function nowMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** A JSON payload of about `bytes` bytes: the stamp, then padding. */
export function payloadText(stampMicros: number, measured: boolean, bytes: number): string {
  const head = `{"${measured ? 't' : 'w'}":${stampMicros},"pad":"`;
  const padding = Math.max(0, bytes - head.length - 2);
  return `${head}${'x'.repeat(padding)}"}`;
}

/** Warm-up publications in bytes [start, end): counted only so the coordinator knows when they have drained. */
export function countWarmups(buf: Buffer, start: number, end: number): number {
  let count = 0;
  for (let at = buf.indexOf(WARMUP_KEY, start); at >= 0 && at < end; at = buf.indexOf(WARMUP_KEY, at + WARMUP_KEY.length)) count++;
  return count;
}

export function containsProbe(buf: Buffer, start: number, end: number): boolean {
  const at = buf.indexOf(PROBE_KEY, start);
  return at >= 0 && at < end;
}

/**
 * Calls `record(latency)` for each stamp in bytes [start, end) and returns
 * how many there were. `now` is read once per socket read by the caller:
 * everything in one read arrived at the same moment.
 */
export function scanStamps(buf: Buffer, start: number, end: number, now: number, record: (latencyMicros: number) => void): number {
  let count = 0;
  let at = buf.indexOf(STAMP_KEY, start);
  while (at >= 0 && at < end) {
    let i = at + STAMP_KEY.length;
    let stamp = 0;
    for (let c = buf[i]!; c >= DIGIT_0 && c <= DIGIT_9 && i < end; c = buf[++i]!) stamp = stamp * 10 + (c - DIGIT_0);
    record(now > stamp ? now - stamp : 0);
    count++;
    at = buf.indexOf(STAMP_KEY, i);
  }
  return count;
}
