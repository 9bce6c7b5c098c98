/**
 * Ranged reads from S3. A small range is one ranged GET streamed through; a large one is split into
 * chunks fetched `parallelism` at a time and emitted strictly in order, so memory stays bounded by
 * about parallelism × chunk size however large the object is. Every GET carries `If-Match` with the S3
 * ETag seen by the HEAD, so a range can never mix bytes of two versions of a key.
 */
import { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { PreconditionFailedError, abortReason } from '../util/errors.js';
import { S3UnavailableError, isConditionFailure, isNotFound, toCachewError } from './s3-errors.js';

export interface RangeSource {
  client: S3Client;
  bucket: string;
  objectKey: string;
  /** S3's own ETag of the version whose metadata was evaluated. */
  s3Etag: string;
}

export interface RangeReadOptions {
  /** Ranges longer than this are fetched in parallel chunks. */
  parallelThresholdBytes: number;
  chunkBytes: number;
  parallelism: number;
  signal?: AbortSignal;
}

function mapGetError(source: RangeSource, err: unknown, signal?: AbortSignal): Error {
  // The object changed or vanished between HEAD and GET: the caller's metadata is stale.
  if (isConditionFailure(err) || isNotFound(err)) {
    return new PreconditionFailedError(`s3 object ${source.objectKey} changed while being read`, { cause: err });
  }
  return toCachewError('get', source.objectKey, err, signal);
}

async function getRange(source: RangeSource, start: number, end: number, signal: AbortSignal | undefined): Promise<Readable> {
  try {
    const response = await source.client.send(
      new GetObjectCommand({ Bucket: source.bucket, Key: source.objectKey, Range: `bytes=${start}-${end}`, IfMatch: source.s3Etag }),
      { abortSignal: signal },
    );
    if (!(response.Body instanceof Readable)) throw new S3UnavailableError('get', source.objectKey, 'no response stream');
    return response.Body;
  } catch (err) {
    throw mapGetError(source, err, signal);
  }
}

async function getChunk(source: RangeSource, start: number, end: number, signal: AbortSignal): Promise<Buffer> {
  const body = await getRange(source, start, end, signal);
  const parts: Buffer[] = [];
  let length = 0;
  try {
    for await (const part of body) {
      parts.push(part as Buffer);
      length += (part as Buffer).length;
    }
  } catch (err) {
    throw mapGetError(source, err, signal);
  }
  const expected = end - start + 1;
  if (length !== expected) {
    throw new S3UnavailableError('get', source.objectKey, `${length} bytes for a ${expected}-byte range`);
  }
  return Buffer.concat(parts, length);
}

async function* inOrder(
  source: RangeSource,
  start: number,
  end: number,
  options: RangeReadOptions,
  controller: AbortController,
): AsyncGenerator<Buffer> {
  const window: Array<Promise<Buffer>> = [];
  let next = start;
  const refill = (): void => {
    while (window.length < options.parallelism && next <= end) {
      const chunkEnd = Math.min(end, next + options.chunkBytes - 1);
      const pending = getChunk(source, next, chunkEnd, controller.signal);
      // Rejections are observed when the chunk's turn comes; until then they must not be "unhandled".
      pending.catch(() => undefined);
      window.push(pending);
      next = chunkEnd + 1;
    }
  };
  try {
    refill();
    while (window.length > 0) {
      const chunk = await (window.shift() as Promise<Buffer>);
      refill();
      yield chunk;
    }
  } finally {
    // Stop in-flight chunk requests when the consumer goes away early.
    controller.abort();
  }
}

/**
 * Opens the inclusive byte range [start, end] of an object. Small ranges resolve once the GET has
 * answered, so a failure to start reading is thrown here rather than surfacing as a stream error.
 */
export async function readRange(source: RangeSource, start: number, end: number, options: RangeReadOptions): Promise<Readable> {
  const length = end - start + 1;
  if (length <= 0) return Readable.from([]);
  if (length <= options.parallelThresholdBytes || options.parallelism <= 1) {
    const body = await getRange(source, start, end, options.signal);
    // The SDK's signal only covers the request; once the body flows, aborting must end it too.
    const signal = options.signal;
    if (signal) {
      const onAbort = (): void => void body.destroy(abortReason(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      body.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return body;
  }
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const stream = Readable.from(inOrder(source, start, end, options, controller), { objectMode: false });
  stream.once('close', () => {
    options.signal?.removeEventListener('abort', onAbort);
    controller.abort();
  });
  if (options.signal?.aborted) onAbort();
  return stream;
}
