/**
 * One attempt at downloading a snapshot into a directory: resolve the stable URL (a single request
 * that also carries the first chunk), download the rest of the immutable archive in parallel, and feed
 * the bytes in order through the decompressor (zstd-decompress.ts) into safe tar extraction while
 * later chunks still download. The compressed bytes are hashed as they are delivered and must match
 * the ETag.
 *
 * This function only settles once every piece of work it started has stopped (tar exited, the last
 * file closed), so the caller can delete the directory right after a failure.
 */
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { isSha256Hex, parseStrongEtag } from '../protocol/etag.js';
import { Headers } from '../protocol/headers.js';
import { formatConditions } from '../protocol/conditions.js';
import { parseContentRange } from '../protocol/range.js';
import { isCommit, stableSnapshotPath } from '../protocol/routes.js';
import { DigestMismatchError, abortReason } from '../util/errors.js';
import { extractZstd } from './archive.js';
import { ExtractThread } from './extract-thread.js';
import { mark } from './trace.js';
import { decompressorKind } from './zstd-decompress.js';
import type { StatTable } from './stat-table.js';
import { DownloadFailedError, NoSnapshotError, ProtocolError, SecondaryError } from './errors.js';
import { discard, header, type HttpClient, type HttpResponse } from './http.js';
import { ParallelGet, type ParallelGetStats } from './parallel-get.js';
import { isRetryable, rangePieces, wholePieces, type FetchContext, type SnapshotSource } from './range-fetch.js';

export interface DownloadOptions {
  http: HttpClient;
  serverUrl: URL;
  host: string;
  repo: string;
  /** For messages: the upstream URL the user gave. */
  repoUrl: string;
  dir: string;
  concurrency: number;
  chunkSize: number;
  maxAttempts: number;
  backoffMs: number;
  signal?: AbortSignal;
  stats: ParallelGetStats;
  onBytes?: (received: number, total: number) => void;
  /**
   * Runs once the archive's `.git` is on disk while the work tree is still being extracted, with the
   * delta bundle's URL if the server advertised one (restore.ts starts the ref fetch then).
   */
  onGitDir?: (bundleUrl: URL | undefined) => void;
  /**
   * Runs once the stable URL answered with a snapshot and the first parallel requests are on their
   * way: work that blocks the thread for a while (restore.ts spawns its parked git processes) waits
   * for it, so that no request waits for that work. Given the snapshot's commit from its header.
   */
  onDownloading?: (snapshotCommit: string | undefined) => void;
}

export interface DownloadResult {
  /** From `X-Cachew-Snapshot-Commit`, when the server sent a well-formed one. */
  commit?: string;
  digest: string;
  size: number;
  /** Absolute delta-bundle URL when the server advertised one. */
  bundleUrl?: URL;
  /** The stat data of the files extraction wrote (for the index, index-stat.ts). */
  statTable?: StatTable;
  /** The index with the work tree's stat data, when the work tree is exactly the index's (index-patcher.ts). */
  patchedIndex?: Buffer;
}

const MAX_RETRY_AFTER_MS = 30_000;
/** The ramp's step never goes below this: smaller requests would cost a round trip for too few bytes. */
const MIN_RAMP_STEP = 256 * 1024;

/**
 * The download starts small and ramps up (chunk-plan.ts): the stable URL's request carries one step,
 * then the parallel chunks are 2, 3, … steps up to the chunk size, one step being chunkSize /
 * concurrency (1 MiB with the defaults). Measured through the bench's 50 MB/s-per-connection link:
 * see docs/restore.md, "Download".
 */
function rampStep(options: Pick<DownloadOptions, 'chunkSize' | 'concurrency'>): number {
  return Math.min(options.chunkSize, Math.max(MIN_RAMP_STEP, Math.floor(options.chunkSize / options.concurrency)));
}

/** Downloads, verifies and extracts the repository's current snapshot into `dir` (existing, empty). */
export async function downloadSnapshot(options: DownloadOptions): Promise<DownloadResult> {
  const stableUrl = new URL(stableSnapshotPath(options.host, options.repo), options.serverUrl);
  let result: DownloadResult | undefined;
  const report = options.onGitDir;
  // Started before the first request so that its start-up (~0.1 s) overlaps the round trip; `.git`
  // can only be complete once the stable URL's answer set `result`.
  const thread = new ExtractThread(options.dir, report && ((): void => report(result?.bundleUrl)));
  let opened: HttpResponse | undefined;
  let source: SnapshotSource;
  let firstEnd: number | undefined;
  try {
    const opening = openStable(options, stableUrl);
    opening.catch(() => undefined); // awaited right below
    // Loading libzstd's addon blocks the thread for ~6 ms (dlopen): while the request is out rather
    // than between its answer and the parallel requests, which wait for the decompressor's first pull.
    decompressorKind();
    opened = await opening;
    mark('stable-url-answered');
    ({ source, firstEnd, result } = describeSnapshot(opened, stableUrl));
  } catch (err) {
    if (opened !== undefined) discard(opened);
    await thread.stop();
    throw err;
  }
  const first = opened;

  const controller = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
  // Every in-flight request, backoff sleep and drain wait listens on it: N + a few at once is normal.
  setMaxListeners(Math.max(50, options.concurrency * 4), controller.signal, signal);
  const context: FetchContext = {
    http: options.http,
    source,
    maxAttempts: options.maxAttempts,
    backoffMs: options.backoffMs,
    signal,
    stats: options.stats,
  };

  async function* orderedBytes(): AsyncGenerator<Buffer, void, undefined> {
    if (firstEnd === undefined) {
      options.onDownloading?.(result?.commit);
      yield* wholePieces(context, 0, first);
      return;
    }
    const step = rampStep(options);
    const rest = new ParallelGet(context, {
      start: firstEnd + 1,
      chunkSize: options.chunkSize,
      concurrency: options.concurrency,
      // A quarter of the connections until the consumer starves (parallel-get.ts, Starvation).
      initialConcurrency: Math.ceil(options.concurrency / 4),
      firstChunkSize: 2 * step,
      rampStep: step,
    });
    rest.prefetch(); // the next chunks download while the first one streams into zstd
    options.onDownloading?.(result?.commit);
    try {
      yield* rangePieces(context, 0, firstEnd, first);
      yield* rest.pieces();
    } finally {
      rest.cancel();
    }
  }

  try {
    // One pull-driven chain: every byte is hashed on its way into the decompressor, whose output the
    // extraction thread checks and writes. A failure anywhere closes the whole chain.
    const extracted = await extractZstd(verifiedBytes(orderedBytes(), source, options.onBytes), options.dir, {
      signal,
      thread,
      onConsumed: (piece) => options.http.recycle(piece),
    });
    result.statTable = extracted.statTable;
    result.patchedIndex = extracted.patchedIndex;
  } finally {
    // Requests still running (prefetched ranges after a failure) stop now.
    controller.abort(new SecondaryError('stopped after another part of the restore failed'));
  }
  return result;
}

/** What the stable URL's answer says about the snapshot; ProtocolError when a header is missing or malformed. */
function describeSnapshot(
  first: HttpResponse,
  stableUrl: URL,
): { source: SnapshotSource; firstEnd: number | undefined; result: DownloadResult } {
  const etag = parseStrongEtag(header(first, Headers.etag));
  if (!etag || !isSha256Hex(etag)) throw new ProtocolError(`snapshot response without a sha256 ETag from ${stableUrl.href}`);
  let size: number;
  let firstEnd: number | undefined;
  if (first.status === 206) {
    const range = parseContentRange(header(first, 'content-range'));
    if (!range || range.start !== 0) throw new ProtocolError(`bad Content-Range from ${stableUrl.href}`);
    size = range.size;
    firstEnd = range.end;
  } else {
    size = Number(header(first, 'content-length'));
    if (!Number.isSafeInteger(size)) throw new ProtocolError(`snapshot response without Content-Length from ${stableUrl.href}`);
  }
  const location = header(first, Headers.contentLocation);
  const bundle = header(first, Headers.bundleUrl);
  const commit = header(first, Headers.snapshotCommit);
  return {
    source: { url: location ? new URL(location, stableUrl) : stableUrl, etag, size },
    firstEnd,
    result: {
      commit: commit && isCommit(commit) ? commit : undefined,
      digest: etag,
      size,
      bundleUrl: bundle ? new URL(bundle, stableUrl) : undefined,
    },
  };
}

/**
 * Passes `pieces` through while hashing them; after the last one checks the byte count and that the
 * sha256 is the ETag, so the consumer sees the end of the stream only for the archive it asked for.
 */
async function* verifiedBytes(
  pieces: AsyncIterable<Buffer>,
  source: SnapshotSource,
  onBytes?: (received: number, total: number) => void,
): AsyncGenerator<Buffer, void, undefined> {
  const hash = createHash('sha256');
  let received = 0;
  for await (const piece of pieces) {
    hash.update(piece);
    received += piece.length;
    onBytes?.(received, source.size);
    yield piece;
  }
  if (received !== source.size) throw new ProtocolError(`received ${received} of ${source.size} bytes`);
  mark('last-byte-hashed');
  const digest = hash.digest('hex');
  if (digest !== source.etag) throw new DigestMismatchError(source.etag, digest);
}

/**
 * GETs the stable URL with the first chunk's Range. Retries transport errors and 5xx (honouring
 * Retry-After, e.g. a mirror that is still cloning); 404 means the server has no snapshot.
 */
async function openStable(options: DownloadOptions, stableUrl: URL): Promise<HttpResponse> {
  for (let failures = 0; ; failures++) {
    let delay = options.backoffMs * 2 ** failures;
    try {
      const range = { kind: 'bounded', start: 0, end: rampStep(options) - 1 } as const;
      const response = await options.http.get(stableUrl, formatConditions({ range }), options.signal);
      if (response.status === 200 || response.status === 206) return response;
      discard(response);
      if (response.status === 404) throw new NoSnapshotError(options.repoUrl);
      // The repository cannot be snapshotted at all (e.g. unsafe tree entries): final, not retried.
      if (response.status === 422) throw new ProtocolError(`the server cannot snapshot ${options.repoUrl} (HTTP 422)`, 422);
      const retryAfter = Number(header(response, Headers.retryAfter));
      if (Number.isFinite(retryAfter) && retryAfter > 0) delay = Math.max(delay, Math.min(retryAfter * 1000, MAX_RETRY_AFTER_MS));
      throw new ProtocolError(`HTTP ${response.status} from ${stableUrl.href}`, response.status);
    } catch (err) {
      if (options.signal?.aborted) throw abortReason(options.signal);
      if (!isRetryable(err)) throw err;
      if (failures + 1 >= options.maxAttempts) throw new DownloadFailedError(stableUrl.href, failures + 1, err);
      await sleep(delay, undefined, { signal: options.signal }).catch(() => undefined);
    }
  }
}
