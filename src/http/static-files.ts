import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root, from dist/src/http/ at run time. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const WEB_ROOT = join(PACKAGE_ROOT, 'web');
const CLIENT_BUNDLE = join(PACKAGE_ROOT, 'dist', 'herald.js');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json; charset=utf-8',
};

/** The browser client bundle (SPEC §8), built by scripts/bundle-client.mjs. */
export function serveClientBundle(res: ServerResponse): Promise<boolean> {
  return serveFile(res, CLIENT_BUNDLE);
}

/** Demo pages from web/; false when there is no such file. */
export function serveDemoFile(res: ServerResponse, pathname: string): Promise<boolean> {
  const relative = pathname === '/' ? 'index.html' : normalize(pathname).replace(/^([/\\])+/, '');
  if (relative.startsWith('..')) return Promise.resolve(false);
  return serveFile(res, join(WEB_ROOT, relative));
}

async function serveFile(res: ServerResponse, path: string): Promise<boolean> {
  let body: Buffer;
  try {
    body = await readFile(path);
  } catch {
    return false;
  }
  res.writeHead(200, {
    'Content-Type': CONTENT_TYPES[extname(path)] ?? 'application/octet-stream',
    'Content-Length': body.length,
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(body);
  return true;
}
