/**
 * Channel patterns of the `channels` / `publish` claims (SPEC §6): `*`
 * matches any run of characters (including none); everything else is literal.
 * Compiled once per token, matched per subscribe/publish.
 */
export type ChannelMatcher = (channel: string) => boolean;

export const MAX_PATTERNS = 256;

export function compilePatterns(patterns: readonly string[]): ChannelMatcher {
  if (patterns.includes('*')) return () => true;
  if (patterns.length === 0) return () => false;
  const source = patterns.map((p) => p.split('*').map(escapeRegExp).join('.*')).join('|');
  const regex = new RegExp(`^(?:${source})$`, 's');
  return (channel) => regex.test(channel);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
