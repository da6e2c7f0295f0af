import { readFileSync } from 'node:fs';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import type { Settings } from '../config/schema.js';
import { ConfigError } from '../config/load.js';
import { HeraldError } from '../core/errors.js';
import { compilePatterns, MAX_PATTERNS } from './glob.js';
import type { Authenticator, Principal } from './principal.js';

/** Tokens longer than this are refused before any parsing (TESTPLAN A8). */
export const MAX_TOKEN_LENGTH = 8192;
/** Clock skew tolerated on exp/nbf. */
export const CLOCK_TOLERANCE_SECONDS = 5;

type VerificationKey = Uint8Array | KeyObject | JWTVerifyGetKey;

/** How a JWKS is fetched and kept: re-fetched after `cacheMaxAgeMs`, at most once per `cooldownMs` for an unknown kid. */
export interface JwksOptions {
  readonly cacheMaxAgeMs: number;
  readonly cooldownMs: number;
  readonly timeoutMs: number;
}

export const JWKS_DEFAULTS: JwksOptions = { cacheMaxAgeMs: 10 * 60_000, cooldownMs: 30_000, timeoutMs: 5000 };

/** The key set could not be fetched and none was ever fetched: no token can be checked, through no fault of its own. */
class KeysUnavailable extends Error {}

/**
 * jose's remote JWKS, made to outlive an outage of the key endpoint: jose
 * re-fetches a set older than its cache age before every verification and
 * fails the token when that fetch fails, so a JWKS blip after ten quiet
 * minutes would refuse every client. Here a failed fetch falls back to the
 * last set fetched (keys rotate by adding, so the old set still verifies the
 * tokens in use); with no set at all, the failure is `unavailable` — never
 * `unauthorized`, which makes clients (and browsers' EventSource) stop for good.
 */
function resilientJwks(url: URL, options: JwksOptions): JWTVerifyGetKey {
  const remote = createRemoteJWKSet(url, { cacheMaxAge: options.cacheMaxAgeMs, cooldownDuration: options.cooldownMs, timeoutDuration: options.timeoutMs });
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (err) {
      if (!isKeySourceFailure(err)) throw err;
      const stale = remote.jwks();
      if (stale === undefined) throw new KeysUnavailable('token keys unavailable: the JWKS endpoint cannot be reached');
      return createLocalJWKSet(stale)(header, token);
    }
  };
}

/** The fetch of the set failed (network, timeout, non-200, not JSON, not a key set) — as opposed to the token failing against it. */
function isKeySourceFailure(err: unknown): boolean {
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) return true;
  if (err instanceof errors.JOSEError) return err.code === 'ERR_JOSE_GENERIC';
  return err instanceof Error; // fetch's own TypeError ("fetch failed") and socket errors
}

/**
 * JWT verification with jose (SPEC §6). The accepted algorithm is pinned to
 * the configured key: HS256 for a secret, RS256 or ES256 for a PEM key by its
 * type, RS256/ES256 for a JWKS. `exp` is required. The JWKS URL comes only
 * from configuration, never from a token.
 */
export class JwtAuthenticator implements Authenticator {
  readonly required = true;

  constructor(
    private readonly key: VerificationKey,
    private readonly options: JWTVerifyOptions,
  ) {}

  static fromSettings(settings: Settings, jwksOptions: JwksOptions = JWKS_DEFAULTS): JwtAuthenticator | undefined {
    const configured = [settings['jwt-secret'], settings['jwt-public-key'], settings['jwks-url']].filter((v) => v !== undefined);
    if (configured.length === 0) return undefined;
    if (configured.length > 1) throw new ConfigError('jwt-secret', 'configure only one of --jwt-secret, --jwt-public-key, --jwks-url');
    const base: JWTVerifyOptions = {
      requiredClaims: ['exp'],
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      audience: settings['jwt-audience'],
      issuer: settings['jwt-issuer'],
    };
    if (settings['jwt-secret'] !== undefined) {
      return new JwtAuthenticator(new TextEncoder().encode(settings['jwt-secret']), { ...base, algorithms: ['HS256'] });
    }
    if (settings['jwt-public-key'] !== undefined) {
      const key = readPublicKey(settings['jwt-public-key']);
      const algorithm = key.asymmetricKeyType === 'rsa' ? 'RS256' : key.asymmetricKeyType === 'ec' ? 'ES256' : undefined;
      if (!algorithm) throw new ConfigError('jwt-public-key', `unsupported key type ${key.asymmetricKeyType}; use an RSA or P-256 EC key`);
      return new JwtAuthenticator(key, { ...base, algorithms: [algorithm] });
    }
    let url: URL;
    try {
      url = new URL(settings['jwks-url']!);
    } catch {
      throw new ConfigError('jwks-url', 'must be a URL');
    }
    return new JwtAuthenticator(resilientJwks(url, jwksOptions), { ...base, algorithms: ['RS256', 'ES256'] });
  }

  async verify(token: string): Promise<Principal> {
    if (token.length > MAX_TOKEN_LENGTH || token.split('.').length !== 3) throw unauthorized('malformed token');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.key as Uint8Array, this.options));
    } catch (err) {
      if (err instanceof KeysUnavailable) throw new HeraldError('unavailable', err.message);
      throw unauthorized(describeFailure(err));
    }
    return principalFrom(payload);
  }
}

function principalFrom(payload: JWTPayload): Principal {
  const channels = patternsClaim(payload.channels, 'channels') ?? ['*'];
  const publish = patternsClaim(payload.publish, 'publish') ?? channels;
  const canSubscribe = compilePatterns(channels);
  const canPublish = compilePatterns(publish);
  return {
    user: typeof payload.sub === 'string' ? payload.sub : undefined,
    expiresAt: (payload.exp as number) * 1000,
    canSubscribe,
    canPublish,
  };
}

function patternsClaim(value: unknown, name: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length > MAX_PATTERNS || !value.every((p) => typeof p === 'string' && p.length <= 255)) {
    throw unauthorized(`claim "${name}" must be an array of channel patterns`);
  }
  return value as string[];
}

function readPublicKey(path: string): KeyObject {
  try {
    return createPublicKey(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError('jwt-public-key', `cannot read a PEM public key from ${path}: ${(err as Error).message}`);
  }
}

/** A short reason for the client; never echoes the token. */
function describeFailure(err: unknown): string {
  const code = (err as { code?: string }).code ?? '';
  if (code === 'ERR_JWT_EXPIRED') return 'token expired';
  if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') return `token claim check failed: ${(err as { claim?: string }).claim ?? 'claim'}`;
  if (code === 'ERR_JOSE_ALG_NOT_ALLOWED') return 'token algorithm not allowed';
  if (code === 'ERR_JWKS_NO_MATCHING_KEY') return 'no matching key for token';
  return 'invalid token';
}

function unauthorized(message: string): HeraldError {
  return new HeraldError('unauthorized', message);
}
