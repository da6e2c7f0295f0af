import { AckPolicy, nanos, type ConsumerConfig, type JetStreamClient, type JetStreamManager, type JsMsg } from 'nats';

/**
 * Reads what a short-lived consumer sees right now — every message matching
 * `config` that is stored at creation — without waiting for more.
 * `no_wait` matters: messages can expire (max_age) between the consumer's
 * pending count and the fetch, and a waiting fetch (or a KV watcher waiting
 * to be "initialized") would then stall until its timeout.
 * `take` returns false to stop early.
 */
export async function readStored(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  config: Partial<ConsumerConfig>,
  timeoutMs: number,
  take: (msg: JsMsg) => boolean,
): Promise<void> {
  const info = await jsm.consumers.add(stream, {
    ...config,
    ack_policy: AckPolicy.None,
    mem_storage: true,
    inactive_threshold: nanos(Math.max(5000, timeoutMs * 5)),
  });
  try {
    if (info.num_pending === 0) return;
    const messages = js.fetch(stream, info.name, { batch: info.num_pending, no_wait: true, expires: timeoutMs });
    let lastSeq = 0;
    for await (const msg of messages) {
      // Stream order is ascending; never hand the caller a message twice.
      if (msg.seq <= lastSeq) continue;
      lastSeq = msg.seq;
      if (!take(msg)) {
        messages.stop();
        break;
      }
    }
  } finally {
    jsm.consumers.delete(stream, info.name).catch(() => undefined);
  }
}
