import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Settings } from '../config/schema.js';
import { ConfigError } from '../config/load.js';

/** Node's header timeout is 60 s; a slowloris needs far less to hold a socket (TESTPLAN A4). */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;
/** How often Node checks the two timeouts above; its 30 s default would let a slowloris hold a socket for up to 40 s. */
export const TIMEOUT_CHECK_INTERVAL_MS = 1000;

export type HttpListener = Server | Http2SecureServer;

export interface Listener {
  readonly server: HttpListener;
  readonly tls: boolean;
  /** Re-reads --tls-cert / --tls-key (SIGHUP); connections keep their old certificate. */
  reloadTls(): void;
}

/**
 * Plain HTTP/1.1, or with --tls-cert/--tls-key one TLS listener that speaks
 * HTTP/2 (so browsers are not limited to 6 SSE streams per origin) and
 * HTTP/1.1 (for WebSocket upgrades and old clients), chosen by ALPN.
 */
export function createListener(
  settings: Settings,
  onRequest: (req: IncomingMessage, res: ServerResponse) => void,
  onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void,
): Listener {
  const certPath = settings['tls-cert'];
  const keyPath = settings['tls-key'];
  let server: HttpListener;
  let reloadTls = () => {};
  if (certPath !== undefined && keyPath !== undefined) {
    const secure = createSecureServer({
      ...readTlsFiles(certPath, keyPath),
      allowHTTP1: true,
      maxSessionMemory: 10,
      settings: { maxHeaderListSize: settings['max-header-size'] },
      maxHeaderListPairs: settings['max-headers'],
    });
    // HTTP/1.1 over TLS (WSS upgrades, old clients) is parsed by node:http's connection listener,
    // which reads its limits from these properties; without them it keeps Node's defaults (60 s slowloris window).
    Object.assign(secure, {
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
      maxHeaderSize: settings['max-header-size'],
      maxHeadersCount: settings['max-headers'],
    });
    secure.on('request', onRequest as never);
    reloadTls = () => secure.setSecureContext(readTlsFiles(certPath, keyPath));
    server = secure;
  } else {
    const plain = createServer(
      {
        headersTimeout: HEADERS_TIMEOUT_MS,
        requestTimeout: REQUEST_TIMEOUT_MS,
        connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
        maxHeaderSize: settings['max-header-size'],
      },
      onRequest,
    );
    plain.maxHeadersCount = settings['max-headers'];
    server = plain;
  }
  server.on('upgrade', onUpgrade);
  server.on('clientError' as never, (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable) return void socket.destroy();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
  });
  return { server, tls: certPath !== undefined, reloadTls };
}

function readTlsFiles(certPath: string, keyPath: string): { cert: Buffer; key: Buffer } {
  try {
    return { cert: readFileSync(certPath), key: readFileSync(keyPath) };
  } catch (err) {
    throw new ConfigError('tls-cert', `cannot read TLS files: ${(err as Error).message}`);
  }
}
