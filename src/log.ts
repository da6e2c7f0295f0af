import { pino, type Logger } from 'pino';

/**
 * Structured JSON logs. Nothing that could carry a credential is ever
 * logged: no query strings, no headers, no tokens (SPEC §6).
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino({ level, base: { service: 'herald' }, redact: ['token', 'authorization', 'req.headers', '*.token'] }, destination as never);
}
