import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseArgs } from '../../src/cli/args.js';
import { ConfigError, loadSettings } from '../../src/config/load.js';
import { SETTINGS } from '../../src/config/schema.js';

function configFile(content: unknown): string {
  const path = join(mkdtempSync(join(tmpdir(), 'herald-config-')), 'herald.json');
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

describe('settings (SPEC §1)', () => {
  it('uses the SPEC defaults', () => {
    const settings = loadSettings({});
    assert.equal(settings.host, '0.0.0.0');
    assert.equal(settings.port, 8080);
    assert.equal(settings.broker, 'memory');
    assert.equal(settings['history-size'], 100);
    assert.equal(settings['history-ttl'], 300);
    assert.equal(settings['ping-interval'], 30);
    assert.equal(settings['max-message-size'], 65536);
    assert.equal(settings['shutdown-timeout'], 10);
    assert.equal(settings.demo, false, 'npm start turns the demo on with --demo');
    for (const unset of ['jwt-secret', 'jwt-public-key', 'jwks-url', 'api-key', 'allowed-origins', 'tls-cert', 'tls-key'] as const) {
      assert.equal(settings[unset], undefined, unset);
    }
  });

  it('knows every flag of the SPEC §1 table', () => {
    for (const flag of ['host', 'port', 'broker', 'history-size', 'history-ttl', 'ping-interval', 'max-message-size', 'jwt-secret', 'jwt-public-key', 'jwks-url', 'api-key', 'allowed-origins', 'tls-cert', 'tls-key', 'demo', 'shutdown-timeout']) {
      assert.ok(flag in SETTINGS, flag);
    }
  });

  it('takes a flag over the environment, the environment over the file, and the file over the default', () => {
    const file = configFile({ port: 1001, 'history-size': 7, historyTtl: 9, host: '127.0.0.2' });
    const settings = loadSettings({
      flags: { port: '1003' },
      env: { HERALD_PORT: '1002', HERALD_HISTORY_SIZE: '8' },
      file,
    });
    assert.equal(settings.port, 1003, 'flag beats env and file');
    assert.equal(settings['history-size'], 8, 'env beats file');
    assert.equal(settings['history-ttl'], 9, 'file beats default');
    assert.equal(settings.host, '127.0.0.2', 'file beats default');
    assert.equal(settings['ping-interval'], 30, 'default when nobody sets it');
  });

  it('names environment variables HERALD_<FLAG_IN_CAPS>', () => {
    const settings = loadSettings({
      env: {
        HERALD_MAX_MESSAGE_SIZE: '2048',
        HERALD_SHUTDOWN_TIMEOUT: '2.5',
        HERALD_API_KEY: 'k',
        HERALD_ALLOWED_ORIGINS: 'https://a.example',
        HERALD_PING_INTERVAL: '0.25',
        HERALD_BROKER: 'redis://127.0.0.1:6379/2',
      },
    });
    assert.equal(settings['max-message-size'], 2048);
    assert.equal(settings['shutdown-timeout'], 2.5);
    assert.equal(settings['api-key'], 'k');
    assert.equal(settings['allowed-origins'], 'https://a.example');
    assert.equal(settings['ping-interval'], 0.25);
    assert.equal(settings.broker, 'redis://127.0.0.1:6379/2');
  });

  it('reads camelCase and kebab-case keys from the JSON file, with JSON types or strings', () => {
    const settings = loadSettings({
      file: configFile({
        maxMessageSize: 4096,
        'shutdown-timeout': 3,
        apiKey: 'from-file',
        'allowed-origins': '*',
        demo: true,
        pingInterval: '0.5',
        jwtSecret: 's',
      }),
    });
    assert.equal(settings['max-message-size'], 4096);
    assert.equal(settings['shutdown-timeout'], 3);
    assert.equal(settings['api-key'], 'from-file');
    assert.equal(settings['allowed-origins'], '*');
    assert.equal(settings.demo, true);
    assert.equal(settings['ping-interval'], 0.5);
    assert.equal(settings['jwt-secret'], 's');
  });

  it('parses booleans, fractions, --name=value and --no- flags', () => {
    const { flags } = parseArgs(['--demo', '--ping-interval', '0.5', '--port=0', '--history-ttl=0.2']);
    assert.deepEqual(flags, { demo: true, 'ping-interval': '0.5', port: '0', 'history-ttl': '0.2' });
    const settings = loadSettings({ flags });
    assert.equal(settings.demo, true);
    assert.equal(settings['ping-interval'], 0.5);
    assert.equal(settings['history-ttl'], 0.2);
    assert.equal(settings.port, 0);
    assert.equal(loadSettings({ flags: parseArgs(['--no-demo']).flags }).demo, false);
    assert.equal(loadSettings({ env: { HERALD_DEMO: 'false' } }).demo, false);
    assert.equal(loadSettings({ env: { HERALD_DEMO: 'on' } }).demo, true);
    assert.equal(loadSettings({ flags: { demo: false }, env: { HERALD_DEMO: 'true' } }).demo, false, '--no-demo beats the environment');
  });

  it('accepts the edges of each range', () => {
    const settings = loadSettings({ flags: { port: '65535', 'history-size': '0', 'shutdown-timeout': '0', 'ping-interval': '0.05' } });
    assert.equal(settings.port, 65535);
    assert.equal(settings['history-size'], 0, '0 = history off');
    assert.equal(settings['shutdown-timeout'], 0);
    assert.equal(settings['ping-interval'], 0.05);
  });

  const bad: [string, Parameters<typeof loadSettings>[0], string, RegExp?][] = [
    ['a non-numeric port', { flags: { port: 'abc' } }, 'port', /number/],
    ['a port out of range', { env: { HERALD_PORT: '70000' } }, 'port', /at most 65535/],
    ['a negative port', { flags: { port: '-1' } }, 'port', /at least 0/],
    ['a fractional port', { flags: { port: '80.5' } }, 'port', /whole number/],
    ['an empty host', { flags: { host: '' } }, 'host'],
    ['a bare --port without a value', { flags: parseArgs(['--port']).flags }, 'port'],
    ['a fractional history size', { flags: { 'history-size': '1.5' } }, 'history-size', /whole number/],
    ['a negative history size', { env: { HERALD_HISTORY_SIZE: '-1' } }, 'history-size'],
    ['a zero history TTL', { flags: { 'history-ttl': '0' } }, 'history-ttl'],
    ['a non-numeric history TTL', { env: { HERALD_HISTORY_TTL: '5m' } }, 'history-ttl'],
    ['a negative ping interval', { flags: { 'ping-interval': '-1' } }, 'ping-interval'],
    ['a zero ping interval', { flags: { 'ping-interval': '0' } }, 'ping-interval'],
    ['an unreadable ping interval in the environment', { env: { HERALD_PING_INTERVAL: 'often' } }, 'ping-interval'],
    ['a zero max message size', { flags: { 'max-message-size': '0' } }, 'max-message-size'],
    ['a max message size with a unit', { flags: { 'max-message-size': '64k' } }, 'max-message-size'],
    ['a negative shutdown timeout', { flags: { 'shutdown-timeout': '-1' } }, 'shutdown-timeout'],
    ['an unknown broker scheme', { flags: { broker: 'kafka://x' } }, 'broker', /memory/],
    ['a redis URL with a non-numeric database', { flags: { broker: 'redis://127.0.0.1:6379/abc' } }, 'broker'],
    ['a broker URL with an unknown parameter', { env: { HERALD_BROKER: 'redis://127.0.0.1:6379?colour=blue' } }, 'broker'],
    ['a broker that is not a URL', { flags: { broker: 'localhost:6379' } }, 'broker'],
    ['a non-boolean demo', { env: { HERALD_DEMO: 'maybe' } }, 'demo', /true or false/],
    ['an empty api key', { env: { HERALD_API_KEY: '' } }, 'api-key'],
    ['a bare --api-key without a value', { flags: parseArgs(['--api-key']).flags }, 'api-key'],
    ['an allowed origin without a scheme', { flags: { 'allowed-origins': 'https://ok.example,example.com' } }, 'allowed-origins', /example\.com/],
    ['an allowed origin with a path', { flags: { 'allowed-origins': 'https://example.com/app' } }, 'allowed-origins'],
    ['a TLS cert without a key', { flags: { 'tls-cert': '/tmp/c.pem' } }, 'tls-cert'],
    ['a TLS key without a cert', { flags: { 'tls-key': '/tmp/k.pem' } }, 'tls-cert'],
    ['an unknown log level', { flags: { 'log-level': 'loud' } }, 'log-level'],
    ['an unknown flag', { flags: { 'no-such-flag': '1' } }, 'no-such-flag'],
    ['an unknown file key', { file: configFile({ colour: 'blue' }) }, 'colour'],
    ['a wrongly typed file value', { file: configFile({ port: 'eighty' }) }, 'port'],
    ['a fractional size in the file under its camelCase key', { file: configFile({ historySize: 2.5 }) }, 'history-size'],
    ['a number where the file needs a string', { file: configFile({ apiKey: 12345 }) }, 'api-key'],
    ['a string where the file needs a boolean', { file: configFile({ demo: 'maybe' }) }, 'demo'],
    ['null in the file', { file: configFile({ port: null }) }, 'port'],
    ['a file that is not JSON', { file: configFile('{ port: 8080 }') }, 'config'],
    ['a file that is not a JSON object', { file: configFile([{ port: 1 }]) }, 'config'],
    ['an unreadable file', { file: '/nonexistent/herald.json' }, 'config'],
  ];
  for (const [name, sources, setting, why] of bad) {
    it(`refuses ${name} with a ConfigError naming "${setting}" and why`, () => {
      assert.throws(
        () => loadSettings(sources),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError, `not a ConfigError: ${String(err)}`);
          assert.equal(err.setting, setting);
          assert.ok(err.message.includes(setting), err.message);
          assert.ok(err.message.length > `invalid setting "${setting}": `.length, 'the message says why');
          if (why) assert.match(err.message, why);
          return true;
        },
      );
    });
  }

  it('does not mind a bad value in a source that a higher one overrides', () => {
    assert.equal(loadSettings({ flags: { port: '1' }, env: { HERALD_PORT: 'nope' } }).port, 1);
  });
});
