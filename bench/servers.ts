import { Child, GENERATOR_CPU, SERVER_CPU, sleep } from './process.js';
import type { Target } from './targets.js';

export interface ServerStartOptions {
  /** Write a V8 CPU profile of each Herald node here (--cpu-prof). */
  readonly profileDir?: string;
  /** Profile the peers too. */
  readonly profilePeers?: boolean;
  /** Name of the profile file, without extension. */
  readonly label: string;
  readonly redisUrl?: string;
  readonly quiet: boolean;
}

/** The node(s) of one target, each its own process on the server core. */
export class ServerSet {
  private constructor(
    readonly target: Target,
    readonly children: Child[],
    readonly ports: number[],
  ) {}

  static async start(target: Target, options: ServerStartOptions): Promise<ServerSet> {
    const children: Child[] = [];
    const ports: number[] = [];
    try {
      for (let node = 0; node < target.nodes; node++) {
        // Extra V8/Node flags for the servers under test, for investigations (e.g. --trace-gc): HERALD_BENCH_NODE_FLAGS.
        const nodeFlags = ['--expose-gc', ...(process.env.HERALD_BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? [])];
        if (options.profileDir && (target.isHerald || options.profilePeers)) {
          const suffix = target.nodes > 1 ? `-node${node}` : '';
          nodeFlags.push('--cpu-prof', `--cpu-prof-dir=${options.profileDir}`, `--cpu-prof-name=${options.label}${suffix}.cpuprofile`);
        }
        const args = [...target.args];
        if (target.needsRedis) {
          if (!options.redisUrl) throw new Error(`${target.name} needs a Redis URL`);
          args.push('--broker', options.redisUrl);
        }
        const child = Child.start(`${target.name}#${node}`, { script: target.script, args, cpu: SERVER_CPU, nodeFlags, quiet: options.quiet });
        children.push(child);
        const ready = await child.ready();
        ports.push(Number(ready.port));
      }
    } catch (err) {
      await Promise.all(children.map((c) => c.stop()));
      throw err;
    }
    await sleep(200);
    return new ServerSet(target, children, ports);
  }

  cpuMicros(): number {
    return this.children.reduce((sum, c) => sum + c.cpuMicros(), 0);
  }

  /** User-space and kernel CPU of all nodes (tick resolution). */
  userSystemMicros(): { user: number; system: number } {
    return this.children.reduce(
      (sum, c) => {
        const t = c.userSystemMicros();
        return { user: sum.user + t.user, system: sum.system + t.system };
      },
      { user: 0, system: 0 },
    );
  }

  /** Sum of the nodes' RSS after two full GCs each. */
  async rssAfterGcKb(): Promise<number> {
    await Promise.all(this.children.map((c) => c.request({ cmd: 'gc' })));
    await sleep(100);
    return this.children.reduce((sum, c) => sum + c.rssKb(), 0);
  }

  async stop(): Promise<void> {
    await Promise.all(this.children.map((c) => c.stop()));
  }
}

/** Starts a load-generator process on the generator core. */
export function startGenerator(name: string, quiet: boolean): Child {
  const script = new URL('./load/generator.js', import.meta.url).pathname;
  const nodeFlags = ['--max-old-space-size=4096'];
  // Profiling the generator itself (is it the bottleneck?): HERALD_BENCH_PROFILE_GENERATORS=DIR.
  const profileDir = process.env.HERALD_BENCH_PROFILE_GENERATORS;
  if (profileDir) nodeFlags.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}-${process.pid}-${Date.now()}.cpuprofile`);
  return Child.start(name, { script, cpu: GENERATOR_CPU, quiet, nodeFlags });
}
