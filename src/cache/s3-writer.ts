/**
 * The S3 backend's CacheWriter: a streaming multipart upload of unknown length that publishes the final
 * key only once, complete and with its metadata, under S3's own conditional-write headers.
 *
 * Three ways to publish, chosen by what is known:
 * - everything fit in one part: a single PutObject at commit, carrying metadata and the condition;
 * - the digest was given in advance (`expectedSha256`, i.e. blobs): a multipart upload straight to the
 *   final key with the metadata set at initiation; the digest is verified before CompleteMultipartUpload,
 *   and a mismatch aborts the upload;
 * - otherwise: a multipart upload to a temporary key under `.tmp/`, then a server-side multipart copy
 *   (UploadPartCopy) to the final key with the now-known digest, completed with the condition.
 * CompleteMultipartUpload and PutObject are atomic in S3, so readers never see a partial object; a crash
 * leaves at most an incomplete upload or a `.tmp/` object, which S3Cache.sweep() removes.
 *
 * Compare-and-swap re-checks the stored sha256 with a HEAD at commit and sends S3 `If-Match` with the
 * S3 ETag it saw. AWS enforces If-Match on PutObject and CompleteMultipartUpload; moto_server only on
 * PutObject, so in tests CAS is atomic for single-part objects (pointers and records, the objects that
 * use it). A blob uploaded straight to its key takes its creation time (and TTL start) from the start of
 * the upload, because S3 fixes metadata when the upload begins.
 */
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { CacheWriter, CreateOptions, ObjectMeta } from './cache.js';
import type { Logger } from '../util/logger.js';
import type { Clock } from '../util/clock.js';
import {
  AbortedError,
  AlreadyExistsError,
  BadRequestError,
  DigestMismatchError,
  PreconditionFailedError,
  abortReason,
} from '../util/errors.js';
import { encodeMetadata, isExpired, type StoredFields } from './s3-meta.js';
import { isConditionFailure, toCachewError } from './s3-errors.js';

/** The final key's current state as a HEAD saw it. */
export interface HeadResult {
  /** Undefined for an object this backend did not write. */
  meta?: ObjectMeta;
  s3Etag: string;
}

/** Everything a writer needs from its S3Cache. */
export interface WriterTarget {
  client: S3Client;
  bucket: string;
  key: string;
  objectKey: string;
  tmpObjectKey: string;
  partSizeBytes: number;
  copyPartSizeBytes: number;
  copyParallelism: number;
  options: CreateOptions;
  logger: Logger;
  /** Commit times and TTL checks. */
  clock: Clock;
  head(signal?: AbortSignal): Promise<HeadResult | undefined>;
}

type Condition = { IfNoneMatch?: string; IfMatch?: string };

const PARTS_PER_DOUBLING = 2000;
const MAX_PART_BYTES = 5 * 1024 * 1024 * 1024;
type State = 'open' | 'committing' | 'done' | 'aborted';

/** A bounded-memory streaming upload; see the module comment for how it publishes. */
export class S3Writer implements CacheWriter {
  readonly stream: Writable;
  private readonly hash = createHash('sha256');
  private readonly controller = new AbortController();
  private state: State = 'open';
  private size = 0;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private nextPartNumber = 1;
  private readonly parts: CompletedPart[] = [];
  /** The multipart upload receiving the bytes (final key when the digest is known, else the temp key). */
  private uploadId?: string;
  private initiating?: Promise<string>;
  private inFlight?: Promise<void>;
  /** The copy upload into the final key (temp path only). */
  private copyUploadId?: string;
  private tmpCompleted = false;
  private createdAt?: Date;
  private abortPromise?: Promise<void>;
  private readonly direct: boolean;
  private readonly unlinkSignal?: () => void;

  constructor(private readonly target: WriterTarget) {
    this.direct = target.options.expectedSha256 !== undefined;
    this.stream = new Writable({
      highWaterMark: 1024 * 1024,
      write: (chunk: Buffer, _encoding, callback) => this.accept(chunk, callback),
      destroy: (err, callback) => {
        // Destroyed before finishing (by the producer or an error): nothing may be published.
        if (err || !this.stream.writableFinished) void this.abort(err ?? new AbortedError('write stream destroyed'));
        callback(err);
      },
    });
    // Failures reach the caller through pipeline() and commit(); an 'error' nobody listens to must not
    // crash the process.
    this.stream.on('error', () => undefined);
    const signal = target.options.signal;
    if (signal) {
      const onAbort = (): void => void this.abort(abortReason(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      this.unlinkSignal = () => signal.removeEventListener('abort', onAbort);
    }
  }

  private accept(chunk: Buffer, callback: (err?: Error | null) => void): void {
    if (this.controller.signal.aborted) return callback(abortReason(this.controller.signal));
    this.hash.update(chunk);
    this.size += chunk.length;
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    if (this.bufferedBytes < this.partSize()) return callback();
    // Back-pressure: the callback waits until the previous part is uploaded, so at most two parts are
    // held at once (one uploading, one just filled).
    this.startPart(this.takeBuffered()).then(() => callback(), (err: Error) => callback(err));
  }

  /**
   * S3 allows 10,000 parts per upload: the part size doubles every 2,000 parts, so an object of any
   * realistic size fits while small objects keep small parts (and memory stays ~2 parts).
   */
  private partSize(): number {
    const doublings = Math.min(10, Math.floor((this.nextPartNumber - 1) / PARTS_PER_DOUBLING));
    return Math.min(MAX_PART_BYTES, this.target.partSizeBytes * 2 ** doublings);
  }

  private takeBuffered(): Buffer {
    const data = Buffer.concat(this.buffered, this.bufferedBytes);
    this.buffered = [];
    this.bufferedBytes = 0;
    return data;
  }

  private get uploadKey(): string {
    return this.direct ? this.target.objectKey : this.target.tmpObjectKey;
  }

  /** Runs one S3 call; condition failures pass through raw (the caller maps them), the rest become CachewErrors. */
  private async call<T>(op: string, key: string, signal: AbortSignal | undefined, run: (client: S3Client, options: { abortSignal?: AbortSignal }) => Promise<T>): Promise<T> {
    try {
      return await run(this.target.client, { abortSignal: signal });
    } catch (err) {
      throw isConditionFailure(err) ? err : toCachewError(op, key, err, signal);
    }
  }

  private fields(sha256: string, created: Date): StoredFields {
    const { ttlMs, metadata } = this.target.options;
    const fields: StoredFields = { sha256, created, metadata: { ...(metadata ?? {}) } };
    if (ttlMs !== undefined) fields.expiresAt = new Date(created.getTime() + ttlMs);
    return fields;
  }

  private initiate(): Promise<string> {
    this.initiating ??= (async () => {
      const input: { Bucket: string; Key: string; Metadata?: Record<string, string> } = {
        Bucket: this.target.bucket,
        Key: this.uploadKey,
      };
      if (this.direct) {
        this.createdAt = new Date(this.target.clock.now());
        input.Metadata = encodeMetadata(this.fields(this.target.options.expectedSha256 as string, this.createdAt));
      }
      // No abort signal: if the request reaches S3 we must learn the upload id to be able to abort it.
      const response = await this.call('create-multipart', this.uploadKey, undefined, (c) => c.send(new CreateMultipartUploadCommand(input)));
      if (!response.UploadId) throw toCachewError('create-multipart', this.uploadKey, new Error('no UploadId'));
      this.uploadId = response.UploadId;
      return response.UploadId;
    })();
    return this.initiating;
  }

  private async startPart(data: Buffer): Promise<void> {
    if (this.inFlight) await this.inFlight;
    const uploadId = await this.initiate();
    const partNumber = this.nextPartNumber++;
    const upload = this.call('upload-part', this.uploadKey, this.controller.signal, (c, o) =>
      c.send(
        new UploadPartCommand({
          Bucket: this.target.bucket,
          Key: this.uploadKey,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: data,
          ContentLength: data.length,
        }),
        o,
      ),
    ).then((response) => {
      this.parts.push({ PartNumber: partNumber, ETag: response.ETag });
    });
    upload.catch(() => undefined); // observed by the next startPart or by commit
    this.inFlight = upload;
  }

  /** The S3 condition for the final write; HEADs the object for compare-and-swap. */
  private async condition(): Promise<Condition> {
    const { ifMatch, ifNoneMatch } = this.target.options;
    if (ifMatch !== undefined) {
      const head = await this.target.head(this.controller.signal);
      if (!head?.meta || isExpired(head.meta, this.target.clock.now()) || head.meta.etag !== ifMatch) {
        throw new PreconditionFailedError(`stored etag of ${this.target.key} is not ${ifMatch}`);
      }
      return { IfMatch: head.s3Etag };
    }
    return ifNoneMatch === '*' ? { IfNoneMatch: '*' } : {};
  }

  /** Deletes the final key when it holds an expired object (logically absent, physically present). */
  private async removeExpired(): Promise<boolean> {
    if (this.target.options.ifNoneMatch !== '*') return false;
    const head = await this.target.head(this.controller.signal);
    if (!head?.meta || !isExpired(head.meta, this.target.clock.now())) return false;
    const { bucket, objectKey } = this.target;
    await this.call('delete', objectKey, undefined, (c) => c.send(new DeleteObjectCommand({ Bucket: bucket, Key: objectKey })));
    return true;
  }

  private conditionError(err: unknown): Error {
    if (this.target.options.ifNoneMatch === '*') return new AlreadyExistsError(this.target.key, { cause: err });
    return new PreconditionFailedError(`stored etag of ${this.target.key} changed`, { cause: err });
  }

  private meta(fields: StoredFields): ObjectMeta {
    const meta: ObjectMeta = {
      key: this.target.key,
      size: this.size,
      etag: fields.sha256,
      lastModified: fields.created,
      metadata: fields.metadata,
    };
    if (fields.expiresAt) meta.expiresAt = fields.expiresAt;
    return meta;
  }

  async commit(): Promise<ObjectMeta> {
    if (this.state === 'aborted') throw new AbortedError(`write of ${this.target.key} was aborted`);
    if (this.state !== 'open') throw new BadRequestError(`commit of ${this.target.key} called twice`);
    this.state = 'committing';
    try {
      await finished(this.stream);
      if (this.controller.signal.aborted) throw abortReason(this.controller.signal);
      const digest = this.hash.digest('hex');
      const expected = this.target.options.expectedSha256;
      if (expected !== undefined && digest !== expected) throw new DigestMismatchError(expected, digest);
      const meta = this.initiating === undefined ? await this.putSingle(digest) : await this.completeMultipart(digest);
      this.state = 'done';
      this.unlinkSignal?.();
      return meta;
    } catch (err) {
      await this.abort(err);
      if (err instanceof Error && (err.name === 'AbortError' || (err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE')) {
        throw new AbortedError(`write of ${this.target.key} was aborted`, { cause: err });
      }
      throw err;
    }
  }

  private async putSingle(digest: string): Promise<ObjectMeta> {
    const body = this.takeBuffered();
    for (let attempt = 0; ; attempt++) {
      const fields = this.fields(digest, new Date(this.target.clock.now()));
      const condition = await this.condition();
      try {
        await this.call('put', this.target.objectKey, this.controller.signal, (c, o) =>
          c.send(
            new PutObjectCommand({
              Bucket: this.target.bucket,
              Key: this.target.objectKey,
              Body: body,
              ContentLength: body.length,
              Metadata: encodeMetadata(fields),
              ...condition,
            }),
            o,
          ),
        );
        return this.meta(fields);
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
        if (attempt === 0 && (await this.removeExpired())) continue;
        throw this.conditionError(err);
      }
    }
  }

  private async completeMultipart(digest: string): Promise<ObjectMeta> {
    if (this.bufferedBytes > 0) await this.startPart(this.takeBuffered());
    await this.inFlight;
    const uploadId = this.uploadId as string;
    const parts = [...this.parts].sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    if (this.direct) {
      await this.removeExpired();
      await this.complete(this.target.objectKey, uploadId, parts, await this.condition());
      this.uploadId = undefined;
      return this.meta(this.fields(digest, this.createdAt as Date));
    }
    await this.complete(this.target.tmpObjectKey, uploadId, parts, {});
    this.uploadId = undefined;
    this.tmpCompleted = true;
    const meta = await this.copyToFinal(digest);
    this.state = 'done';
    await this.deleteTmp();
    return meta;
  }

  private async complete(key: string, uploadId: string, parts: CompletedPart[], condition: Condition): Promise<void> {
    try {
      await this.call('complete-multipart', key, this.controller.signal, (c, o) =>
        c.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.target.bucket,
            Key: key,
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
            ...condition,
          }),
          o,
        ),
      );
    } catch (err) {
      throw isConditionFailure(err) ? this.conditionError(err) : err;
    }
  }

  /** Server-side copy of the temp object into the final key, now that the digest is known. */
  private async copyToFinal(digest: string): Promise<ObjectMeta> {
    const { bucket, objectKey, tmpObjectKey } = this.target;
    await this.removeExpired();
    const condition = await this.condition();
    const fields = this.fields(digest, new Date(this.target.clock.now()));
    const created = await this.call('create-multipart', objectKey, undefined, (c) =>
      c.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: objectKey, Metadata: encodeMetadata(fields) })),
    );
    if (!created.UploadId) throw toCachewError('create-multipart', objectKey, new Error('no UploadId'));
    const uploadId = created.UploadId;
    this.copyUploadId = uploadId;
    const copySource = `${bucket}/${tmpObjectKey.split('/').map(encodeURIComponent).join('/')}`;
    const step = this.target.copyPartSizeBytes;
    const ranges: Array<{ partNumber: number; start: number; end: number }> = [];
    for (let start = 0, partNumber = 1; start < this.size; start += step, partNumber++) {
      ranges.push({ partNumber, start, end: Math.min(this.size, start + step) - 1 });
    }
    const parts: CompletedPart[] = [];
    let cursor = 0;
    const worker = async (): Promise<void> => {
      while (cursor < ranges.length) {
        const range = ranges[cursor++];
        const response = await this.call('upload-part-copy', objectKey, this.controller.signal, (c, o) =>
          c.send(
            new UploadPartCopyCommand({
              Bucket: bucket,
              Key: objectKey,
              UploadId: uploadId,
              PartNumber: range.partNumber,
              CopySource: copySource,
              CopySourceRange: `bytes=${range.start}-${range.end}`,
            }),
            o,
          ),
        );
        parts.push({ PartNumber: range.partNumber, ETag: response.CopyPartResult?.ETag });
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.target.copyParallelism, ranges.length) }, worker));
    parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    await this.complete(objectKey, uploadId, parts, condition);
    this.copyUploadId = undefined;
    return this.meta(fields);
  }

  private async deleteTmp(): Promise<void> {
    if (!this.tmpCompleted) return;
    try {
      await this.target.client.send(new DeleteObjectCommand({ Bucket: this.target.bucket, Key: this.target.tmpObjectKey }));
      this.tmpCompleted = false;
    } catch (err) {
      // Not fatal: sweep() removes stale temp objects later.
      this.target.logger.warn({ err, key: this.target.tmpObjectKey }, 'could not delete temporary object');
    }
  }

  private async abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.target.client.send(new AbortMultipartUploadCommand({ Bucket: this.target.bucket, Key: key, UploadId: uploadId }));
    } catch (err) {
      // abort() runs on error paths and must not mask the original error; sweep() catches leftovers.
      this.target.logger.warn({ err, key, uploadId }, 'could not abort multipart upload');
    }
  }

  abort(reason?: unknown): Promise<void> {
    if (this.state === 'done') return Promise.resolve();
    if (!this.abortPromise) {
      // Assigned before cleanup starts: cleanup destroys the stream, whose destroy hook re-enters abort().
      let settle: () => void = () => undefined;
      this.abortPromise = new Promise<void>((resolve) => (settle = resolve));
      this.cleanup(reason)
        .catch((err: unknown) => this.target.logger.warn({ err, key: this.target.key }, 'cleanup after abort failed'))
        .finally(settle);
    }
    return this.abortPromise;
  }

  private async cleanup(reason: unknown): Promise<void> {
    this.state = 'aborted';
    this.unlinkSignal?.();
    this.controller.abort(reason ?? new AbortedError());
    if (!this.stream.destroyed) this.stream.destroy();
    this.buffered = [];
    this.bufferedBytes = 0;
    await this.inFlight?.catch(() => undefined);
    await this.initiating?.catch(() => undefined);
    if (this.uploadId) await this.abortUpload(this.uploadKey, this.uploadId);
    this.uploadId = undefined;
    if (this.copyUploadId) await this.abortUpload(this.target.objectKey, this.copyUploadId);
    this.copyUploadId = undefined;
    await this.deleteTmp();
  }
}
