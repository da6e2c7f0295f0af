import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `herald serve` as a child process, for tests where a node must really die
 * (SIGKILL), drain (SIGTERM), run with its own Node flags, or keep its
 * memory apart from the test's — shared by the fault suites.
 */

const buildRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The repository root (the build tree — dist/ or a private one — lives directly inside it). */
export const repoRoot = join(buildRoot, '..');

export interface HeraldChild {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly url: string;
  readonly wsUrl: string;
  /** Everything the node wrote to stdout and stderr so far. */
  output(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** ws:// URL of the V8 inspector, when started with `inspect: true`. */
  readonly inspectorUrl?: string;
  /** SIGTERM (a graceful drain) unless it already exited; resolves when it has. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const liveNodes = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveNodes) child.kill('SIGKILL');
});

/**
 * `herald serve` on 127.0.0.1 and a free port. Run from the shared dist/
 * (npm test) this is bin/herald itself; run from a private build directory
 * it is the same one-line entry over that build's CLI, so the child runs the
 * code under test; it must log at info or lower (the port is read from its
 * "herald listening" line). `nodeFlags` go to node itself (e.g.
 * --max-old-space-size); `inspect` opens the V8 inspector on a free loopback
 * port so a test can force a full GC from outside.
 */
export async function spawnHerald(args: readonly string[], options: { nodeFlags?: readonly string[]; inspect?: boolean } = {}): Promise<HeraldChild> {
  const cliArgs = ['serve', '--host', '127.0.0.1', '--port', '0', ...args];
  const entry =
    basename(buildRoot) === 'dist'
      ? [join(repoRoot, 'bin', 'herald')]
      : ['--input-type=module', '-e', `import { main } from ${JSON.stringify(join(buildRoot, 'src', 'cli', 'main.js'))}; main(process.argv.slice(1)).catch((err) => { console.error(err); process.exit(1); });`];
  const flags = [...(options.nodeFlags ?? []), ...(options.inspect ? ['--inspect=127.0.0.1:0'] : [])];
  const child = spawn(process.execPath, [...flags, ...entry, ...cliArgs], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  liveNodes.add(child);
  let output = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => {
      liveNodes.delete(child);
      resolve({ code, signal });
    }),
  );
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk));
  const found = await new Promise<{ port: number; inspectorUrl?: string }>((resolve, reject) => {
    const look = () => {
      const port = /"port":(\d+)[^\n]*herald listening/.exec(output);
      const inspector = /Debugger listening on (ws:\/\/\S+)/.exec(output);
      if (port && (!options.inspect || inspector)) resolve({ port: Number(port[1]), inspectorUrl: inspector?.[1] });
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    void exited.then(({ code, signal }) => reject(new Error(`herald exited (${code ?? signal}) before listening:\n${output}`)));
    setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`herald did not log "herald listening" (at --log-level info or lower) within 20 s:\n${output}`));
    }, 20_000).unref();
  });
  const url = `http://127.0.0.1:${found.port}`;
  return {
    child,
    pid: child.pid!,
    port: found.port,
    url,
    wsUrl: `ws://127.0.0.1:${found.port}/ws`,
    output: () => output,
    exited,
    inspectorUrl: found.inspectorUrl,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/**
 * Adds the node's state to a test failure: whether it is still running (or
 * how it exited) and the last lines it wrote — so a failure caused by the
 * node dying says so instead of showing only its consequence.
 */
export function withNodeState(err: unknown, node: HeraldChild, lines = 20): Error {
  const state =
    node.child.exitCode === null && node.child.signalCode === null ? 'still running' : `exited (code ${node.child.exitCode}, signal ${node.child.signalCode})`;
  const tail = node.output().trimEnd().split('\n').slice(-lines).join('\n');
  const error = err instanceof Error ? err : new Error(String(err));
  error.message += `\n  herald node ${node.pid}: ${state}; its last ${lines} lines:\n${tail}`;
  return error;
}

/** Lines a node logged that mean it crashed or leaked an error (TESTPLAN §7 shared criteria). */
export function crashLines(output: string): string[] {
  return output.split('\n').filter((line) => /uncaughtException|unhandledRejection|UnhandledPromiseRejection|FATAL ERROR|heap out of memory/.test(line));
}

/** Open file descriptors of a process (this one by default): the shared "fds back to baseline" criterion. */
export function openFds(pid: number | 'self' = 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}
