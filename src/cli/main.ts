import { ConfigError } from '../config/load.js';
import { SETTINGS } from '../config/schema.js';

const USAGE = `usage: herald <command> [flags]

commands:
  serve [flags]                 start a node
  publish CHANNEL JSON [--event E] [--url U] [--api-key K]
  token --sub USER [--channels 'a:*'] [--publish 'a:*'] [--ttl 3600]
  bench [scenario …] [flags]    load test against the peers (herald bench --help)

serve flags (env HERALD_<FLAG>, JSON file --config):
${Object.entries(SETTINGS)
  .map(([name, spec]) => `  --${name.padEnd(22)} ${spec.description}${'default' in spec ? ` (default ${spec.default})` : ''}`)
  .join('\n')}
`;

/** Exit code 2 for bad usage or configuration (SPEC §1). */
export async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      // Each command loads only what it needs: `publish` and `token` start in a
      // fraction of the time the whole server (brokers, ws, pino) takes to load.
      case 'serve': {
        const { serve } = await import('./serve.js');
        return await serve(rest);
      }
      case 'publish': {
        const { publishCommand } = await import('./publish.js');
        return await publishCommand(rest);
      }
      case 'token': {
        const { tokenCommand } = await import('./token.js');
        return await tokenCommand(rest);
      }
      case 'bench': {
        // The load generator lives in bench/ and needs the devDependencies (peers); load it only when asked.
        const { runBench, BenchUsageError } = await import('../../bench/run.js');
        try {
          await runBench(rest);
        } catch (err) {
          if (err instanceof BenchUsageError) throw new ConfigError('bench', err.message);
          throw err;
        }
        return;
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return;
      default:
        throw new ConfigError('command', `unknown command "${command}"\n\n${USAGE}`);
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`herald: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
