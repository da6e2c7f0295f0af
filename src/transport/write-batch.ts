import type { Writable } from 'node:stream';

/**
 * Coalesces writes per socket within one turn of the event loop: the first
 * write corks the socket, one microtask later every corked socket is
 * uncorked, so a burst of publications reaches each socket as one writev.
 * One module-level list, no per-socket timers or closures.
 */
export interface Batchable {
  /** Set while the stream is corked by this batch. */
  corked: boolean;
  readonly stream: Writable;
}

let corked: Batchable[] = [];
let flushScheduled = false;

export function writeBatched(target: Batchable, bytes: Buffer): void {
  if (!target.corked) {
    target.corked = true;
    target.stream.cork();
    corked.push(target);
    if (!flushScheduled) {
      flushScheduled = true;
      queueMicrotask(flushBatches);
    }
  }
  target.stream.write(bytes);
}

function flushBatches(): void {
  const batch = corked;
  corked = [];
  flushScheduled = false;
  for (const target of batch) {
    target.corked = false;
    target.stream.uncork();
  }
}
