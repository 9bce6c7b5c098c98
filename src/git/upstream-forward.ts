/**
 * Forwarding a request to the upstream unchanged (pushes, LFS, dumb HTTP, and upload-pack requests
 * the mirror cannot answer): the same path on the upstream host, end-to-end headers only, no
 * redirects followed, no content decoding. The caller's own Authorization goes along; the server's
 * configured credentials are never added here.
 */
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CachewError } from '../util/errors.js';
import { byteLimit } from '../util/byte-limit.js';
import { transportError } from './upstream-refs.js';

/** Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus Host. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

/** Headers minus hop-by-hop ones (and those the Connection header names), in either direction. */
export function endToEndHeaders(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const connectionListed = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || connectionListed.has(name)) continue;
    out[name] = value;
  }
  return out;
}

export interface ForwardRequest {
  /** The upstream URL: the repository's upstream URL, the action and the query. */
  url: URL;
  /** The configured upstream name, for error messages. */
  host: string;
  method: string;
  headers: http.OutgoingHttpHeaders;
  /** The request body (none for GET and HEAD). */
  body?: Readable;
  /** A body longer than this fails with PayloadTooLargeError (413). */
  maxBodyBytes: number;
  signal: AbortSignal;
}

/**
 * Sends the request and resolves with upstream's response (any status) once its headers arrived; the
 * caller streams the body back. An unreachable upstream or a reply that is not HTTP is an
 * UpstreamError saying which.
 */
export async function forwardToUpstream(request: ForwardRequest): Promise<http.IncomingMessage> {
  const { url, host, method, headers, body, signal } = request;
  const client = url.protocol === 'https:' ? https : http;
  const upstreamReq = client.request(url, { method, headers, signal });
  const response = new Promise<http.IncomingMessage>((resolve, reject) => {
    upstreamReq.once('response', resolve);
    upstreamReq.once('error', reject);
  });
  // Attach the rejection handler now: a failed request body must not surface as unhandled.
  response.catch(() => {});
  try {
    if (body) await pipeline(body, byteLimit(request.maxBodyBytes), upstreamReq);
    else upstreamReq.end();
  } catch (err) {
    upstreamReq.destroy();
    if (signal.aborted || err instanceof CachewError) throw err;
    throw transportError(err, host, 'sending the request');
  }
  try {
    return await response;
  } catch (err) {
    if (signal.aborted) throw err;
    // A reply that is not HTTP is a bad reply, not an unreachable host: say which.
    throw transportError(err, host, 'forwarding');
  }
}
