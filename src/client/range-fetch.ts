/**
 * Resumable reads of one immutable snapshot: an exact byte range (`rangePieces`) or the tail of the
 * whole body when the server will not honour ranges (`wholePieces`). A dropped, stalled or short
 * response is retried with exponential backoff and resumes from the first byte not yet yielded, so a
 * consumer sees every byte exactly once, in order. Every request to the server carries `If-Match` and
 * `If-Range` with the snapshot's ETag: bytes of two different archives can never be spliced.
 *
 * A server may answer with a redirect (`--s3-redirect`: 307 to a presigned S3 URL of the content-
 * addressed blob). The location is then used for every further range of this download, with only the
 * Range header (our ETag means nothing to S3, whose URL names exactly one blob), until it answers 403
 * (expired), when the server is asked again. The caller still verifies the digest of all the bytes.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseStrongEtag } from '../protocol/etag.js';
import { formatConditions, type Conditions } from '../protocol/conditions.js';
import { parseContentRange } from '../protocol/range.js';
import { Headers } from '../protocol/headers.js';
import { CachewError, TimeoutError, abortReason } from '../util/errors.js';
import { DownloadFailedError, ProtocolError, RangeIgnoredError, RedirectExpiredError, SnapshotGoneError } from './errors.js';
import { discard, header, readBody, type HttpClient, type HttpResponse } from './http.js';

/** The immutable archive being downloaded. */
export interface SnapshotSource {
  /** Absolute immutable URL (or the stable URL when the server sent no Content-Location). */
  url: URL;
  /** sha256 hex of the whole archive (the ETag's opaque value). */
  etag: string;
  /** Total size in bytes. */
  size: number;
  /** Where the server last redirected GETs of `url`; shared by every range of the download. */
  redirect?: URL;
}

/** Counters shared by all reads of one download; handy in tests and for `--json` diagnostics. */
export interface FetchStats {
  requests: number;
  retries: number;
  /** Redirects followed (each one a location asked of the server). */
  redirects?: number;
  /** Redirect targets that refused us (expired) and were asked for again. */
  expiredRedirects?: number;
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

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Responses that came from a redirect target rather than from the server itself. */
const redirected = new WeakSet<HttpResponse>();

function fromTarget(response: HttpResponse): HttpResponse {
  redirected.add(response);
  return response;
}

/**
 * GETs the snapshot (or `range` of it). From the server, conditional on its ETag so two archives are
 * never spliced; from a redirect target, with the Range only.
 */
async function request(ctx: FetchContext, range?: Conditions['range']): Promise<HttpResponse> {
  const { source, stats } = ctx;
  if (stats) stats.requests++;
  const plain = formatConditions(range ? { range } : {});
  if (source.redirect) return fromTarget(await ctx.http.get(source.redirect, plain, ctx.signal));
  const etag = { tag: source.etag, weak: false };
  const conditions: Conditions = range ? { ifMatch: [etag], ifRange: etag, range } : { ifMatch: [etag] };
  const response = await ctx.http.get(source.url, formatConditions(conditions), ctx.signal);
  if (!REDIRECTS.has(response.status)) return response;
  discard(response);
  const target = redirectTarget(source.url, header(response, 'location'));
  if (!target) throw new ProtocolError(`unusable redirect from ${source.url.href}`, response.status);
  source.redirect = target;
  if (stats) {
    stats.requests++;
    stats.redirects = (stats.redirects ?? 0) + 1;
  }
  return fromTarget(await ctx.http.get(target, plain, ctx.signal));
}

function redirectTarget(base: URL, location: string | undefined): URL | undefined {
  if (!location) return undefined;
  try {
    const url = new URL(location, base);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url : undefined;
  } catch {
    return undefined;
  }
}

/** A redirect target without its query: presigned URLs carry a signature that has no place in logs. */
function shown(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** Checks a response from the redirect target: any 2xx carries the blob's bytes, 403 means expired. */
function checkRedirected(ctx: FetchContext, response: HttpResponse): void {
  const { status } = response;
  if (status === 403) {
    // Forget the location (unless another range already replaced it) so the next attempt asks anew.
    if (ctx.source.redirect?.href === response.url.href) ctx.source.redirect = undefined;
    if (ctx.stats) ctx.stats.expiredRedirects = (ctx.stats.expiredRedirects ?? 0) + 1;
    throw new RedirectExpiredError(shown(response.url));
  }
  if (status === 404 || status === 410) throw new SnapshotGoneError(shown(response.url), status);
  if (status !== 200 && status !== 206) throw new ProtocolError(`unexpected HTTP ${status} from ${shown(response.url)}`, status);
  // S3 reports the sha256 cachew stored with the object; anything else is not our blob.
  const sha256 = header(response, 'x-amz-meta-sha256');
  if (sha256 !== undefined && sha256 !== ctx.source.etag) throw new SnapshotGoneError(shown(response.url), status);
}

function checkCommon(ctx: FetchContext, response: HttpResponse): void {
  if (redirected.has(response)) {
    checkRedirected(ctx, response);
    return;
  }
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
  if (err instanceof TimeoutError || err instanceof RedirectExpiredError) return true;
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
