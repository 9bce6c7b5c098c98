/**
 * Resumable reads of one immutable snapshot: an exact byte range (`rangePieces`) or the tail of the
 * whole body when the server will not honour ranges (`wholePieces`). A dropped, stalled or short
 * response is retried with exponential backoff and resumes from the first byte not yet yielded, so a
 * consumer sees every byte exactly once, in order. Every request carries `If-Match` and `If-Range`
 * with the snapshot's ETag: bytes of two different archives can never be spliced.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseStrongEtag } from '../protocol/etag.js';
import { formatConditions, type Conditions } from '../protocol/conditions.js';
import { parseContentRange } from '../protocol/range.js';
import { Headers } from '../protocol/headers.js';
import { CachewError, TimeoutError, abortReason } from '../util/errors.js';
import { DownloadFailedError, ProtocolError, RangeIgnoredError, SnapshotGoneError } from './errors.js';
import { discard, header, readBody, type HttpClient, type HttpResponse } from './http.js';

/** The immutable archive being downloaded. */
export interface SnapshotSource {
  /** Absolute immutable URL (or the stable URL when the server sent no Content-Location). */
  url: URL;
  /** sha256 hex of the whole archive (the ETag's opaque value). */
  etag: string;
  /** Total size in bytes. */
  size: number;
}

/** Counters shared by all reads of one download; handy in tests and for `--json` diagnostics. */
export interface FetchStats {
  requests: number;
  retries: number;
}

export interface FetchContext {
  http: HttpClient;
  source: SnapshotSource;
  /** Failed attempts allowed per range before giving up (default 5). */
  maxAttempts?: number;
  /** First backoff delay; doubles per failure (default 200 ms). */
  backoffMs?: number;
  signal?: AbortSignal;
  stats?: FetchStats;
}

const DEFAULT_ATTEMPTS = 5;
const DEFAULT_BACKOFF_MS = 200;

/**
 * Yields exactly the bytes `[start, end]` (inclusive) of the snapshot. `first`, when given, is a
 * response already answering a Range request that starts at `start`; it is used for the first attempt.
 */
export async function* rangePieces(
  ctx: FetchContext,
  start: number,
  end: number,
  first?: HttpResponse,
): AsyncGenerator<Buffer, void, undefined> {
  const { source } = ctx;
  let offset = start;
  let failures = 0;
  let response = first;
  while (offset <= end) {
    try {
      if (!response) {
        response = await request(ctx, { kind: 'bounded', start: offset, end });
      }
      checkRangeResponse(ctx, response, offset);
      for await (const piece of readBody(response, ctx.http.idleTimeoutMs, ctx.signal)) {
        const take = Math.min(piece.length, end + 1 - offset);
        offset += take;
        yield take === piece.length ? piece : piece.subarray(0, take);
        if (offset > end) break;
      }
      response = undefined;
      if (offset <= end) throw new ProtocolError(`short response from ${source.url.href} at byte ${offset}`, 206);
    } catch (err) {
      if (response) discard(response);
      response = undefined;
      failures = await backoffOrThrow(ctx, err, failures);
    }
  }
}

/**
 * Yields the whole snapshot from byte `from` on, reading full (200) bodies and skipping what was
 * already delivered. The fallback for servers that ignore Range; `first` may be a 200 already in hand.
 */
export async function* wholePieces(
  ctx: FetchContext,
  from: number,
  first?: HttpResponse,
): AsyncGenerator<Buffer, void, undefined> {
  const { source } = ctx;
  let offset = from;
  let failures = 0;
  let response = first;
  while (offset < source.size) {
    try {
      if (!response) response = await request(ctx);
      checkWholeResponse(ctx, response);
      let position = 0; // position of the next body byte within the archive
      for await (const piece of readBody(response, ctx.http.idleTimeoutMs, ctx.signal)) {
        const pieceEnd = position + piece.length;
        if (pieceEnd > offset) {
          const slice = piece.subarray(Math.max(0, offset - position), Math.min(piece.length, source.size - position));
          offset += slice.length;
          if (slice.length > 0) yield slice;
        }
        position = pieceEnd;
        if (offset >= source.size) break;
      }
      response = undefined;
      if (offset < source.size) throw new ProtocolError(`short response from ${source.url.href} at byte ${offset}`, 200);
    } catch (err) {
      if (response) discard(response);
      response = undefined;
      failures = await backoffOrThrow(ctx, err, failures);
    }
  }
}

/** GETs the snapshot (or `range` of it), conditional on its ETag so two archives are never spliced. */
async function request(ctx: FetchContext, range?: Conditions['range']): Promise<HttpResponse> {
  if (ctx.stats) ctx.stats.requests++;
  const etag = { tag: ctx.source.etag, weak: false };
  const conditions: Conditions = range ? { ifMatch: [etag], ifRange: etag, range } : { ifMatch: [etag] };
  return ctx.http.get(ctx.source.url, formatConditions(conditions), ctx.signal);
}

function checkCommon(ctx: FetchContext, response: HttpResponse): void {
  const { status } = response;
  if (status === 404 || status === 410 || status === 412) throw new SnapshotGoneError(ctx.source.url.href, status);
  if (status === 200 || status === 206) {
    const etag = parseStrongEtag(header(response, Headers.etag));
    if (etag !== undefined && etag !== ctx.source.etag) throw new SnapshotGoneError(ctx.source.url.href, status);
    return;
  }
  throw new ProtocolError(`unexpected HTTP ${status} from ${ctx.source.url.href}`, status);
}

function checkRangeResponse(ctx: FetchContext, response: HttpResponse, offset: number): void {
  checkCommon(ctx, response);
  if (response.status === 200) throw new RangeIgnoredError(ctx.source.url.href);
  const range = parseContentRange(header(response, 'content-range'));
  if (!range || range.start !== offset || range.size !== ctx.source.size) {
    throw new ProtocolError(`bad Content-Range from ${ctx.source.url.href}: ${header(response, 'content-range')}`, 502);
  }
}

function checkWholeResponse(ctx: FetchContext, response: HttpResponse): void {
  checkCommon(ctx, response);
  const length = header(response, 'content-length');
  if (response.status !== 200 || (length !== undefined && Number(length) !== ctx.source.size)) {
    throw new ProtocolError(`unexpected full response from ${ctx.source.url.href} (HTTP ${response.status})`, 502);
  }
}

/** Whether a failed attempt is worth repeating: transport trouble and server-side 5xx/429. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof TimeoutError) return true;
  if (err instanceof ProtocolError) return err.status === undefined || err.status >= 500 || err.status === 429 || err.status === 206 || err.status === 200;
  if (err instanceof CachewError) return false;
  // Socket-level failures (ECONNRESET, EPIPE, "aborted", ECONNREFUSED) surface as plain Errors.
  return err instanceof Error && err.name !== 'AbortError';
}

/** Sleeps before the next attempt, or rethrows when the error is final; returns the new failure count. */
async function backoffOrThrow(ctx: FetchContext, err: unknown, failures: number): Promise<number> {
  if (ctx.signal?.aborted) throw abortReason(ctx.signal);
  const maxAttempts = ctx.maxAttempts ?? DEFAULT_ATTEMPTS;
  if (!isRetryable(err)) throw err;
  if (failures + 1 >= maxAttempts) throw new DownloadFailedError(ctx.source.url.href, failures + 1, err);
  if (ctx.stats) ctx.stats.retries++;
  const delay = (ctx.backoffMs ?? DEFAULT_BACKOFF_MS) * 2 ** failures;
  try {
    await sleep(delay, undefined, { signal: ctx.signal });
  } catch {
    throw ctx.signal ? abortReason(ctx.signal) : err;
  }
  return failures + 1;
}
