/**
 * Writing responses: the one place that maps error codes to HTTP statuses, and the streaming of cache
 * objects with correct 200/206/304 headers. Bodies are piped with backpressure and abandoned (not
 * buffered) when the client goes away.
 */
import { finished, pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { RequestContext } from './context.js';
import {
  CachewError,
  InsufficientStorageError,
  RangeNotSatisfiableError,
  UnauthorizedError,
  UnavailableError,
  isNoSpace,
  type ErrorCode,
} from '../util/errors.js';
import { formatContentRange, rangeLength, type ResolvedRange } from '../protocol/range.js';
import { isDirectBody } from '../util/direct-body.js';

/** What sendObject needs of a read of a stored object (storage's open result fits it). */
export interface ObjectReply {
  /** 200 full body, 206 `range` only, 304 not modified. */
  status: 200 | 206 | 304;
  range?: ResolvedRange;
  meta: { size: number };
  /** Absent for 304 and HEAD; destroyed here when not sent. */
  body?: Readable;
}

const STATUS_BY_CODE: Record<ErrorCode, number> = {
  internal: 500,
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  already_exists: 409,
  precondition_failed: 412,
  payload_too_large: 413,
  range_not_satisfiable: 416,
  digest_mismatch: 502,
  aborted: 499,
  timeout: 504,
  unavailable: 503,
  insufficient_storage: 507,
  unprocessable: 422,
  upstream: 502,
  git_command: 502,
  config: 500,
};

export function statusForError(err: unknown): number {
  return err instanceof CachewError ? STATUS_BY_CODE[err.code] : 500;
}

/**
 * The error as the client should see it: a full disk anywhere in the cause chain (a spool write, a
 * git fetch, a snapshot temp file) is server trouble, whatever layer wrapped it on the way up.
 */
export function publicError(err: unknown): unknown {
  if (err instanceof InsufficientStorageError || !isNoSpace(err)) return err;
  return new InsufficientStorageError(undefined, undefined, { cause: err });
}

/** Sends a plain-text one-line error (or tears the socket down if the headers are already out). */
export function sendError(ctx: RequestContext, raw: unknown): void {
  const err = publicError(raw);
  const status = statusForError(err);
  const { res } = ctx;
  if (status >= 500 && status !== 503) ctx.log.error({ err, route: ctx.route }, 'request failed');
  else ctx.log.debug({ err: (err as Error)?.message, status }, 'request refused');
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  if (status === 499) {
    res.destroy();
    return;
  }
  const message = err instanceof CachewError ? err.message : 'internal error';
  const headers: Record<string, string | number> = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' };
  if (err instanceof RangeNotSatisfiableError) headers['content-range'] = formatContentRange(undefined, err.size);
  if (err instanceof UnavailableError || err instanceof InsufficientStorageError) headers['retry-after'] = err.retryAfterSeconds;
  if (err instanceof UnauthorizedError && err.challenge) headers['www-authenticate'] = err.challenge;
  sendText(ctx, status, message, headers);
}

export function sendText(ctx: RequestContext, status: number, text: string, headers: Record<string, string | number> = {}): void {
  const body = Buffer.from(`${text.split('\n')[0]}\n`, 'utf8');
  ctx.res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers, 'content-length': body.length });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
}

export function sendJson(ctx: RequestContext, status: number, value: unknown, headers: Record<string, string | number> = {}): void {
  const body = Buffer.from(`${JSON.stringify(value)}\n`, 'utf8');
  ctx.res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers, 'content-length': body.length });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
}

/**
 * Pipes a body into the response; resolves with the byte count when done, rejects on error, destroys
 * the body on abort. A body that can write itself (util/direct-body.ts, e.g. the disk tier's file
 * reader) does so, skipping the stream layers on the hot path.
 */
export async function streamBody(ctx: RequestContext, body: Readable): Promise<number> {
  if (isDirectBody(body)) {
    const sent = await body.writeTo(ctx.res, ctx.signal);
    ctx.res.end();
    await finished(ctx.res);
    return sent;
  }
  let bytes = 0;
  body.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
  });
  await pipeline(body, ctx.res, { signal: ctx.signal });
  return bytes;
}

/**
 * Writes a cache object result: 304 (validators only), 206 with Content-Range, or 200. Callers add
 * their own headers (ETag, digest, cache-control...) in `headers`.
 */
export async function sendObject(ctx: RequestContext, result: ObjectReply, headers: Record<string, string>): Promise<number> {
  const { res } = ctx;
  if (result.status === 304) {
    result.body?.destroy();
    const { etag, 'cache-control': cacheControl, 'last-modified': lastModified, 'content-location': location } = headers;
    res.writeHead(304, stripUndefined({ etag, 'cache-control': cacheControl, 'last-modified': lastModified, 'content-location': location }));
    res.end();
    return 0;
  }
  const length = result.range ? rangeLength(result.range) : result.meta.size;
  const out: Record<string, string | number> = { ...headers, 'content-length': length };
  if (result.status === 206 && result.range) out['content-range'] = formatContentRange(result.range, result.meta.size);
  res.writeHead(result.status, out);
  if (ctx.req.method === 'HEAD' || !result.body) {
    result.body?.destroy();
    res.end();
    return 0;
  }
  return streamBody(ctx, result.body);
}

function stripUndefined(record: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined)) as Record<string, string>;
}
