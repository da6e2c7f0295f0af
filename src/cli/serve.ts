import { ConfigError, loadSettings } from '../config/load.js';
import { parseArgs } from './args.js';

/** `herald serve [flags]`: runs a node until SIGTERM/SIGINT, then drains and exits 0. */
export async function serve(argv: readonly string[]): Promise<void> {
  const { flags, positional } = parseArgs(argv);
  if (positional.length > 0) throw new ConfigError('serve', `unexpected argument "${positional[0]}" (settings are --flags)`);
  if (flags.config === true || flags.config === false) throw new ConfigError('config', 'needs the path of a JSON file');
  const configFile = typeof flags.config === 'string' ? flags.config : process.env.HERALD_CONFIG;
  delete flags.config;
  const settings = loadSettings({ flags, env: process.env, file: configFile });
  // Loaded after the settings are known good, so a bad value is refused at once.
  const [{ createLogger }, { startHerald }] = await Promise.all([import('../log.js'), import('../server.js')]);
  const log = createLogger(settings['log-level']);
  const server = await startHerald(settings, { logger: log });
  let signalled = false;
  const shutdown = (signal: string) => {
    if (signalled) return;
    signalled = true;
    log.info({ signal }, 'shutting down');
    const hardStop = setTimeout(() => process.exit(0), settings['shutdown-timeout'] * 1000 + 1000);
    hardStop.unref();
    server.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGHUP', () => {
    try {
      server.reloadTls();
      log.info('TLS certificate reloaded');
    } catch (err) {
      log.error({ err }, 'TLS certificate reload failed; keeping the old one');
    }
  });
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('uncaughtException', (err) => log.fatal({ err }, 'uncaughtException'));
  process.on('unhandledRejection', (err) => log.fatal({ err }, 'unhandledRejection'));
}
