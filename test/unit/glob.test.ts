import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compilePatterns, globMatches } from '../../src/auth/glob.js';

/** The obvious definition, fine for short inputs: `*` is `.*`, everything else literal. */
function reference(pattern: string, text: string): boolean {
  const source = pattern.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${source}$`, 's').test(text);
}

describe('channel patterns (SPEC §6 claims)', () => {
  it('matches like the regular-expression definition (property, seeded)', () => {
    const alphabet = fc.constantFrom('a', 'b', ':', '.', '*');
    fc.assert(
      fc.property(fc.string({ unit: alphabet, maxLength: 8 }), fc.string({ unit: fc.constantFrom('a', 'b', ':', '.'), maxLength: 10 }), (pattern, text) => {
        assert.equal(globMatches(pattern, text), reference(pattern, text), `${pattern} vs ${text}`);
      }),
      { seed: 5, numRuns: 3000 },
    );
  });

  it('treats every character but * literally', () => {
    const matches = compilePatterns(['chat:*', 'a.b', 'x+y', 'news']);
    for (const channel of ['chat:', 'chat:x', 'a.b', 'x+y', 'news']) assert.equal(matches(channel), true, channel);
    for (const channel of ['chat', 'xchat:1', 'aXb', 'xxy', 'news2', 'a.bc']) assert.equal(matches(channel), false, channel);
    assert.equal(compilePatterns([])('any'), false);
    assert.equal(compilePatterns(['nope', '*'])('any'), true);
  });

  it('stays fast on patterns that make a backtracking regex explode', () => {
    const started = Date.now();
    const patterns = Array.from({ length: 256 }, (_, i) => `${'*a'.repeat(60)}*b${i}`);
    const matches = compilePatterns(patterns);
    assert.equal(matches('a'.repeat(255)), false);
    assert.equal(globMatches('*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(255)), false);
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  });
});
