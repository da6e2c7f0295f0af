/**
 * Inbound JSON may nest at most this deep (TESTPLAN P2: the parser is depth
 * limited). JSON.parse copes with any depth, but JSON.stringify, which the
 * publish paths and SSE's single-line re-encoding run on the same data,
 * overflows the stack at a few thousand levels — a RangeError in the middle
 * of a fan-out. No real message nests anywhere near this.
 */
export const MAX_JSON_DEPTH = 256;

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * True when the JSON text nests objects/arrays deeper than `limit`. One pass
 * over the characters without parsing; brackets inside strings do not count.
 * Malformed text is left for JSON.parse to refuse.
 */
export function jsonNestsDeeperThan(text: string, limit = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > limit) return true;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
  return false;
}
