import * as hdr from 'hdr-histogram-js';

/** Latency in microseconds, 3 significant digits, up to two minutes. */
export function newLatencyHistogram(): hdr.Histogram {
  return hdr.build({ bitBucketSize: 32, numberOfSignificantValueDigits: 3, lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, autoResize: true });
}

export function encodeHistogram(histogram: hdr.Histogram): string {
  return hdr.encodeIntoCompressedBase64(histogram);
}

/** Merges encoded histograms from several generator processes into one. */
export function mergeHistograms(encoded: readonly string[]): hdr.Histogram {
  const merged = newLatencyHistogram();
  for (const text of encoded) {
    const part = hdr.decodeFromCompressedBase64(text, 32, false);
    merged.add(part);
    part.destroy();
  }
  return merged;
}

export interface LatencySummary {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
}

export function summarize(histogram: hdr.Histogram): LatencySummary {
  const ms = (micros: number) => micros / 1000;
  return {
    count: histogram.totalCount,
    p50Ms: ms(histogram.getValueAtPercentile(50)),
    p99Ms: ms(histogram.getValueAtPercentile(99)),
    p999Ms: ms(histogram.getValueAtPercentile(99.9)),
    maxMs: ms(histogram.maxValue),
  };
}
