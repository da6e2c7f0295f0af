import type { Position } from './position.js';
import { isRecovered, type HistoryResult, type Publication } from './publication.js';

/**
 * A new subscriber's stream while the hub assembles it (docs/scaling.md,
 * "the subscribe/history race"): history reads plus the live publications
 * that arrived meanwhile, merged by offset. Wherever the stream cannot
 * continue seamlessly it holds an explicit reset, so a subscriber is never
 * handed a silent gap or a silent change of epoch.
 */

/** What a new subscriber is handed after its answer: a publication, or a reset when its stream cannot continue seamlessly. */
export type CatchUpStep = Publication | { readonly reset: string; readonly position: Position };

/** A new subscriber's stream while it is assembled from history reads and the live publications buffered meanwhile. */
export class CatchUp {
  readonly steps: CatchUpStep[] = [];
  epoch = '';
  lastOffset = 0;

  /** The first read: recovered publications after `since`, or just the top (the answer then carries the reset). */
  startFrom(since: Position | undefined, result: HistoryResult): void {
    const recovered = since !== undefined && isRecovered(since, result);
    if (recovered) this.steps.push(...result.publications);
    this.epoch = result.position.epoch;
    this.lastOffset = recovered && result.publications.length > 0 ? result.publications[result.publications.length - 1]!.offset : result.position.offset;
  }

  /** A further read from where the stream stands. */
  continueFrom(from: Position, result: HistoryResult): void {
    if (isRecovered(from, result)) {
      this.steps.push(...result.publications);
    } else {
      this.steps.push({ reset: resetReason(from, result), position: result.position });
    }
    this.epoch = result.position.epoch;
    this.lastOffset = result.position.offset;
  }

  jumpTo(position: Position, reason: string): void {
    this.steps.push({ reset: reason, position });
    this.epoch = position.epoch;
    this.lastOffset = position.offset;
  }

  /**
   * Live publications that arrived meanwhile, de-duplicated by offset; a jump is announced by a reset,
   * never spliced silently. A publication of an epoch other than the stream's that is not known to be
   * retired may be older than the read (in flight from before the history was lost) or newer: unless
   * `force`, merging stops there and the rest is returned, for a fresh read to settle which.
   */
  merge(pending: readonly Publication[], retiredEpochs: ReadonlySet<string>, force: boolean): Publication[] {
    for (let i = 0; i < pending.length; i++) {
      const pub = pending[i]!;
      if (pub.epoch === this.epoch && pub.offset <= this.lastOffset) continue;
      if (pub.epoch !== this.epoch && retiredEpochs.has(pub.epoch)) continue;
      if (pub.epoch !== this.epoch && !force) return pending.slice(i);
      if (pub.epoch !== this.epoch || pub.offset !== this.lastOffset + 1) {
        this.steps.push({ reset: pub.epoch !== this.epoch ? 'epoch changed' : 'history expired', position: { offset: pub.offset - 1, epoch: pub.epoch } });
      }
      this.steps.push(pub);
      this.lastOffset = pub.offset;
      this.epoch = pub.epoch;
    }
    return [];
  }
}

/** Why `since` could not be recovered from `result`. */
export function resetReason(since: Position, result: HistoryResult): string {
  if (since.offset < 0) return 'invalid position';
  if (since.epoch !== result.position.epoch) return 'epoch changed';
  if (since.offset > result.position.offset) return 'position ahead of history';
  return 'history expired';
}

