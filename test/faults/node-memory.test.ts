import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, it, type TestContext } from 'node:test';
import { mergeHistograms, summarize } from '../../bench/histogram.js';
import type { ConnectionSpec } from '../../bench/load/client.js';
import type { GeneratorReport, GeneratorStatus, OpenResult, PublishResult } from '../../bench/load/generator.js';
import { Child } from '../../bench/process.js';
import { forceGc, rawWebSocket, scrape, stopGenerator } from '../helpers/faults-node.js';
import { mb } from '../helpers/figures.js';
import { crashLines, openFds, spawnHerald, withNodeState, type HeraldChild } from '../helpers/herald-process.js';
import { until } from '../helpers/wait.js';

/**
 * TESTPLAN T22 — memory pressure, soak-lite, scaled to a shared 2-core box
 * and this suite's budget. The plan's 2,000 WebSockets all taking a 5 MB/s
 * broadcast would be 10 GB/s out of one node; here a node held to
 * --max-old-space-size=192 carries 1,430 WebSockets: 1,360 on 20 quiet rooms,
 * 20 healthy and 50 paused on one room taking 1.6 MB/s, for 15 s, and then
 * everyone leaves. The node is a child process; its memory is read from its
 * /metrics, and full GCs are forced through the V8 inspector (nothing is
 * added to the product for it). Shedding is the 4008 slow-consumer policy
 * (SPEC §3c; TESTPLAN's 3008).
 */

const QUIET_ROOMS = Array.from({ length: 20 }, (_, i) => `t22-room-${i}`);
const QUIET_CLIENTS = 1360;
const QUIET_RATE = 100;
const QUIET_PAYLOAD = 256;
const BROADCAST = 't22-broadcast';
const BROADCAST_HEALTHY = 20;
const PAUSED = 50;
const BROADCAST_RATE = 100;
const BROADCAST_PAYLOAD = 16 * 1024;
const LOAD_MS = 15_000;
const HEAP_LIMIT_MB = 192;

interface MemorySample {
  readonly at: number;
  readonly rss: number;
  readonly heap: number;
  readonly connections: number;
}

async function memory(node: HeraldChild): Promise<MemorySample> {
  const samples = await scrape(node.url);
  return {
    at: Date.now(),
    rss: samples.get('herald_process_resident_memory_bytes') ?? NaN,
    heap: samples.get('herald_nodejs_heap_size_used_bytes') ?? NaN,
    connections: samples.get('herald_connections{transport="websocket"}') ?? NaN,
  };
}

function generator(name: string): Child {
  return Child.start(name, { script: new URL('../../bench/load/generator.js', import.meta.url).pathname });
}

const localAddressFor = (i: number) => `127.0.0.${10 + (i % 50)}`;

describe('T22: memory pressure / soak-lite (TESTPLAN T22)', () => {
  let node: HeraldChild;
  let quiet: Child;
  let loud: Child;
  const paused: Socket[] = [];
  before(async () => {
    node = await spawnHerald(['--max-connections-per-ip', '0'], { nodeFlags: [`--max-old-space-size=${HEAP_LIMIT_MB}`], inspect: true });
    quiet = generator('t22-quiet');
    loud = generator('t22-broadcast');
  });
  after(async () => {
    for (const socket of paused) socket.destroy();
    await Promise.all([stopGenerator(quiet), stopGenerator(loud)]);
    node.child.kill('SIGKILL');
  });

  it('T22: no crash at a 192 MB heap; paused clients shed by 4008; healthy latency kept; RSS plateaus; after everyone leaves, heap back near its baseline', async (t) => {
    await run(t).catch((err: unknown) => {
      throw withNodeState(err, node);
    });
  });

  async function run(t: TestContext): Promise<void> {
    // Warm-up before the baseline: every channel's history filled, as it will be after the run.
    await Promise.all([
      quiet.request({ cmd: 'http-publisher', port: node.port, localAddress: '127.0.0.1' }),
      loud.request({ cmd: 'http-publisher', port: node.port, localAddress: '127.0.0.1' }),
    ]);
    await Promise.all([
      quiet.request({ cmd: 'publish', rooms: QUIET_ROOMS, rate: 2000, durationMs: 1000, measured: false, payloadBytes: QUIET_PAYLOAD }),
      loud.request({ cmd: 'publish', rooms: [BROADCAST], rate: 200, durationMs: 600, measured: false, payloadBytes: BROADCAST_PAYLOAD }),
    ]);
    await until(async () => ((await scrape(node.url)).get('herald_publications_total') ?? 0) >= 2000 + 120, 10_000, 'warm-up published');
    await forceGc(node.inspectorUrl!);
    const baseline = await memory(node);
    const fdsBaseline = openFds(node.pid);

    // 1,430 connections, batched.
    const quietSpecs: ConnectionSpec[] = Array.from({ length: QUIET_CLIENTS }, (_, i) => ({ dialect: 'room', port: node.port, path: `/ws?room=${QUIET_ROOMS[i % QUIET_ROOMS.length]}`, localAddress: localAddressFor(i) }));
    const loudSpecs: ConnectionSpec[] = Array.from({ length: BROADCAST_HEALTHY }, (_, i) => ({ dialect: 'room', port: node.port, path: `/ws?room=${BROADCAST}`, localAddress: localAddressFor(i) }));
    const [quietOpen, loudOpen] = await Promise.all([
      quiet.request<OpenResult>({ cmd: 'open', specs: quietSpecs, concurrency: 100, publishers: false }),
      loud.request<OpenResult>({ cmd: 'open', specs: loudSpecs, concurrency: BROADCAST_HEALTHY, publishers: false }),
    ]);
    assert.equal(quietOpen.opened + loudOpen.opened, QUIET_CLIENTS + BROADCAST_HEALTHY);
    for (let i = 0; i < PAUSED; i++) {
      const { socket } = await rawWebSocket(node.port, `/ws?room=${BROADCAST}`);
      socket.pause();
      paused.push(socket);
    }
    await until(async () => {
      await Promise.all([quiet.request({ cmd: 'probe', rooms: QUIET_ROOMS }), loud.request({ cmd: 'probe', rooms: [BROADCAST] })]);
      const [q, l] = await Promise.all([quiet.request<GeneratorStatus>({ cmd: 'status' }), loud.request<GeneratorStatus>({ cmd: 'status' })]);
      return q.probed >= QUIET_CLIENTS && l.probed >= BROADCAST_HEALTHY;
    }, 20_000, 'every client live');
    // Unmeasured: ~3 MB into the broadcast room first, most of what the paused clients' kernel buffers take
    // (~4 MB each on loopback), so the load below sheds them at a moderate rate.
    const prefill = await loud.request<PublishResult>({ cmd: 'publish', rooms: [BROADCAST], rate: 200, durationMs: 900, measured: false, payloadBytes: BROADCAST_PAYLOAD });
    await until(async () => (await loud.request<GeneratorStatus>({ cmd: 'status' })).warmups >= prefill.sent * BROADCAST_HEALTHY, 10_000, 'prefill delivered');
    await Promise.all([quiet.request({ cmd: 'reset' }), loud.request({ cmd: 'reset' })]);
    const loaded = await memory(node);
    assert.equal(loaded.connections, QUIET_CLIENTS + BROADCAST_HEALTHY + PAUSED);
    const before = await scrape(node.url);

    // The load, with the node's memory sampled every 250 ms.
    const samples: MemorySample[] = [];
    let sampling = true;
    let allShedAt = 0;
    const sampler = (async () => {
      while (sampling) {
        samples.push(await memory(node));
        if (!allShedAt && samples.at(-1)!.connections <= QUIET_CLIENTS + BROADCAST_HEALTHY) allShedAt = Date.now();
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();
    const loadStart = Date.now();
    const [quietRun, loudRun] = await Promise.all([
      quiet.request<PublishResult>({ cmd: 'publish', rooms: QUIET_ROOMS, rate: QUIET_RATE, durationMs: LOAD_MS, measured: true, payloadBytes: QUIET_PAYLOAD }),
      loud.request<PublishResult>({ cmd: 'publish', rooms: [BROADCAST], rate: BROADCAST_RATE, durationMs: LOAD_MS, measured: true, payloadBytes: BROADCAST_PAYLOAD }),
    ]);
    const expectedQuiet = quietRun.sent * (QUIET_CLIENTS / QUIET_ROOMS.length);
    const expectedLoud = loudRun.sent * BROADCAST_HEALTHY;
    await until(async () => {
      const [q, l] = await Promise.all([quiet.request<GeneratorStatus>({ cmd: 'status' }), loud.request<GeneratorStatus>({ cmd: 'status' })]);
      return q.received >= expectedQuiet && l.received >= expectedLoud;
    }, 20_000, 'deliveries drained').catch(() => {});
    sampling = false;
    await sampler;
    const after = await scrape(node.url);
    const [quietReport, loudReport] = await Promise.all([quiet.request<GeneratorReport>({ cmd: 'report' }), loud.request<GeneratorReport>({ cmd: 'report' })]);
    const latency = summarize(mergeHistograms([quietReport.histogram, loudReport.histogram]));

    // Everyone leaves.
    await Promise.all([stopGenerator(quiet), stopGenerator(loud)]);
    for (const socket of paused) socket.destroy();
    await until(async () => (await memory(node)).connections === 0, 15_000, 'every connection gone');
    await forceGc(node.inspectorUrl!);
    const left = await memory(node);
    await until(() => openFds(node.pid) <= fdsBaseline + 5, 5000, 'node fds back').catch(() => {});
    const fdsLeft = openFds(node.pid);

    // Figures.
    const third = Math.floor(samples.length / 3);
    const firstThirdMax = Math.max(...samples.slice(0, third).map((s) => s.rss));
    const lastThirdMax = Math.max(...samples.slice(-third).map((s) => s.rss));
    const rssMax = Math.max(...samples.map((s) => s.rss));
    const heapMax = Math.max(...samples.map((s) => s.heap));
    const shed = (after.get('herald_closes_total{code="4008"}') ?? 0) - (before.get('herald_closes_total{code="4008"}') ?? 0);
    const dropped = (after.get('herald_drops_total{reason="slow_consumer"}') ?? 0) - (before.get('herald_drops_total{reason="slow_consumer"}') ?? 0);
    const quietMbs = (quietRun.sent * QUIET_PAYLOAD * (QUIET_CLIENTS / QUIET_ROOMS.length)) / LOAD_MS / 1000;
    const loudMbs = (loudRun.sent * BROADCAST_PAYLOAD * (BROADCAST_HEALTHY + PAUSED)) / LOAD_MS / 1000;
    t.diagnostic(
      `${QUIET_CLIENTS + BROADCAST_HEALTHY + PAUSED} WebSockets; ${quietRun.sent} quiet publications (${quietMbs.toFixed(1)} MB/s out) + ${loudRun.sent} × ${BROADCAST_PAYLOAD / 1024} KiB broadcast (${((loudRun.sent * BROADCAST_PAYLOAD) / LOAD_MS / 1000).toFixed(1)} MB/s in, up to ${loudMbs.toFixed(0)} MB/s out) for ${LOAD_MS / 1000} s`,
    );
    t.diagnostic(
      `paused: ${shed} closed 4008 (${dropped} slow_consumer drops), all shed ${allShedAt ? allShedAt - loadStart : NaN} ms into the load; healthy received ${quietReport.received}/${expectedQuiet} + ${loudReport.received}/${expectedLoud}, latency p50 ${latency.p50Ms.toFixed(1)} ms, p99 ${latency.p99Ms.toFixed(1)} ms, max ${latency.maxMs.toFixed(1)} ms`,
    );
    t.diagnostic(
      `node RSS: baseline ${mb(baseline.rss)}, connected ${mb(loaded.rss)}, max ${mb(rssMax)}, first-third max ${mb(firstThirdMax)}, last-third max ${mb(lastThirdMax)} (×${(lastThirdMax / firstThirdMax).toFixed(2)}), after leave ${mb(left.rss)}; heap used: baseline ${mb(baseline.heap)}, connected ${mb(loaded.heap)}, max ${mb(heapMax)}, after leave + GC ${mb(left.heap)} (×${(left.heap / baseline.heap).toFixed(2)}); node fds ${fdsBaseline} → ${fdsLeft}`,
    );

    assert.equal(node.child.exitCode, null, 'the node is still running');
    assert.deepEqual(crashLines(node.output()), [], 'no OOM, no uncaught error');
    assert.equal(shed, PAUSED, 'every paused client shed by the 4008 policy');
    assert.equal(dropped, PAUSED);
    assert.ok(allShedAt > 0, 'all paused clients were gone before the load ended');
    assert.equal(quietReport.closed + loudReport.closed, 0, 'no healthy client was closed');
    assert.equal(quietReport.received, expectedQuiet, 'quiet rooms: 100% delivered');
    assert.equal(loudReport.received, expectedLoud, 'broadcast: 100% delivered to healthy clients');
    assert.ok(latency.p99Ms < 750, `healthy p99 < 3 × 250 ms (${latency.p99Ms} ms)`);
    assert.ok(rssMax < 400 * 1048576, `RSS < 400 MB (${mb(rssMax)})`);
    assert.ok(lastThirdMax <= 1.1 * firstThirdMax, `RSS plateau: last-third max ≤ 1.1 × first-third max (${mb(lastThirdMax)} vs ${mb(firstThirdMax)})`);
    assert.ok(left.heap <= 1.2 * baseline.heap, `heap after leave within 20% of baseline (${mb(left.heap)} vs ${mb(baseline.heap)})`);
    assert.ok(fdsLeft <= fdsBaseline + 5, `node fds back to baseline (${fdsBaseline} → ${fdsLeft})`);

    node.child.kill('SIGTERM');
    assert.deepEqual(await node.exited, { code: 0, signal: null }, 'exits 0');
  }
});
