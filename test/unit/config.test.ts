import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseArgs } from '../../src/cli/args.js';
import { ConfigError, loadSettings } from '../../src/config/load.js';

function configFile(content: unknown): string {
  const path = join(mkdtempSync(join(tmpdir(), 'herald-config-')), 'herald.json');
  writeFileSync(path, JSON.stringify(content));
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
    assert.equal(settings['api-key'], undefined);
  });

  it('takes flag over env over file over default', () => {
    const file = configFile({ port: 1001, historySize: 7, 'ping-interval': 2, host: '127.0.0.2' });
    const settings = loadSettings({
      flags: { port: '1003' },
      env: { HERALD_PORT: '1002', HERALD_HISTORY_SIZE: '8' },
      file,
    });
    assert.equal(settings.port, 1003);
    assert.equal(settings['history-size'], 8);
    assert.equal(settings['ping-interval'], 2);
    assert.equal(settings.host, '127.0.0.2');
  });

  it('parses booleans, fractions and --no- flags', () => {
    const { flags } = parseArgs(['--demo', '--ping-interval', '0.5', '--port=0']);
    assert.deepEqual(flags, { demo: true, 'ping-interval': '0.5', port: '0' });
    const settings = loadSettings({ flags });
    assert.equal(settings.demo, true);
    assert.equal(settings['ping-interval'], 0.5);
    assert.equal(loadSettings({ flags: parseArgs(['--no-demo']).flags }).demo, false);
    assert.equal(loadSettings({ env: { HERALD_DEMO: 'false' } }).demo, false);
  });

  const bad: [string, Parameters<typeof loadSettings>[0], string][] = [
    ['a non-numeric port', { flags: { port: 'abc' } }, 'port'],
    ['a port out of range', { env: { HERALD_PORT: '70000' } }, 'port'],
    ['a fractional history size', { flags: { 'history-size': '1.5' } }, 'history-size'],
    ['a negative ping interval', { flags: { 'ping-interval': '-1' } }, 'ping-interval'],
    ['an unknown broker URL', { flags: { broker: 'kafka://x' } }, 'broker'],
    ['a non-boolean demo', { env: { HERALD_DEMO: 'maybe' } }, 'demo'],
    ['an unknown flag', { flags: { 'no-such-flag': '1' } }, 'no-such-flag'],
    ['an unknown file key', { file: configFile({ colour: 'blue' }) }, 'colour'],
    ['a wrongly typed file value', { file: configFile({ port: 'eighty' }) }, 'port'],
    ['an unreadable file', { file: '/nonexistent/herald.json' }, 'config'],
    ['a TLS cert without a key', { flags: { 'tls-cert': '/tmp/c.pem' } }, 'tls-cert'],
    ['an unknown log level', { flags: { 'log-level': 'loud' } }, 'log-level'],
  ];
  for (const [name, sources, setting] of bad) {
    it(`refuses ${name}, naming the setting`, () => {
      assert.throws(() => loadSettings(sources), (err: unknown) => err instanceof ConfigError && err.setting === setting && err.message.includes(setting));
    });
  }
});
