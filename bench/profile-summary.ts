/**
 * Summarizes a V8 .cpuprofile (from `herald bench --profile DIR`): self time
 * per function and total time under each function, busiest first, so a
 * profile can be read without a browser. Idle time is left out of the
 * percentages.
 *
 *   node dist/bench/profile-summary.js DIR/room-1k-herald-room-r1.cpuprofile [--top 30] [--from S] [--to S]
 *
 * --from/--to keep only the samples taken between those seconds after the
 * profile started (e.g. just the measured window, without start-up).
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { pathToFileURL } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionTime {
  readonly name: string;
  readonly selfMs: number;
  readonly totalMs: number;
}

function label(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url ? `${basename(url)}:${lineNumber + 1}` : '';
  return `${functionName || '(anonymous)'}${file ? ` ${file}` : ''}`;
}

export interface Window {
  readonly fromMs: number;
  readonly toMs: number;
}

export function summarizeProfile(profile: CpuProfile, window: Window = { fromMs: 0, toMs: Infinity }): { busyMs: number; idleMs: number; functions: FunctionTime[] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  let at = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at >= window.fromMs * 1000 && at <= window.toMs * 1000) selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let idleUs = 0;
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    const name = label(node);
    if (node.callFrame.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    busyUs += us;
    self.set(name, (self.get(name) ?? 0) + us);
    // Charge every distinct function on the stack once.
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = label(byId.get(at)!);
      if (seen.has(frame)) continue;
      seen.add(frame);
      total.set(frame, (total.get(frame) ?? 0) + us);
    }
  }
  const functions = [...total.keys()].map((name) => ({ name, selfMs: (self.get(name) ?? 0) / 1000, totalMs: total.get(name)! / 1000 }));
  return { busyMs: busyUs / 1000, idleMs: idleUs / 1000, functions };
}

export function renderProfile(path: string, top: number, window?: Window): string {
  const { busyMs, idleMs, functions } = summarizeProfile(JSON.parse(readFileSync(path, 'utf8')) as CpuProfile, window);
  const pct = (ms: number) => `${((ms / busyMs) * 100).toFixed(1).padStart(5)}%`;
  const lines = [`${basename(path)}: busy ${busyMs.toFixed(0)} ms, idle ${idleMs.toFixed(0)} ms`, '', 'self time:'];
  for (const fn of [...functions].sort((a, b) => b.selfMs - a.selfMs).slice(0, top)) lines.push(`  ${pct(fn.selfMs)}  ${fn.name}`);
  lines.push('', 'total time (self + callees):');
  for (const fn of [...functions].sort((a, b) => b.totalMs - a.totalMs).slice(0, top)) lines.push(`  ${pct(fn.totalMs)}  ${fn.name}`);
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const option = (name: string, fallback: number) => {
    const at = args.indexOf(name);
    return at >= 0 ? Number(args.splice(at, 2)[1]) : fallback;
  };
  const top = option('--top', 30);
  const window = { fromMs: option('--from', 0) * 1000, toMs: option('--to', Infinity) * 1000 };
  for (const path of args) process.stdout.write(`${renderProfile(path, top, window)}\n\n`);
}
