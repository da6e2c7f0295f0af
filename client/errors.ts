/** A refused or failed command: `code` is one of SPEC §3b's error codes, or `timeout` / `unavailable`. */
export class HeraldError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HeraldError';
  }
}

/** Close codes after which the same credentials can never succeed (SPEC §6). */
export const AUTH_CLOSE_CODES: ReadonlySet<number> = new Set([4401, 4403]);
