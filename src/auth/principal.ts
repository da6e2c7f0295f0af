/** Who is on the other end of a connection and what they may do (SPEC §6). */
export interface Principal {
  readonly user?: string;
  /** Epoch milliseconds after which the connection must re-authenticate. */
  readonly expiresAt?: number;
  canSubscribe(channel: string): boolean;
  canPublish(channel: string): boolean;
}

/** Everyone may do everything: used when no key is configured. */
export const ANONYMOUS: Principal = Object.freeze({
  canSubscribe: () => true,
  canPublish: () => true,
});

/** A connection that has not authenticated yet may do nothing. */
export const UNAUTHENTICATED: Principal = Object.freeze({
  canSubscribe: () => false,
  canPublish: () => false,
});

export interface Authenticator {
  /** True when a key is configured, so every connection needs a token. */
  readonly required: boolean;
  /** Verifies a token and returns its principal; throws HeraldError('unauthorized') when it is bad. */
  verify(token: string): Promise<Principal>;
}

/** Token auth switched off: any token (or none) is anonymous. */
export const OPEN_ACCESS: Authenticator = {
  required: false,
  verify: async () => ANONYMOUS,
};
