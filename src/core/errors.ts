/**
 * Every refusal Herald can give, in one place (SPEC §2, §3b, §3c).
 * Transports translate a HeraldError into their own shape: an HTTP status,
 * a protocol `error` frame, or a WebSocket close code.
 */
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'unavailable';

export const HTTP_STATUS_BY_CODE: Record<ErrorCode, number> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  unavailable: 503,
};

export class HeraldError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HeraldError';
  }

  get httpStatus(): number {
    return HTTP_STATUS_BY_CODE[this.code];
  }
}

export const badRequest = (message: string) => new HeraldError('bad_request', message);
export const unavailable = (message: string) => new HeraldError('unavailable', message);

/** Wraps anything thrown by a broker or a bug into a HeraldError without leaking internals. */
export function asHeraldError(err: unknown): HeraldError {
  if (err instanceof HeraldError) return err;
  return unavailable('broker unavailable');
}

/** WebSocket close codes (SPEC §3c). */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  unsupportedData: 1003,
  invalidPayload: 1007,
  policyViolation: 1008,
  messageTooBig: 1009,
  /** RFC 6455 Try Again Later: the broker or the token keys are unreachable; the client reconnects with backoff. */
  tryAgainLater: 1013,
  roomRequired: 4001,
  slowConsumer: 4008,
  unauthorized: 4401,
  forbidden: 4403,
  authTimeout: 4408,
  rateLimited: 4429,
} as const;
