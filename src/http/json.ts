import type { IncomingMessage, ServerResponse } from 'node:http';
import { HeraldError } from '../core/errors.js';
import { jsonNestsDeeperThan, MAX_JSON_DEPTH } from '../protocol/json-depth.js';

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  sendJsonText(res, status, JSON.stringify(body));
}

export function sendJsonText(res: ServerResponse, status: number, text: string): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** SPEC §2: {"error":{"code","message"}} with the status of the code. */
export function sendError(res: ServerResponse, err: HeraldError, headers: Record<string, string> = {}): void {
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  sendJson(res, err.httpStatus, { error: { code: err.code, message: err.message } });
}

/**
 * Reads a JSON request body of at most `limit` bytes. Refuses a non-JSON
 * content type (415), an oversized body as soon as it is known (413), and
 * unparseable JSON (400).
 */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type)) {
    throw new HeraldError('unsupported_media_type', 'Content-Type must be application/json');
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw new HeraldError('too_large', `body exceeds ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HeraldError('too_large', `body exceeds ${limit} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new HeraldError('bad_request', 'body is not valid JSON');
  }
  if (jsonNestsDeeperThan(text)) throw new HeraldError('bad_request', `body nests deeper than ${MAX_JSON_DEPTH} levels`);
  return body;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
