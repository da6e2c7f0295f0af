/**
 * What every server under test (Herald and the peers) does for the
 * coordinator: say which port it listens on, collect garbage on request
 * (it runs with --expose-gc, so "RSS after GC" means the same for all), and
 * exit cleanly when asked, so --cpu-prof can write its profile.
 */
export function announceReady(port: number): void {
  process.on('message', (message: { cmd?: string; seq?: number }) => {
    if (message.cmd === 'gc') {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      gc?.();
      process.send!({ seq: message.seq, result: { collected: gc !== undefined, heapUsed: process.memoryUsage().heapUsed } });
    } else if (message.cmd === 'exit') {
      process.exit(0);
    }
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ type: 'ready', port });
}

/** `--name value` pairs given to a peer by the coordinator. */
export function peerArgs(argv: readonly string[]): Map<string, string> {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length - 1; i += 2) args.set(argv[i]!.replace(/^--/, ''), argv[i + 1]!);
  return args;
}
