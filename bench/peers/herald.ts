/**
 * Herald under test: the same startHerald() that `herald serve` runs, with
 * the given flags, plus the coordinator's IPC (ready, gc, exit). Flags come
 * as `--name value` pairs.
 */
import { settingsWith } from '../../src/config/load.js';
import type { SettingName } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import { startHerald } from '../../src/server.js';
import { announceReady, peerArgs } from './harness.js';

const flags = Object.fromEntries(peerArgs(process.argv.slice(2))) as Partial<Record<SettingName, string>>;
const settings = settingsWith({ host: '127.0.0.1', port: 0, 'log-level': 'warn', ...flags });
const server = await startHerald(settings, { logger: createLogger(settings['log-level']) });
announceReady(server.port);
