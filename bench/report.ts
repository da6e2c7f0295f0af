import type { ConnectResult } from './connect.js';
import type { FanOutResult } from './fanout.js';

export type RunResult = FanOutResult | ConnectResult;

/** Several rounds of one (scenario, target): the median of each figure, and how far the CPU figure spread. */
export interface Aggregate<R extends RunResult> {
  readonly median: R;
  readonly rounds: number;
  /** (max − min) / median of the headline figure (CPU µs per delivery, or KB per connection). */
  readonly spread: number;
}

export interface PendingScenario {
  readonly scenario: string;
  readonly reason: string;
}

export interface BenchReport {
  readonly machine: { cpus: string; cores: number; node: string; kernel: string; pinned: boolean };
  readonly startedAt: string;
  readonly fanout: Aggregate<FanOutResult>[];
  readonly connect: Aggregate<ConnectResult>[];
  readonly goals: GoalCheck[];
  readonly pending: PendingScenario[];
  readonly failures: { scenario: string; target: string; error: string }[];
}

export interface GoalCheck {
  readonly goal: string;
  readonly measured: string;
  readonly pass: boolean;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Median of every numeric field, including nested latency figures. */
export function aggregate<R extends RunResult>(runs: R[]): Aggregate<R> {
  const first = runs[0]!;
  const out: Record<string, unknown> = { ...first };
  for (const [key, value] of Object.entries(first)) {
    if (typeof value === 'number') out[key] = median(runs.map((r) => (r as unknown as Record<string, number>)[key]!));
    else if (value && typeof value === 'object' && !Array.isArray(value)) {
      const nested: Record<string, number> = {};
      for (const inner of Object.keys(value)) nested[inner] = median(runs.map((r) => ((r as unknown as Record<string, Record<string, number>>)[key]!)[inner]!));
      out[key] = nested;
    }
  }
  out.warnings = [...new Set(runs.flatMap((r) => r.warnings))];
  const headline = runs.map((r) => (r.kind === 'fanout' ? r.cpuMicrosPerDelivery : r.kbPerConnection));
  const mid = median(headline);
  return { median: out as R, rounds: runs.length, spread: mid > 0 ? (Math.max(...headline) - Math.min(...headline)) / mid : 0 };
}

const f = (value: number, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : '–');
const k = (value: number) => (value >= 10_000 ? `${(value / 1000).toFixed(0)}k` : value.toFixed(0));

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [line(header), `|${widths.map((w, i) => (i < 2 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.map(line)].join('\n');
}

export function fanOutTable(aggregates: Aggregate<FanOutResult>[]): string {
  const rows = aggregates.map(({ median: r, spread, rounds }) => [
    r.scenario,
    r.target,
    String(r.subscribers),
    String(r.rate),
    k(r.deliveriesPerSec),
    f(r.cpuMicrosPerDelivery, 2) + (rounds > 1 ? ` ±${f((spread * 100) / 2, 0)}%` : ''),
    `${f(r.userMicrosPerDelivery, 2)}/${f(r.systemMicrosPerDelivery, 2)}`,
    f(r.serverCpuPct, 0),
    f(r.softirqMicrosPerDelivery, 2),
    f(r.latency.p50Ms, 2),
    f(r.latency.p99Ms, 2),
    f(r.latency.maxMs, 1),
    f(r.kbPerConnection, 1),
    String(r.loss),
    f(r.generatorCpuPct, 0),
    f(r.foreignCpuPct, 0) + (r.warnings.length > 0 ? ' !' : ''),
  ]);
  return table(['scenario', 'server', 'subs', 'pub/s', 'dlv/s', 'CPU µs/dlv', 'usr/sys', 'CPU %', 'si µs/dlv', 'p50 ms', 'p99 ms', 'max ms', 'KB/conn', 'loss', 'gen %', 'other %'], rows);
}

export function connectTable(aggregates: Aggregate<ConnectResult>[]): string {
  const rows = aggregates.map(({ median: r, spread, rounds }) => [
    r.scenario,
    r.target,
    String(r.opened),
    f(r.setupMs / 1000, 2),
    k(r.connectionsPerSec),
    f(r.setupCpuMicrosPerConnection, 0),
    f(r.kbPerConnection, 2) + (rounds > 1 ? ` ±${f((spread * 100) / 2, 0)}%` : ''),
    f(r.kernelKbPerConnection, 1),
    f(r.idleCpuMicrosPerConnectionSecond, 2),
    String(r.failed),
    f(r.foreignCpuPct, 0) + (r.warnings.length > 0 ? ' !' : ''),
  ]);
  return table(['scenario', 'server', 'conns', 'setup s', 'conn/s', 'CPU µs/conn', 'KB/conn', 'kernel KB/conn', 'idle µs/conn/s', 'failed', 'other %'], rows);
}

/** Herald's figure over the peer's, per scenario, for CPU per delivery and p99. */
export function ratioLines(aggregates: Aggregate<FanOutResult>[]): string[] {
  const lines: string[] = [];
  const byScenario = new Map<string, FanOutResult[]>();
  for (const { median } of aggregates) byScenario.set(median.scenario, [...(byScenario.get(median.scenario) ?? []), median]);
  for (const [scenario, results] of byScenario) {
    const peers = results.filter((r) => !r.target.startsWith('herald'));
    for (const herald of results.filter((r) => r.target.startsWith('herald'))) {
      const others = [...peers, ...results.filter((r) => r.target.startsWith('herald') && r !== herald && herald.target === 'herald-redis')];
      const parts = others.map(
        (p) => `${p.target} CPU ${f(herald.cpuMicrosPerDelivery / p.cpuMicrosPerDelivery, 2)}× p99 ${f(herald.latency.p99Ms / p.latency.p99Ms, 2)}×`,
      );
      if (parts.length > 0) lines.push(`${scenario} ${herald.target} vs: ${parts.join('; ')}`);
    }
  }
  return lines;
}

function find<R extends RunResult>(aggregates: Aggregate<R>[], scenario: string, target: string): R | undefined {
  return aggregates.find((a) => a.median.scenario === scenario && a.median.target === target)?.median;
}

/** The goals of issue 6, checked against this run's figures (only where both sides were measured). */
export function checkGoals(fanout: Aggregate<FanOutResult>[], connect: Aggregate<ConnectResult>[]): GoalCheck[] {
  const checks: GoalCheck[] = [];
  for (const scenario of ['room-1k', 'room-10k']) {
    const uws = find(fanout, scenario, 'uws');
    for (const name of ['herald-room', 'herald-v1']) {
      const herald = find(fanout, scenario, name);
      if (!herald) continue;
      if (uws) {
        const cpu = herald.cpuMicrosPerDelivery / uws.cpuMicrosPerDelivery;
        checks.push({ goal: `${scenario} ${name}: CPU/delivery ≤ 1.3× uws`, measured: `${f(cpu, 2)}×`, pass: cpu <= 1.3 });
        const p99 = herald.latency.p99Ms / uws.latency.p99Ms;
        checks.push({ goal: `${scenario} ${name}: p99 ≤ 2× uws`, measured: `${f(p99, 2)}×`, pass: p99 <= 2 });
      }
      for (const peer of ['ws-naive', 'socketio']) {
        const other = find(fanout, scenario, peer);
        if (!other) continue;
        const better = other.cpuMicrosPerDelivery / herald.cpuMicrosPerDelivery;
        checks.push({ goal: `${scenario} ${name}: CPU/delivery ≥ 2.5× better than ${peer}`, measured: `${f(better, 2)}×`, pass: better >= 2.5 });
      }
    }
  }
  const small = find(fanout, 'rooms-1000x10', 'herald-room');
  const smallV1 = find(fanout, 'rooms-1000x10', 'herald-v1');
  const smallUws = find(fanout, 'rooms-1000x10', 'uws');
  for (const herald of [small, smallV1]) {
    if (herald && smallUws) {
      const p99 = herald.latency.p99Ms / smallUws.latency.p99Ms;
      checks.push({ goal: `rooms-1000x10 ${herald.target}: p99 ≤ 2× uws`, measured: `${f(p99, 2)}×`, pass: p99 <= 2 });
    }
  }
  const sse = find(fanout, 'sse-1k', 'herald-sse');
  const naive = find(fanout, 'sse-1k', 'sse-naive');
  if (sse && naive) {
    const better = naive.cpuMicrosPerDelivery / sse.cpuMicrosPerDelivery;
    checks.push({ goal: 'sse-1k herald-sse: CPU/delivery ≥ 2× better than sse-naive', measured: `${f(better, 2)}×`, pass: better >= 2 });
  }
  const idle = connect.find((a) => a.median.target === 'herald-room')?.median;
  const bare = connect.find((a) => a.median.target === 'ws-naive')?.median;
  if (idle && bare) {
    const ratio = idle.kbPerConnection / bare.kbPerConnection;
    checks.push({ goal: 'idle herald-room: KB/connection ≤ 1.3× ws-naive', measured: `${f(idle.kbPerConnection, 2)} vs ${f(bare.kbPerConnection, 2)} KB = ${f(ratio, 2)}×`, pass: ratio <= 1.3 });
  }
  for (const result of connect.map((a) => a.median).filter((r) => r.target.startsWith('herald'))) {
    if (result.connections >= 10_000) {
      checks.push({ goal: `connect ${result.target}: 10,000 connections in < 3 s`, measured: `${f(result.setupMs / 1000, 2)} s`, pass: result.setupMs < 3000 && result.failed === 0 });
    }
  }
  const single = find(fanout, 'redis-2node', 'herald-room');
  const redis = find(fanout, 'redis-2node', 'herald-redis');
  if (single && redis) {
    const ratio = redis.cpuMicrosPerDelivery / single.cpuMicrosPerDelivery;
    checks.push({ goal: 'redis-2node: CPU/delivery ≤ 1.15× single node (PERFORMANCE.md 4.2 #2)', measured: `${f(ratio, 2)}×`, pass: ratio <= 1.15 });
  }
  return checks;
}

export function renderReport(report: BenchReport): string {
  const out: string[] = [];
  const m = report.machine;
  out.push(`Herald bench — ${report.startedAt} — ${m.cores} × ${m.cpus}, Node ${m.node}, Linux ${m.kernel}, ${m.pinned ? 'server on cpu0, generators on cpu1' : 'NOT pinned'}`);
  if (report.fanout.length > 0) {
    out.push('', 'Fan-out (CPU = server process user+system; latency = publish→receive; KB/conn = RSS after GC with everyone connected, minus before):', fanOutTable(report.fanout));
    const ratios = ratioLines(report.fanout);
    if (ratios.length > 0) out.push('', 'Ratios (Herald ÷ peer; below 1 is better for Herald):', ...ratios.map((l) => `  ${l}`));
  }
  if (report.connect.length > 0) out.push('', 'Connections:', connectTable(report.connect));
  if (report.goals.length > 0) {
    out.push('', 'Goals (issue 6):');
    for (const g of report.goals) out.push(`  ${g.pass ? 'PASS' : 'FAIL'}  ${g.goal}: ${g.measured}`);
  }
  const warnings = [...report.fanout, ...report.connect].flatMap((a) => a.median.warnings.map((w) => `${a.median.scenario} ${a.median.target}: ${w}`));
  if (warnings.length > 0) out.push('', 'Warnings:', ...warnings.map((w) => `  ! ${w}`));
  for (const p of report.pending) out.push(`  pending: ${p.scenario}: ${p.reason}`);
  for (const failure of report.failures) out.push(`  failed: ${failure.scenario} ${failure.target}: ${failure.error}`);
  return out.join('\n');
}
