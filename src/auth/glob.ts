/**
 * Channel patterns of the `channels` / `publish` claims (SPEC §6): `*`
 * matches any run of characters (including none); everything else is literal.
 * Compiled once per token, matched per subscribe/publish.
 *
 * Not a RegExp: `*a*a*a*a*b` as `.*a.*a.*a.*a.*b` backtracks for minutes on
 * a 255-character channel name, and patterns are often built from user data
 * (`user:${name}:*`). The matcher below is O(pattern × channel) at worst.
 */
export type ChannelMatcher = (channel: string) => boolean;

export const MAX_PATTERNS = 256;

export function compilePatterns(patterns: readonly string[]): ChannelMatcher {
  if (patterns.includes('*')) return () => true;
  if (patterns.length === 0) return () => false;
  const exact = new Set(patterns.filter((p) => !p.includes('*')));
  const wildcard = patterns.filter((p) => p.includes('*'));
  if (wildcard.length === 0) return (channel) => exact.has(channel);
  return (channel) => exact.has(channel) || wildcard.some((pattern) => globMatches(pattern, channel));
}

/** Wildcard match with one remembered `*`: on a mismatch, let the last `*` swallow one more character. */
export function globMatches(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let star = -1;
  let starText = 0;
  while (t < text.length) {
    if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      starText = t;
    } else if (p < pattern.length && pattern[p] === text[t]) {
      p++;
      t++;
    } else if (star >= 0) {
      p = star + 1;
      t = ++starText;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}
