/**
 * Snapshot routes (SPEC §3–4): the stable URL, the immutable commit-addressed URL and the delta
 * bundle. All three serve content-addressed blobs through the tiered cache, so a Range is answered by
 * whichever tier holds the bytes, and the conditionals are evaluated by the cache in RFC 9110 order.
 */
import type { RepoHandler, RepoTarget, RequestContext } from '../context.js';
import { sendObject, sendText } from '../reply.js';
import { CachewError, NotFoundError } from '../../util/errors.js';
import { bundlePath, immutableSnapshotPath } from '../../protocol/routes.js';
import { formatEtag, sha256HexToReprDigest } from '../../protocol/etag.js';
import { evaluateConditions, formatHttpDate, parseConditions } from '../../protocol/conditions.js';
import {
  BUNDLE_CONTENT_TYPE,
  Headers,
  IMMUTABLE_CACHE_CONTROL,
  SNAPSHOT_CONTENT_TYPE,
  STABLE_CACHE_CONTROL,
} from '../../protocol/headers.js';
import type { SnapshotService } from '../../git/snapshot/service.js';
import type { SnapshotReader, StoredBlob } from '../../storage/reader.js';
import type { Metrics } from '../../util/metrics.js';

/**
 * Where a GET of an immutable snapshot may be sent instead of being served here: a short-lived URL of
 * the blob `digest` in S3, or undefined when there is none (the bytes are then served by cachewd).
 */
export type BlobRedirect = (digest: string, signal: AbortSignal) => Promise<string | undefined>;

export interface SnapshotRouteDeps {
  /** Resolves the stable URL (mirror freshness, generation on a miss) and makes delta bundles. */
  service: Pick<SnapshotService, 'current' | 'bundle'>;
  /** Reads records and the bytes they name (the immutable URL needs nothing else). */
  reader: SnapshotReader;
  metrics?: Metrics;
  /** `--s3-redirect`: GETs of immutable URLs answer 307 to this location when it gives one. */
  redirect?: BlobRedirect;
}

export function createSnapshotRoutes(deps: SnapshotRouteDeps): RepoHandler {
  return async (ctx, target) => {
    const method = ctx.req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') {
      sendText(ctx, 405, 'method not allowed', { allow: 'GET, HEAD' });
      return;
    }
    const { route } = target;
    if (route.kind === 'snapshot.stable') return serveStable(deps, ctx, target);
    if (route.kind === 'snapshot.bundle') return serveBundle(deps, ctx, target, route.base);
    if (route.kind === 'snapshot.immutable') return serveImmutable(deps, ctx, target, route.commit);
    throw new NotFoundError('no such route');
  };
}

async function serveStable(deps: SnapshotRouteDeps, ctx: RequestContext, target: RepoTarget): Promise<void> {
  const { record, aheadHead } = await deps.service.current(target.host, target.canonicalRepo, ctx.signal);
  const created = new Date(record.created);
  const headers: Record<string, string> = {
    ...snapshotHeaders(record.digest, record.commit, created),
    [Headers.contentLocation]: immutableSnapshotPath(target.host, target.repo, record.commit),
    'cache-control': STABLE_CACHE_CONTROL,
  };
  if (aheadHead) headers[Headers.bundleUrl] = bundlePath(target.host, target.repo, record.commit);
  await serveBlob(deps, ctx, record, headers, 'snapshot');
}

async function serveImmutable(deps: SnapshotRouteDeps, ctx: RequestContext, target: RepoTarget, commit: string): Promise<void> {
  const record = await deps.reader.servedRecord(target.host, target.canonicalRepo, commit, ctx.signal);
  if (!record) throw new NotFoundError(`no snapshot for commit ${commit}`);
  const created = new Date(record.created);
  const headers = {
    ...snapshotHeaders(record.digest, record.commit, created),
    'cache-control': IMMUTABLE_CACHE_CONTROL,
  };
  if (deps.redirect && ctx.req.method === 'GET' && (await redirectToBlob(deps.redirect, ctx, record, created, headers))) return;
  await serveBlob(deps, ctx, record, headers, 'snapshot');
}

/**
 * Answers 307 to the blob's presigned S3 URL when the request's preconditions pass (a 304 or 412 is
 * still ours to give) and S3 has the blob. Range and conditionals are not forwarded: the client sends
 * its Range to the new location itself. Returns false when the bytes must be served here.
 */
async function redirectToBlob(
  redirect: BlobRedirect,
  ctx: RequestContext,
  record: { digest: string; size: number },
  created: Date,
  headers: Record<string, string>,
): Promise<boolean> {
  // Only the preconditions: the Range (and its If-Range) travel with the client to the new location.
  const { range: _range, ifRange: _ifRange, ...preconditions } = parseConditions(ctx.req.headers, 'GET');
  const outcome = evaluateConditions({ etag: record.digest, lastModified: created, size: record.size }, preconditions);
  if (outcome.status !== 200) return false; // serveBlob answers the 304 or 412 with the validators
  const location = await redirect(record.digest, ctx.signal);
  if (location === undefined) return false;
  // The location expires: no cache may keep this answer, only the bytes behind it are immutable. The
  // empty body has no content type of its own.
  const { 'cache-control': _immutable, 'content-type': _type, ...validators } = headers;
  ctx.res.writeHead(307, { ...validators, location, 'cache-control': 'no-store', 'content-length': 0 });
  ctx.res.end();
  return true;
}

async function serveBundle(deps: SnapshotRouteDeps, ctx: RequestContext, target: RepoTarget, base: string): Promise<void> {
  const bundle = await deps.service.bundle(target.host, target.canonicalRepo, base, ctx.signal);
  if (!bundle) {
    ctx.res.writeHead(204, { 'cache-control': STABLE_CACHE_CONTROL });
    ctx.res.end();
    return;
  }
  const created = new Date(bundle.created);
  const headers = {
    etag: formatEtag(bundle.digest),
    [Headers.reprDigest]: sha256HexToReprDigest(bundle.digest),
    [Headers.snapshotCommit]: bundle.head,
    'content-type': BUNDLE_CONTENT_TYPE,
    'last-modified': formatHttpDate(created),
    'cache-control': STABLE_CACHE_CONTROL,
  };
  await serveBlob(deps, ctx, bundle, headers, 'bundle');
}

function snapshotHeaders(digest: string, commit: string, created: Date): Record<string, string> {
  return {
    etag: formatEtag(digest),
    [Headers.reprDigest]: sha256HexToReprDigest(digest),
    [Headers.snapshotCommit]: commit,
    'content-type': SNAPSHOT_CONTENT_TYPE,
    'last-modified': formatHttpDate(created),
  };
}

async function serveBlob(
  deps: SnapshotRouteDeps,
  ctx: RequestContext,
  stored: StoredBlob,
  headers: Record<string, string>,
  kind: 'snapshot' | 'bundle',
): Promise<void> {
  const method = ctx.req.method ?? 'GET';
  let result;
  try {
    result = await deps.reader.open(stored, { ...parseConditions(ctx.req.headers, method), headOnly: method === 'HEAD', signal: ctx.signal });
  } catch (err) {
    // 412 and 416 still carry the validators, so a client can tell which object it was.
    if (err instanceof CachewError && (err.code === 'precondition_failed' || err.code === 'range_not_satisfiable')) {
      for (const [name, value] of Object.entries(headers)) ctx.res.setHeader(name, value);
      if (err.code === 'range_not_satisfiable') ctx.res.setHeader('accept-ranges', 'bytes');
    }
    throw err;
  }
  if (result.status !== 304) headers['accept-ranges'] = 'bytes';
  const bytes = await sendObject(ctx, result, headers);
  deps.metrics?.bytesServed.inc({ kind }, bytes);
}
