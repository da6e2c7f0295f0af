// Bundles the herald/client library as one browser ES module, served at /herald.js (SPEC §8).
import { build } from 'esbuild';
import { existsSync } from 'node:fs';

const entry = 'client/index.ts';
if (existsSync(entry)) {
  await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2020'],
    minify: true,
    sourcemap: true,
    outfile: 'dist/herald.js',
    external: ['ws'],
    logLevel: 'warning',
  });
}
