import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runBench } from '../../bench/run.js';

/**
 * The load generator itself, end to end, on a tiny load: Herald in its own
 * process, 20 subscribers, 50 stamped publications. It asserts that the
 * result is well formed and nothing was lost — never how fast anything was.
 */
describe('herald bench (smoke)', () => {
  it('runs a tiny room fan-out and accounts for every delivery', async () => {
    const report = await runBench(
      ['room-1k', '--servers', 'herald-room', '--subscribers', '20', '--rate', '50', '--duration', '1', '--warmup', '0.2', '--retries', '0', '--no-pin', '--quiet'],
      false,
    );
    assert.ok(report);
    assert.deepEqual(report.failures, []);
    assert.equal(report.fanout.length, 1);
    const result = report.fanout[0]!.median;
    assert.equal(result.scenario, 'room-1k');
    assert.equal(result.target, 'herald-room');
    assert.equal(result.subscribers, 20);
    assert.equal(result.published, 50);
    assert.equal(result.expected, 50 * 20);
    assert.equal(result.received, result.expected);
    assert.equal(result.loss, 0);
    assert.equal(result.latency.count, result.received);
    for (const figure of [result.deliveriesPerSec, result.cpuMicrosPerDelivery, result.latency.p50Ms, result.latency.p99Ms, result.latency.maxMs]) {
      assert.ok(Number.isFinite(figure) && figure >= 0, `figure ${figure} is a number`);
    }
    assert.ok(result.latency.p50Ms <= result.latency.p99Ms && result.latency.p99Ms <= result.latency.maxMs);
  });

  it('refuses an unknown scenario', async () => {
    await assert.rejects(runBench(['no-such-scenario'], false), /unknown scenario/);
  });
});
