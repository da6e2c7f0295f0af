import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReconnectPolicy } from '../../client/reconnect.js';
import { refreshDelay, tokenExpiry } from '../../client/token-expiry.js';

describe('client reconnect policy (full jitter)', () => {
  it('doubles the window per attempt up to the cap, and draws uniformly inside it', () => {
    const windows: number[] = [];
    const policy = new ReconnectPolicy({ base: 100, cap: 1000, random: () => 0.999999 });
    for (let i = 0; i < 6; i++) windows.push(policy.nextDelay());
    assert.deepEqual(windows, [99, 199, 399, 799, 999, 999]);
    assert.equal(new ReconnectPolicy({ base: 100, random: () => 0 }).nextDelay(), 0);
  });

  it('starts from the smallest window again only after a stable connection', () => {
    let now = 1_000_000;
    const realNow = Date.now;
    Date.now = () => now;
    try {
      const policy = new ReconnectPolicy({ base: 100, cap: 10_000, stableAfter: 5000, random: () => 0.5 });
      policy.nextDelay();
      policy.nextDelay();
      policy.connected();
      now += 1000; // a short-lived connection keeps backing off
      assert.equal(policy.nextDelay(), 200);
      policy.connected();
      now += 5000; // a stable one resets
      assert.equal(policy.nextDelay(), 50);
    } finally {
      Date.now = realNow;
    }
  });
});

describe('client token refresh timing', () => {
  const jwt = (payload: object) => `e30.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`;

  it('reads exp from the payload and ignores tokens without one', () => {
    assert.equal(tokenExpiry(jwt({ exp: 1234, sub: 'ü' })), 1234);
    assert.equal(tokenExpiry(jwt({ sub: 'a' })), undefined);
    assert.equal(tokenExpiry('opaque-token'), undefined);
    assert.equal(tokenExpiry('a.%%%.b'), undefined);
  });

  it('refreshes a tenth of the lifetime before exp, between one second and one minute', () => {
    const now = 1_000_000_000;
    assert.equal(refreshDelay(now / 1000 + 3600, now), 3_540_000);
    assert.equal(refreshDelay(now / 1000 + 100, now), 90_000);
    assert.equal(refreshDelay(now / 1000 + 3, now), 2000);
    assert.equal(refreshDelay(now / 1000 - 5, now), 0);
  });
});
