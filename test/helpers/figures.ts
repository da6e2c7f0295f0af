/** The p-th percentile (nearest rank) of `values`; NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** "p50 x / p99 y / max z ms (n)" for diagnostics. */
export function summary(values: readonly number[]): string {
  const f = (v: number) => v.toFixed(1);
  return `p50 ${f(percentile(values, 50))} / p99 ${f(percentile(values, 99))} / max ${f(Math.max(...values))} ms (n=${values.length})`;
}

export const mb = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MB`;
