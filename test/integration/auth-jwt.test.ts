import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { exportJWK } from 'jose';
import { JwtAuthenticator } from '../../src/auth/jwt.js';
import { settingsWith } from '../../src/config/load.js';
import { generateKeyFiles, hmacWithPublicKey, SECRET, signToken, sseStatus, unsignedToken, upgradeStatus, type KeyFiles } from '../helpers/auth.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';
import { TestSocket } from '../helpers/ws.js';

const AUDIENCE = 'herald-tests';
const ISSUER = 'https://issuer.herald.test';

/** Every way a token reaches the server (SPEC §6), each answered with a status before any socket opens. */
async function statusesFor(server: TestServer, token: string): Promise<Record<string, number>> {
  const query = encodeURIComponent(token);
  const [room, protocol, bearer, queryParam, cookie] = await Promise.all([
    upgradeStatus(`${server.wsUrl}?room=jwt&token=${query}`),
    upgradeStatus(`${server.wsUrl}?token=${query}`, { protocol: 'herald.v1' }),
    sseStatus(`${server.url}/events/jwt`, { Authorization: `Bearer ${token}` }),
    sseStatus(`${server.url}/events/jwt?token=${query}`),
    sseStatus(`${server.url}/events/jwt`, { Cookie: `theme=dark; herald_token=${token}` }),
  ]);
  for (const answer of [bearer, queryParam, cookie]) {
    if (answer.status !== 200) {
      assert.equal(JSON.parse(answer.body).error.code, 'unauthorized');
      if (token.length > 16) assert.equal(answer.body.includes(token), false, 'the error must not echo the token');
    }
  }
  return { room, protocol, bearer: bearer.status, query: queryParam.status, cookie: cookie.status };
}

const ACCEPTED = { room: 101, protocol: 101, bearer: 200, query: 200, cookie: 200 };
const REFUSED = { room: 401, protocol: 401, bearer: 401, query: 401, cookie: 401 };

/** Log hygiene (SPEC §6, TESTPLAN T06): no token, no signature, no query string in any log line. */
function assertLogsClean(server: TestServer, tokens: readonly string[]): void {
  const all = server.logs.join('');
  assert.ok(all.includes('websocket open'), 'debug logging was on');
  for (const token of tokens.filter((t) => t.length > 16)) {
    assert.equal(all.includes(token), false, `token logged: ${token.slice(0, 24)}…`);
    const signature = token.split('.')[2] ?? '';
    if (signature.length > 16) assert.equal(all.includes(signature), false, 'token signature logged');
  }
  assert.equal(all.includes('token='), false, 'query string logged');
}

describe('JWT HS256 with audience and issuer (SPEC §6, TESTPLAN A8–A10)', () => {
  let server: TestServer;
  const used: string[] = [];
  const good = (options = {}) => signToken({ sub: 'alice' }, { aud: AUDIENCE, iss: ISSUER, ...options });

  before(async () => (server = await startTestServer({ 'jwt-secret': SECRET, 'jwt-audience': AUDIENCE, 'jwt-issuer': ISSUER })));
  after(async () => {
    await server.stop();
    assertLogsClean(server, used);
  });

  it('accepts a valid token on the upgrade (both modes) and on SSE by header, query and cookie', async () => {
    const token = await good();
    used.push(token);
    assert.deepEqual(await statusesFor(server, token), ACCEPTED);
  });

  it('refuses a connection without a token on SSE, and opens a WebSocket that must then authenticate', async () => {
    assert.equal((await sseStatus(`${server.url}/events/jwt`)).status, 401);
    assert.equal(await upgradeStatus(`${server.wsUrl}?room=jwt`), 101);
  });

  const refused: [string, () => Promise<string> | string][] = [
    ['alg none', () => unsignedToken({ sub: 'alice', aud: AUDIENCE, iss: ISSUER })],
    ['alg none with a signature part', () => unsignedToken({ sub: 'alice', aud: AUDIENCE, iss: ISSUER }) + 'c2ln'],
    ['a wrong secret', () => signToken({ sub: 'alice' }, { aud: AUDIENCE, iss: ISSUER }, new TextEncoder().encode('not-the-secret'))],
    ['an RS256 token (algorithm not pinned)', () => signToken({ sub: 'alice' }, { aud: AUDIENCE, iss: ISSUER }, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'RS256')],
    ['HS512 with the right secret (algorithm not pinned)', () => signToken({ sub: 'alice' }, { aud: AUDIENCE, iss: ISSUER }, new TextEncoder().encode(SECRET), 'HS512')],
    ['an expired token (beyond the 5 s skew)', () => good({ exp: -60 })],
    ['nbf in the future', () => good({ nbf: 60 })],
    ['no exp claim', () => good({ exp: null })],
    ['a wrong audience', () => signToken({ sub: 'alice' }, { aud: 'someone-else', iss: ISSUER })],
    ['no audience', () => signToken({ sub: 'alice' }, { iss: ISSUER })],
    ['a wrong issuer', () => signToken({ sub: 'alice' }, { aud: AUDIENCE, iss: 'https://evil.test' })],
    ['an oversized token (> 8 KiB, validly signed)', () => signToken({ sub: 'alice', pad: 'x'.repeat(9000) }, { aud: AUDIENCE, iss: ISSUER })],
    ['a "channels" claim that is not a list of patterns', () => signToken({ sub: 'alice', channels: 'chat:*' }, { aud: AUDIENCE, iss: ISSUER })],
    ['malformed: one segment', () => 'garbage'],
    ['malformed: four segments', async () => (await good()) + '.extra'],
    ['malformed: bad base64', () => '!!!.@@@.###'],
    ['malformed: header not JSON', () => `${Buffer.from('{nope').toString('base64url')}.e30.c2ln`],
    ['malformed: empty', () => ''],
  ];
  for (const [name, make] of refused) {
    it(`refuses ${name}: 401 on the upgrade and on SSE`, async () => {
      const token = await make();
      used.push(token);
      assert.deepEqual(await statusesFor(server, token), REFUSED);
    });
  }

  it('refuses the same bad tokens as a first message: 4401', async () => {
    const token = await good({ exp: null });
    used.push(token);
    const room = await TestSocket.open(`${server.wsUrl}?room=jwt`);
    room.send({ type: 'auth', token });
    assert.equal((await room.closed).code, 4401);
  });
});

describe('JWT with a PEM public key (SPEC §6)', () => {
  let rsa: KeyFiles;
  let ec: KeyFiles;
  let rsaServer: TestServer;
  let ecServer: TestServer;
  const used: string[] = [];
  before(async () => {
    rsa = generateKeyFiles('rsa');
    ec = generateKeyFiles('ec');
    [rsaServer, ecServer] = await Promise.all([startTestServer({ 'jwt-public-key': rsa.publicKeyPath }), startTestServer({ 'jwt-public-key': ec.publicKeyPath })]);
  });
  after(async () => {
    await Promise.all([rsaServer.stop(), ecServer.stop()]);
    rsa.remove();
    ec.remove();
    assertLogsClean(rsaServer, used);
    assertLogsClean(ecServer, used);
  });

  it('RS256: accepts a token signed with the private key', async () => {
    const token = await signToken({ sub: 'alice' }, {}, rsa.privateKey, 'RS256');
    used.push(token);
    assert.deepEqual(await statusesFor(rsaServer, token), ACCEPTED);
  });

  it('ES256: accepts a token signed with the private key', async () => {
    const token = await signToken({ sub: 'alice' }, {}, ec.privateKey, 'ES256');
    used.push(token);
    assert.deepEqual(await statusesFor(ecServer, token), ACCEPTED);
  });

  it('RS256: refuses HS256 signed with the RSA public key, another RSA key, PS256, ES256 and none', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const tokens = [
      hmacWithPublicKey({ sub: 'alice' }, rsa.publicPem),
      await signToken({ sub: 'alice' }, {}, other, 'RS256'),
      await signToken({ sub: 'alice' }, {}, rsa.privateKey, 'PS256'),
      await signToken({ sub: 'alice' }, {}, ec.privateKey, 'ES256'),
      unsignedToken({ sub: 'alice' }),
      await signToken({ sub: 'alice' }, { exp: null }, rsa.privateKey, 'RS256'),
    ];
    used.push(...tokens);
    for (const token of tokens) assert.deepEqual(await statusesFor(rsaServer, token), REFUSED);
  });

  it('ES256: refuses HS256 signed with the EC public key, another EC key and RS256', async () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const tokens = [
      hmacWithPublicKey({ sub: 'alice' }, ec.publicPem),
      await signToken({ sub: 'alice' }, {}, other, 'ES256'),
      await signToken({ sub: 'alice' }, {}, rsa.privateKey, 'RS256'),
    ];
    used.push(...tokens);
    for (const token of tokens) assert.deepEqual(await statusesFor(ecServer, token), REFUSED);
  });
});

describe('JWT with a JWKS URL (SPEC §6, TESTPLAN A9: no fetch built from unverified claims)', () => {
  const rsaKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ecKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });
  let jwks: Server;
  let trap: Server;
  let jwksUrl: string;
  let trapUrl: string;
  const jwksRequests: string[] = [];
  const trapRequests: string[] = [];
  let server: TestServer;
  const used: string[] = [];

  before(async () => {
    const keys = [
      { ...(await exportJWK(rsaKey.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
      { ...(await exportJWK(ecKey.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
    ];
    jwks = createServer((req, res) => {
      jwksRequests.push(req.url ?? '');
      if (req.url !== '/.well-known/jwks.json') return void res.writeHead(404).end();
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys }));
    });
    trap = createServer((req, res) => {
      trapRequests.push(req.url ?? '');
      // Would hand out the attacker's key, if Herald ever asked.
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys: [{ ...stranger.publicKey.export({ format: 'jwk' }), kid: 'evil' }] }));
    });
    await Promise.all([new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r)), new Promise<void>((r) => trap.listen(0, '127.0.0.1', r))]);
    jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/.well-known/jwks.json`;
    trapUrl = `http://127.0.0.1:${(trap.address() as AddressInfo).port}`;
    server = await startTestServer({ 'jwks-url': jwksUrl });
  });
  after(async () => {
    await server.stop();
    jwks.close();
    trap.close();
    assertLogsClean(server, used);
  });

  it('accepts RS256 and ES256 tokens whose kid is in the set, fetching the set once (cached)', async () => {
    const tokens = [await signToken({ sub: 'alice' }, { kid: 'rsa-1' }, rsaKey.privateKey, 'RS256'), await signToken({ sub: 'bob' }, { kid: 'ec-1' }, ecKey.privateKey, 'ES256')];
    used.push(...tokens);
    for (const token of tokens) assert.deepEqual(await statusesFor(server, token), ACCEPTED);
    assert.equal(jwksRequests.length, 1, `JWKS fetched ${jwksRequests.length} times`);
  });

  it('refuses an unknown kid, a known kid signed by another key, and a kid with the wrong algorithm', async () => {
    const tokens = [
      await signToken({ sub: 'mallory' }, { kid: 'evil' }, stranger.privateKey, 'RS256'),
      await signToken({ sub: 'mallory' }, { kid: 'rsa-1' }, stranger.privateKey, 'RS256'),
      await signToken({ sub: 'mallory' }, { kid: 'rsa-1' }, rsaKey.privateKey, 'PS256'),
      hmacWithPublicKey({ sub: 'mallory' }, rsaKey.publicKey.export({ type: 'spki', format: 'pem' }).toString()),
    ];
    used.push(...tokens);
    for (const token of tokens) assert.deepEqual(await statusesFor(server, token), REFUSED);
  });

  it('never fetches keys from a URL named in the token (jku, x5u, iss, embedded jwk)', async () => {
    const strangerJwk = await exportJWK(stranger.publicKey);
    const tokens = [
      await signToken({ sub: 'mallory', iss: trapUrl }, { kid: 'evil', header: { jku: `${trapUrl}/jku.json` } }, stranger.privateKey, 'RS256'),
      await signToken({ sub: 'mallory' }, { kid: 'evil', header: { x5u: `${trapUrl}/x5u.pem` } }, stranger.privateKey, 'RS256'),
      await signToken({ sub: 'mallory' }, { kid: 'evil', header: { jwk: strangerJwk } }, stranger.privateKey, 'RS256'),
      await signToken({ sub: 'mallory' }, { kid: `${trapUrl}/kid.json` }, stranger.privateKey, 'RS256'),
    ];
    used.push(...tokens);
    for (const token of tokens) assert.deepEqual(await statusesFor(server, token), REFUSED);
    assert.deepEqual(trapRequests, []);
    assert.ok(jwksRequests.every((path) => path === '/.well-known/jwks.json'), `unexpected JWKS paths ${jwksRequests.join(', ')}`);
  });
});

describe('JWT with a JWKS endpoint that goes down (keys unreachable is not a bad token)', () => {
  const rsaKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
  /** up: serves the set; error: 500; reset: drops the connection. */
  let mode: 'up' | 'error' | 'reset' = 'error';
  let fetches = 0;
  let jwks: Server;
  let server: TestServer;
  const token = () => signToken({ sub: 'alice' }, { kid: 'rsa-1' }, rsaKey.privateKey, 'RS256');

  before(async () => {
    const keys = [{ ...(await exportJWK(rsaKey.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' }];
    jwks = createServer((req, res) => {
      fetches++;
      if (mode === 'reset') return void req.socket.destroy();
      if (mode === 'error') return void res.writeHead(500).end();
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys }));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const settings = settingsWith({ 'jwks-url': `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`, 'sse-retry': 200 });
    // No cache age: every verification re-fetches the set, as a production node does once its set is 10 minutes old.
    const authenticator = JwtAuthenticator.fromSettings(settings, { cacheMaxAgeMs: 0, cooldownMs: 0, timeoutMs: 1000 })!;
    server = await startTestServer({ 'jwks-url': settings['jwks-url']!, 'sse-retry': 200 }, { authenticator });
  });
  after(async () => {
    await server.stop();
    jwks.close();
  });

  it('before any set was fetched: upgrade 503, herald.v1 and room auth close 1013, SSE gets a retry hint — nothing that tells a client to stop', async () => {
    mode = 'error';
    const good = await token();
    const [room, protocol, sse] = await Promise.all([
      upgradeStatus(`${server.wsUrl}?room=jwks&token=${good}`),
      upgradeStatus(`${server.wsUrl}?token=${good}`, { protocol: 'herald.v1' }),
      fetch(`${server.url}/events/jwks?token=${good}`),
    ]);
    assert.equal(room, 503);
    assert.equal(protocol, 503);
    assert.equal(sse.status, 200, 'an error status would stop EventSource for good');
    assert.equal(await sse.text(), 'retry: 200\n\n');

    mode = 'reset';
    const v1 = await TestSocket.open(server.wsUrl, 'herald.v1');
    v1.send({ id: 1, type: 'auth', token: good });
    const refused = await v1.next<{ code: string }>('error');
    assert.equal(refused.code, 'unavailable');
    assert.equal((await v1.closed).code, 1013);
    const member = await TestSocket.open(`${server.wsUrl}?room=jwks`);
    member.send({ type: 'auth', token: good });
    assert.equal((await member.closed).code, 1013);
  });

  it('a browser-style EventSource opened while the keys are unreachable connects by itself once they are back', async () => {
    mode = 'reset';
    const source = new EventSource(`${server.url}/events/jwks-es?token=${await token()}`);
    const connected = new Promise((resolve) => source.addEventListener('connected', resolve, { once: true }));
    const before = fetches;
    await until(() => fetches >= before + 2, 5000, 'EventSource retried');
    mode = 'up';
    await connected;
    assert.notEqual(source.readyState, EventSource.CLOSED);
    source.close();
  });

  it('once a set was fetched, an outage of the endpoint keeps accepting tokens with the last set, and still refuses bad ones', async () => {
    mode = 'up';
    assert.deepEqual(await statusesFor(server, await token()), ACCEPTED);
    for (const outage of ['error', 'reset'] as const) {
      mode = outage;
      const before = fetches;
      assert.deepEqual(await statusesFor(server, await token()), ACCEPTED, `endpoint ${outage}`);
      assert.ok(fetches > before, 'the set was re-fetched (and failed)');
      const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });
      assert.deepEqual(await statusesFor(server, await signToken({ sub: 'mallory' }, { kid: 'rsa-1' }, stranger.privateKey, 'RS256')), REFUSED);
    }
  });
});
