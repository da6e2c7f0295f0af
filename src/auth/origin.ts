import type { IncomingMessage } from 'node:http';

/**
 * Origin policy against cross-site WebSocket hijacking (SPEC §1
 * --allowed-origins): by default only pages served from Herald's own host,
 * plus clients that send no Origin at all (non-browsers).
 */
export class OriginPolicy {
  private readonly allowAll: boolean;
  private readonly allowed: Set<string>;

  constructor(allowedOrigins: string | undefined) {
    const list = (allowedOrigins ?? '').split(',').map((o) => o.trim().replace(/\/+$/, '').toLowerCase()).filter(Boolean);
    this.allowAll = list.includes('*');
    this.allowed = new Set(list);
  }

  /** Is this request's Origin acceptable? A missing Origin is (non-browser client). */
  allows(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    return this.allowsOrigin(origin, req.headers.host);
  }

  allowsOrigin(origin: string, host: string | undefined): boolean {
    if (this.allowAll) return true;
    const normalized = origin.toLowerCase();
    if (this.allowed.has(normalized)) return true;
    if (this.allowed.size > 0) return false;
    try {
      return host !== undefined && new URL(normalized).host === host.toLowerCase();
    } catch {
      return false;
    }
  }
}
