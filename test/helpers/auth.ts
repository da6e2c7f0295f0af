import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, type JWTPayload } from 'jose';
import WebSocket from 'ws';

export const SECRET = 'test-secret-for-herald-auth-tests-0123456789';
const SECRET_BYTES = new TextEncoder().encode(SECRET);

export interface TokenOptions {
  /** Seconds from now; `null` leaves `exp` out. Default 3600. */
  exp?: number | null;
  nbf?: number;
  aud?: string;
  iss?: string;
  kid?: string;
  /** Extra protected-header fields (jku, x5u, …). */
  header?: Record<string, unknown>;
}

/** Signs `claims` (sub, channels, publish, …) with HS256 and the test secret, or with `key`/`alg`. */
export async function signToken(claims: JWTPayload, options: TokenOptions = {}, key: Uint8Array | KeyObject = SECRET_BYTES, alg = 'HS256'): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  let jwt = new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT', ...(options.kid ? { kid: options.kid } : {}), ...options.header }).setIssuedAt(now);
  if (options.exp !== null) jwt = jwt.setExpirationTime(now + (options.exp ?? 3600));
  if (options.nbf !== undefined) jwt = jwt.setNotBefore(now + options.nbf);
  if (options.aud !== undefined) jwt = jwt.setAudience(options.aud);
  if (options.iss !== undefined) jwt = jwt.setIssuer(options.iss);
  return jwt.sign(key);
}

const base64url = (value: string | Buffer) => Buffer.from(value).toString('base64url');

/** A token with `alg: none` and an empty signature (CVE-2015-9235 shape). */
export function unsignedToken(claims: JWTPayload): string {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  return `${base64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${base64url(JSON.stringify({ exp, ...claims }))}.`;
}

/** HS256 with the server's RSA public key PEM as the HMAC secret: the algorithm-confusion attack. */
export function hmacWithPublicKey(claims: JWTPayload, publicKeyPem: string): string {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const signingInput = `${base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${base64url(JSON.stringify({ exp, ...claims }))}`;
  return `${signingInput}.${createHmac('sha256', publicKeyPem).update(signingInput).digest('base64url')}`;
}

export interface KeyFiles {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly publicPem: string;
  /** Path of the PEM public key, for --jwt-public-key. */
  readonly publicKeyPath: string;
  /** Deletes the key file. */
  remove(): void;
}

export function generateKeyFiles(type: 'rsa' | 'ec'): KeyFiles {
  const { privateKey, publicKey } = type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const dir = mkdtempSync(join(tmpdir(), 'herald-keys-'));
  const publicKeyPath = join(dir, `${type}.pub.pem`);
  writeFileSync(publicKeyPath, publicPem);
  return { privateKey, publicKey, publicPem, publicKeyPath, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Tries a WebSocket upgrade and resolves with the HTTP status: 101 when the
 * socket opened (it is closed again at once), else the refusal's status.
 */
export function upgradeStatus(url: string, options: { protocol?: string; headers?: Record<string, string>; ca?: Buffer } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options.protocol ? [options.protocol] : [], { headers: options.headers, ca: options.ca });
    ws.on('error', () => {});
    ws.once('open', () => {
      ws.terminate();
      resolve(101);
    });
    ws.once('unexpected-response', (req, res) => {
      res.resume();
      req.destroy();
      resolve(res.statusCode ?? 0);
    });
    ws.once('close', () => reject(new Error('closed before an answer to the upgrade')));
  });
}

/** Status of an SSE request; the body (a stream, if it opened) is cancelled. */
export async function sseStatus(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: string }> {
  const response = await fetch(url, { headers: { Accept: 'text/event-stream', ...headers } });
  let body = '';
  if (response.status === 200) await response.body?.cancel();
  else body = await response.text();
  return { status: response.status, headers: response.headers, body };
}
