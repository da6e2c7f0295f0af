import { SignJWT } from 'jose';
import { ConfigError } from '../config/load.js';
import { parseArgs, requireString } from './args.js';

/**
 * `herald token --sub alice --channels 'chat:*' [--publish 'chat:*'] [--ttl 3600]`:
 * a development token signed with --jwt-secret (or HERALD_JWT_SECRET).
 */
export async function tokenCommand(argv: readonly string[]): Promise<void> {
  const { flags } = parseArgs(argv);
  const secret = requireString(flags, 'jwt-secret') ?? process.env.HERALD_JWT_SECRET;
  if (!secret) throw new ConfigError('jwt-secret', 'herald token needs --jwt-secret or HERALD_JWT_SECRET');
  const sub = requireString(flags, 'sub');
  if (!sub) throw new ConfigError('sub', 'herald token needs --sub USER');
  const ttl = Number(requireString(flags, 'ttl') ?? '3600');
  if (!Number.isInteger(ttl) || ttl <= 0) throw new ConfigError('ttl', 'must be a positive number of seconds');
  const patterns = (name: string) => requireString(flags, name)?.split(',').map((p) => p.trim()).filter(Boolean);
  const claims: Record<string, unknown> = {};
  const channels = patterns('channels');
  const publish = patterns('publish');
  if (channels) claims.channels = channels;
  if (publish) claims.publish = publish;
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(sub).setIssuedAt().setExpirationTime(`${ttl}s`);
  const audience = requireString(flags, 'jwt-audience') ?? process.env.HERALD_JWT_AUDIENCE;
  const issuer = requireString(flags, 'jwt-issuer') ?? process.env.HERALD_JWT_ISSUER;
  if (audience) jwt = jwt.setAudience(audience);
  if (issuer) jwt = jwt.setIssuer(issuer);
  process.stdout.write((await jwt.sign(new TextEncoder().encode(secret))) + '\n');
}
