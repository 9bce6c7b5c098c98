/**
 * Helpers over Cache.create: stream a source into a writer with exactly one of commit()/abort(), and
 * the content-addressed blob store (objects keyed by their own sha256).
 */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Cache, CreateOptions, ObjectMeta } from './cache.js';
import { AlreadyExistsError, BadRequestError, NotFoundError } from '../util/errors.js';
import { isSha256Hex } from '../protocol/etag.js';

/**
 * Streams `source` into `key` and commits. On any failure (source error, abort, precondition) the
 * writer is aborted, so nothing is published, and the error is rethrown.
 */
export async function writeStream(
  cache: Cache,
  key: string,
  source: Readable | Iterable<Buffer | string> | AsyncIterable<Buffer | string>,
  options: CreateOptions = {},
): Promise<ObjectMeta> {
  const writer = await cache.create(key, options);
  try {
    await pipeline(source, writer.stream, { signal: options.signal });
    return await writer.commit();
  } catch (err) {
    await writer.abort(err);
    throw err;
  }
}

/** `blobs/sha256/<hex>` under an optional prefix (SPEC §6 key layout). */
export function blobKey(sha256Hex: string): string {
  if (!isSha256Hex(sha256Hex)) throw new BadRequestError(`not a sha256 digest: ${sha256Hex}`);
  return `blobs/sha256/${sha256Hex}`;
}

/** Where a blob's bytes come from: a stream, or a function opening one (so a write can be retried). */
export type BlobSource = Readable | (() => Readable);

/** The outcome of {@link putBlob}. */
export interface PutBlobResult {
  meta: ObjectMeta;
  /** Whether this call published the blob, i.e. whether nobody else can be relying on it yet. */
  created: boolean;
}

/**
 * The one blob writer: stores bytes under their sha256 (create-if-absent, digest verified while
 * writing). If the blob is already present the source is discarded and the existing object returned:
 * identical keys mean identical bytes, so the first writer winning is harmless. A caller that loses a
 * later race may delete only a blob it `created`.
 *
 * If the existing blob vanishes between the refused write and the stat (retention on another
 * replica), a source given as a function is written once more; a stream cannot be replayed, so that
 * is a NotFoundError.
 */
export async function putBlob(
  cache: Cache,
  sha256Hex: string,
  source: BlobSource,
  options: Omit<CreateOptions, 'ifNoneMatch' | 'ifMatch' | 'expectedSha256'> = {},
): Promise<PutBlobResult> {
  const key = blobKey(sha256Hex);
  const reopen = typeof source === 'function' ? source : undefined;
  const write = (body: Readable): Promise<ObjectMeta> =>
    writeStream(cache, key, body, { ...options, ifNoneMatch: '*', expectedSha256: sha256Hex });
  const body = reopen ? reopen() : (source as Readable);
  try {
    return { meta: await write(body), created: true };
  } catch (err) {
    body.destroy();
    if (!(err instanceof AlreadyExistsError)) throw err;
    const existing = await cache.stat(key, options.signal);
    if (existing) return { meta: existing, created: false };
    if (!reopen) throw new NotFoundError(`blob ${sha256Hex} vanished after a concurrent write`, { cause: err });
    return { meta: await write(reopen()), created: true };
  }
}
