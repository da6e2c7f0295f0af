import { mergeHistograms, summarize, type LatencySummary } from './histogram.js';
import type { ConnectionSpec } from './load/client.js';
import type { GeneratorReport, GeneratorStatus, OpenResult, PublishResult } from './load/generator.js';
import { coreTimes, GENERATOR_CPU, SERVER_CPU, sleep, type Child } from './process.js';
import type { Scenario } from './scenarios.js';
import { ServerSet, startGenerator, type ServerStartOptions } from './servers.js';
import type { Target } from './targets.js';

export interface FanOutSettings {
  readonly rooms: number;
  readonly perRoom: number;
  /** Publications per second, over all rooms. */
  readonly rate: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly payloadBytes: number;
  /** Subscriber generator processes (all on the generator core). */
  readonly generators: number;
}

export interface FanOutResult {
  readonly kind: 'fanout';
  readonly scenario: string;
  readonly target: string;
  readonly subscribers: number;
  readonly rooms: number;
  readonly rate: number;
  readonly published: number;
  readonly expected: number;
  readonly received: number;
  readonly loss: number;
  readonly deliveriesPerSec: number;
  readonly serverCpuMs: number;
  readonly serverCpuPct: number;
  readonly cpuMicrosPerDelivery: number;
  /** The CPU figure split into user space and kernel (syscalls), from utime/stime. */
  readonly userMicrosPerDelivery: number;
  readonly systemMicrosPerDelivery: number;
  /** Softirq time on the server core per delivery: kernel work not charged to any process. */
  readonly softirqMicrosPerDelivery: number;
  /** Server-core time used by neither the server nor softirq: other processes on this shared machine (noise). */
  readonly foreignCpuPct: number;
  readonly latency: LatencySummary;
  readonly kbPerConnection: number;
  readonly generatorCpuPct: number;
  readonly maxPublishLagMs: number;
  /** Why a figure may not be trusted (generator saturated, publisher late, connections lost). */
  readonly warnings: string[];
}

/** Local addresses the generator spreads its connections over (ports per source address are finite). */
export function localAddressFor(index: number): string {
  return `127.0.0.${10 + (index % 200)}`;
}

export const roomName = (scenario: string, index: number) => `${scenario}-${index}`;

/**
 * One fan-out measurement: start the server, connect every subscriber and
 * the publishers, wait until a probe reaches everyone, warm up, then publish
 * open-loop for the measured window and wait for the tail to drain. CPU is
 * the server's from the first measured publication to the last delivery.
 */
export async function runFanOut(scenario: Scenario, target: Target, settings: FanOutSettings, options: ServerStartOptions): Promise<FanOutResult> {
  const warnings: string[] = [];
  const servers = await ServerSet.start(target, options);
  const subscriberGenerators = Array.from({ length: Math.max(1, settings.generators) }, (_, i) => startGenerator(`subscribers-${i}`, options.quiet));
  const publisher = startGenerator('publisher', options.quiet);
  const generators = [...subscriberGenerators, publisher];
  try {
    const rooms = Array.from({ length: settings.rooms }, (_, i) => roomName(scenario.id, i));
    const subscribers = settings.rooms * settings.perRoom;
    const rssBase = await servers.rssAfterGcKb();

    // Subscribers: room r gets perRoom members, spread over nodes and generator processes.
    const specsPerGenerator: ConnectionSpec[][] = subscriberGenerators.map(() => []);
    for (let i = 0; i < subscribers; i++) {
      const room = rooms[i % settings.rooms]!;
      const port = servers.ports[i % servers.ports.length]!;
      const spec: ConnectionSpec = { dialect: target.dialect, port, path: target.path(room), localAddress: localAddressFor(i) };
      specsPerGenerator[i % subscriberGenerators.length]!.push(target.dialect === 'proto' ? { ...spec, channel: room } : spec);
    }
    const opened = await Promise.all(
      subscriberGenerators.map((g, i) => g.request<OpenResult>({ cmd: 'open', specs: specsPerGenerator[i], concurrency: 200, publishers: false })),
    );
    const failed = opened.reduce((sum, o) => sum + o.failed, 0);
    if (failed > 0) throw new Error(`${target.name}: ${failed} of ${subscribers} subscribers failed to connect`);

    // Publishers always talk to the first node.
    if (target.httpPublisher) {
      await publisher.request({ cmd: 'http-publisher', port: servers.ports[0], localAddress: '127.0.0.2' });
    } else {
      const publisherRooms = target.singlePublisher ? [rooms[0]!] : rooms;
      const specs = publisherRooms.map((room, i) => ({ dialect: target.dialect, port: servers.ports[0]!, path: target.path(room), localAddress: `127.0.0.${2 + (i % 8)}` }));
      const result = await publisher.request<OpenResult>({ cmd: 'open', specs, concurrency: 200, publishers: true });
      if (result.failed > 0) throw new Error(`${target.name}: ${result.failed} publishers failed to connect`);
    }
    await waitForProbes(publisher, subscriberGenerators, rooms, subscribers, target.name);
    const rssLoaded = await servers.rssAfterGcKb();

    if (settings.warmupMs > 0) {
      const warm = await publisher.request<PublishResult>({
        cmd: 'publish',
        rooms,
        rate: settings.rate,
        durationMs: settings.warmupMs,
        measured: false,
        payloadBytes: settings.payloadBytes,
      });
      // A saturated server may still be working off the warm-up: let it finish, or it would count as measured time.
      await waitForDrain(subscriberGenerators, warm.sent * settings.perRoom, (s) => s.warmups);
      await sleep(200);
    }
    await Promise.all(subscriberGenerators.map((g) => g.request({ cmd: 'reset' })));

    const cpuStart = servers.cpuMicros();
    const coreStart = coreTimes(SERVER_CPU);
    const generatorCoreStart = coreTimes(GENERATOR_CPU);
    const selfStart = process.cpuUsage();
    const splitStart = servers.userSystemMicros();
    const generatorCpuStart = generators.reduce((sum, g) => sum + g.cpuMicros(), 0);
    const started = performance.now();
    const published = await publisher.request<PublishResult>({
      cmd: 'publish',
      rooms,
      rate: settings.rate,
      durationMs: settings.durationMs,
      measured: true,
      payloadBytes: settings.payloadBytes,
    });
    const expected = published.sent * settings.perRoom;
    await waitForDrain(subscriberGenerators, expected, (s) => s.received);
    const cpuMicros = servers.cpuMicros() - cpuStart;
    const coreEnd = coreTimes(SERVER_CPU);
    const splitEnd = servers.userSystemMicros();
    const softirqMicros = coreEnd.softirq - coreStart.softirq;
    const foreignMicros = coreEnd.busy - coreStart.busy - softirqMicros - cpuMicros;
    const wallMs = performance.now() - started;
    const generatorMicros = generators.reduce((sum, g) => sum + g.cpuMicros(), 0) - generatorCpuStart;
    const generatorCpuPct = (generatorMicros / 1000 / wallMs) * 100;
    const generatorCoreEnd = coreTimes(GENERATOR_CPU);
    const self = process.cpuUsage(selfStart);
    const generatorCoreForeign =
      generatorCoreEnd.busy - generatorCoreStart.busy - (generatorCoreEnd.softirq - generatorCoreStart.softirq) - generatorMicros - self.user - self.system;

    const reports = await Promise.all(subscriberGenerators.map((g) => g.request<GeneratorReport>({ cmd: 'report' })));
    const received = reports.reduce((sum, r) => sum + r.received, 0);
    const closed = reports.reduce((sum, r) => sum + r.closed, 0);
    const histogram = mergeHistograms(reports.map((r) => r.histogram));
    const latency = summarize(histogram);
    histogram.destroy();

    if (generatorCpuPct > 80) warnings.push(`generator CPU ${generatorCpuPct.toFixed(0)}% (> 80%: latency includes generator queueing)`);
    if (published.maxLagMs > 50) warnings.push(`publisher fell ${published.maxLagMs.toFixed(0)} ms behind its schedule`);
    const foreignCpuPct = Math.max(0, (foreignMicros / 1000 / wallMs) * 100);
    if (foreignCpuPct > 10) warnings.push(`other processes used ${foreignCpuPct.toFixed(0)}% of the server core`);
    const generatorCoreForeignPct = (generatorCoreForeign / 1000 / wallMs) * 100;
    if (generatorCoreForeignPct > 20) warnings.push(`other processes used ${generatorCoreForeignPct.toFixed(0)}% of the generator core`);
    if (closed > 0) warnings.push(`${closed} subscribers were disconnected`);
    return {
      kind: 'fanout',
      scenario: scenario.id,
      target: target.name,
      subscribers,
      rooms: settings.rooms,
      rate: settings.rate,
      published: published.sent,
      expected,
      received,
      loss: expected - received,
      deliveriesPerSec: received / (published.ms / 1000),
      serverCpuMs: cpuMicros / 1000,
      serverCpuPct: (cpuMicros / 1000 / wallMs) * 100,
      cpuMicrosPerDelivery: received > 0 ? cpuMicros / received : NaN,
      userMicrosPerDelivery: received > 0 ? (splitEnd.user - splitStart.user) / received : NaN,
      systemMicrosPerDelivery: received > 0 ? (splitEnd.system - splitStart.system) / received : NaN,
      softirqMicrosPerDelivery: received > 0 ? softirqMicros / received : NaN,
      foreignCpuPct,
      latency,
      kbPerConnection: (rssLoaded - rssBase) / (subscribers + (target.httpPublisher ? 0 : target.singlePublisher ? 1 : settings.rooms)),
      generatorCpuPct,
      maxPublishLagMs: published.maxLagMs,
      warnings,
    };
  } finally {
    await Promise.all(generators.map((g) => g.request({ cmd: 'close' }, 5000).catch(() => {})));
    await servers.stop();
  }
}

/** Probes every room until every subscriber has seen one: only then is each subscription surely live. */
async function waitForProbes(publisher: Child, subscribers: Child[], rooms: string[], expected: number, name: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    await publisher.request({ cmd: 'probe', rooms });
    await sleep(150);
    const statuses = await Promise.all(subscribers.map((g) => g.request<GeneratorStatus>({ cmd: 'status' })));
    const probed = statuses.reduce((sum, s) => sum + s.probed, 0);
    if (probed >= expected) return;
    if (Date.now() > deadline) throw new Error(`${name}: only ${probed} of ${expected} subscribers became live`);
  }
}

/** Until every expected delivery arrived, or nothing arrived for three seconds (the rest is lost). */
async function waitForDrain(subscribers: Child[], expected: number, count: (status: GeneratorStatus) => number): Promise<void> {
  let last = -1;
  let lastChange = Date.now();
  for (;;) {
    const statuses = await Promise.all(subscribers.map((g) => g.request<GeneratorStatus>({ cmd: 'status' })));
    const received = statuses.reduce((sum, s) => sum + count(s), 0);
    if (received >= expected) return;
    if (received !== last) {
      last = received;
      lastChange = Date.now();
    } else if (Date.now() - lastChange > 3000) {
      return;
    }
    await sleep(20);
  }
}
