/**
 * When to refresh a JWT before the server closes the connection 4401 at its
 * `exp`. The client never verifies the token (the server does); it only reads
 * `exp` from the payload to time the refresh.
 */

/** Seconds since the epoch at which `token` expires, or undefined if it does not say. */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Milliseconds from `now` until the refresh: a tenth of the remaining
 * lifetime (at most a minute, at least a second) before `exp`.
 */
export function refreshDelay(exp: number, now = Date.now()): number {
  const remaining = exp * 1000 - now;
  const margin = Math.min(60_000, Math.max(1000, remaining / 10));
  return Math.max(0, remaining - margin);
}
