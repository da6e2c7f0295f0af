import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** Server under test on one core, everything else (generators, Redis, this process) on the other. */
export const SERVER_CPU = 0;
export const GENERATOR_CPU = 1;

let tasksetChecked: boolean | undefined;

/** Turns pinning off (--no-pin, and the smoke test, which must not move the test runner). */
export function disablePinning(): void {
  tasksetChecked = false;
}

/** taskset exists and there are at least two cores to keep apart. */
export function canPin(): boolean {
  if (tasksetChecked === undefined) {
    tasksetChecked = availableParallelism() >= 2 && spawnSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' }).status === 0;
  }
  return tasksetChecked;
}

/** Moves this (the coordinating) process to the generator core, away from the server's. */
export function pinSelf(): void {
  if (canPin()) spawnSync('taskset', ['-a', '-p', '-c', String(GENERATOR_CPU), String(process.pid)], { stdio: 'ignore' });
}

export interface ChildOptions {
  readonly script: string;
  readonly args?: readonly string[];
  readonly cpu?: number;
  readonly nodeFlags?: readonly string[];
  /** Drop the child's output (it is inherited by default, so a crashing peer says why). */
  readonly quiet?: boolean;
}

/**
 * A Node child process with an IPC channel, optionally pinned to a core
 * (taskset execs node, so the pid is node's). Requests carry a `seq`;
 * the child answers with the same `seq`.
 */
export class Child {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly exited: Promise<number | null>;
  private readyMessage: Promise<Record<string, unknown>>;

  private constructor(readonly proc: ChildProcess, readonly name: string) {
    this.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
    this.readyMessage = new Promise((resolve, reject) => {
      proc.on('message', (message: { seq?: number; type?: string; result?: unknown; error?: string }) => {
        if (message.type === 'ready') return resolve(message as Record<string, unknown>);
        const pending = message.seq === undefined ? undefined : this.waiting.get(message.seq);
        if (!pending) return;
        this.waiting.delete(message.seq!);
        if (message.error) pending.reject(new Error(`${name}: ${message.error}`));
        else pending.resolve(message.result);
      });
      void this.exited.then((code) => {
        const error = new Error(`${name} exited (code ${code})`);
        reject(error);
        for (const pending of this.waiting.values()) pending.reject(error);
        this.waiting.clear();
      });
    });
    this.readyMessage.catch(() => {});
  }

  static start(name: string, options: ChildOptions): Child {
    const pin = options.cpu !== undefined && canPin();
    const proc = fork(options.script, [...(options.args ?? [])], {
      execPath: pin ? 'taskset' : process.execPath,
      execArgv: pin ? ['-c', String(options.cpu), process.execPath, ...(options.nodeFlags ?? [])] : [...(options.nodeFlags ?? [])],
      stdio: ['ignore', options.quiet ? 'ignore' : 'inherit', options.quiet ? 'ignore' : 'inherit', 'ipc'],
      serialization: 'json',
    });
    return new Child(proc, name);
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** The child's {type:'ready', …} message (servers send their port in it). */
  ready(timeoutMs = 20_000): Promise<Record<string, unknown>> {
    return withTimeout(this.readyMessage, timeoutMs, `${this.name} did not start`);
  }

  request<T>(command: Record<string, unknown>, timeoutMs = 120_000): Promise<T> {
    const seq = ++this.seq;
    const answer = new Promise<T>((resolve, reject) => {
      this.waiting.set(seq, { resolve: resolve as (v: unknown) => void, reject });
    });
    this.proc.send({ ...command, seq });
    return withTimeout(answer, timeoutMs, `${this.name}: no answer to ${String(command.cmd)}`);
  }

  /** CPU time (user + system, all threads) in microseconds so far. */
  cpuMicros(): number {
    return processCpuMicros(this.pid);
  }

  rssKb(): number {
    return processRssKb(this.pid);
  }

  userSystemMicros(): { user: number; system: number } {
    return processUserSystemMicros(this.pid);
  }

  /** Asks politely (lets --cpu-prof write its profile), then kills. */
  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    try {
      this.proc.send({ cmd: 'exit', seq: 0 });
    } catch {
      // channel already closed
    }
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

const CLOCK_TICKS_PER_SECOND = 100;

/**
 * Sum of every thread's run time from /proc/<pid>/task/<tid>/schedstat
 * (nanoseconds, so short windows stay precise), or utime+stime from
 * /proc/<pid>/stat (clock ticks) where schedstat is missing.
 */
export function processCpuMicros(pid: number): number {
  try {
    let nanos = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      nanos += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    }
    if (Number.isFinite(nanos) && nanos > 0) return nanos / 1000;
  } catch {
    // fall through to /proc/<pid>/stat
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1_000_000) / CLOCK_TICKS_PER_SECOND;
}

/** utime and stime from /proc/<pid>/stat, in microseconds (10 ms resolution): user space vs kernel. */
export function processUserSystemMicros(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const toMicros = (ticks: string | undefined) => (Number(ticks) * 1_000_000) / CLOCK_TICKS_PER_SECOND;
  return { user: toMicros(fields[11]), system: toMicros(fields[12]) };
}

export function processRssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) : NaN;
}

export interface CoreTimes {
  /** Microseconds the core was busy (anything but idle and iowait). */
  readonly busy: number;
  /** Of which in softirq: on loopback, the receive side of every segment the core sends. */
  readonly softirq: number;
}

/** Cumulative times of one core from /proc/stat (clock ticks, so 10 ms resolution). */
export function coreTimes(core: number): CoreTimes {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${core} `));
  if (!line) return { busy: NaN, softirq: NaN };
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number) as number[];
  const toMicros = (ticks: number) => (ticks * 1_000_000) / CLOCK_TICKS_PER_SECOND;
  void idle;
  void iowait;
  return { busy: toMicros(user! + nice! + system! + irq! + softirq! + steal!), softirq: toMicros(softirq!) };
}

/** Kernel slab memory (socket buffers and structures live here, outside any RSS). */
export function slabKb(): number {
  const match = /Slab:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return match ? Number(match[1]) : NaN;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
