import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatPosition, parsePosition } from '../../src/core/position.js';
import { isRecovered } from '../../src/core/publication.js';

describe('positions', () => {
  it('round-trips offset and epoch through the wire string', () => {
    const position = { offset: 42, epoch: 'abc123' };
    assert.deepEqual(parsePosition(formatPosition(position)), position);
  });

  it('refuses anything that is not strictly offset:epoch', () => {
    for (const bad of ['', '1', ':x', '-1:x', '01:x', '1:', '1:x\n', '1:x y', '99999999999999999:x', 'a'.repeat(100), 7, null]) {
      assert.equal(parsePosition(bad), undefined, JSON.stringify(bad));
    }
  });
});

describe('recovery predicate', () => {
  const pub = (offset: number) => ({ channel: 'c', data: '1', offset, epoch: 'e' });
  it('is recovered when the run starts right after since and ends at the top', () => {
    assert.equal(isRecovered({ offset: 2, epoch: 'e' }, { publications: [pub(3), pub(4)], position: { offset: 4, epoch: 'e' } }), true);
  });
  it('is not recovered across a gap, an epoch change, or a position ahead of the top', () => {
    assert.equal(isRecovered({ offset: 1, epoch: 'e' }, { publications: [pub(3), pub(4)], position: { offset: 4, epoch: 'e' } }), false);
    assert.equal(isRecovered({ offset: 2, epoch: 'x' }, { publications: [], position: { offset: 4, epoch: 'e' } }), false);
    assert.equal(isRecovered({ offset: 9, epoch: 'e' }, { publications: [], position: { offset: 4, epoch: 'e' } }), false);
  });
  it('is recovered with nothing missed when since is the top', () => {
    assert.equal(isRecovered({ offset: 4, epoch: 'e' }, { publications: [], position: { offset: 4, epoch: 'e' } }), true);
  });
});
