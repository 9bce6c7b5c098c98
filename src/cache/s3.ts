/**
 * S3Cache: the shared, authoritative tier. Objects live at `<prefix>/<key>` with their sha256, creation
 * time, expiry and caller metadata as S3 user metadata (see s3-meta.ts), so a bucket can be inspected
 * and given lifecycle rules per prefix. Writes publish atomically with S3 conditional writes
 * (s3-writer.ts); reads HEAD for metadata and then GET exactly the requested range (s3-range.ts).
 */
import { randomUUID } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Cache, CacheWriter, CreateOptions, ObjectMeta, OpenOptions, OpenResult } from './cache.js';
import { evaluateConditionals } from './conditional.js';
import { AlreadyExistsError, BadRequestError, PreconditionFailedError, abortReason } from '../util/errors.js';
import { assertValidKey } from './keys.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { systemClock, type Clock } from '../util/clock.js';
import { decodeMetadata, encodeMetadata, isExpired } from './s3-meta.js';
import { isNotFound, toCachewError } from './s3-errors.js';
import { readRange } from './s3-range.js';
import { S3Writer, type HeadResult } from './s3-writer.js';

const MiB = 1024 * 1024;
/** S3's minimum size for every part but the last. */
const MIN_PART = 5 * MiB;
/** S3's maximum size of one (copy) part. */
const MAX_PART = 5 * 1024 * MiB;
const TMP_DIR = '.tmp';
/** S3's limit on user-defined metadata per object (names and values). */
const MAX_METADATA_BYTES = 2048;
/** HEAD+GET attempts of one open() while the key is being replaced concurrently. */
const OPEN_ATTEMPTS = 4;
/** HEADs issued concurrently while listing. */
const LIST_HEAD_CONCURRENCY = 8;

export interface S3CacheOptions {
  /** The caller owns the client (close() does not destroy it). */
  client: S3Client;
  bucket: string;
  /** Key prefix inside the bucket, e.g. `cachew`; no leading or trailing slash needed. */
  prefix?: string;
  logger?: Logger;
  /** Bytes buffered per multipart part (default 8 MiB, at least 5 MiB); memory per write is ~2 parts. */
  partSizeBytes?: number;
  /** Part size of the server-side copy from the temp key (default 512 MiB, 5 MiB–5 GiB). */
  copyPartSizeBytes?: number;
  /** Concurrent ranged GETs for one large read (default 4). */
  rangeParallelism?: number;
  /** Chunk size of a parallel ranged read (default 8 MiB). */
  rangeChunkBytes?: number;
  /** Reads longer than this use parallel chunks (default 16 MiB). */
  parallelThresholdBytes?: number;
  /** Clock for TTLs and commit times (default: the system clock). */
  clock?: Clock;
}

/** Options of {@link S3Cache.presignGet}. */
export interface PresignOptions {
  expiresInSeconds: number;
  /** Signing time; the URL expires `expiresInSeconds` after it. Default now. */
  signedAt?: Date;
  signal?: AbortSignal;
}

/** What S3Cache.sweep() removed. */
export interface SweepResult {
  abortedUploads: number;
  deletedTempObjects: number;
}

/**
 * S3 refuses more than 2 KiB of user metadata; say so up front as a caller error instead of failing the
 * upload at its end as an outage.
 */
function assertMetadataFits(options: CreateOptions): void {
  const sample = encodeMetadata({
    sha256: '0'.repeat(64),
    created: new Date(),
    expiresAt: options.ttlMs === undefined ? undefined : new Date(),
    metadata: options.metadata ?? {},
  });
  const bytes = Object.entries(sample).reduce((sum, [name, value]) => sum + Buffer.byteLength(name) + Buffer.byteLength(value), 0);
  if (bytes > MAX_METADATA_BYTES) throw new BadRequestError(`metadata too large for S3 (${bytes} bytes)`);
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

/** A Cache on an S3 bucket (or any S3-compatible server). */
export class S3Cache implements Cache {
  readonly name = 's3';
  private readonly client: S3Client;
  private readonly bucket: string;
  /** `<prefix>/` or empty. */
  private readonly root: string;
  private readonly logger: Logger;
  private readonly partSizeBytes: number;
  private readonly copyPartSizeBytes: number;
  private readonly rangeParallelism: number;
  private readonly rangeChunkBytes: number;
  private readonly parallelThresholdBytes: number;
  private readonly clock: Clock;

  constructor(options: S3CacheOptions) {
    this.clock = options.clock ?? systemClock;
    this.client = options.client;
    this.bucket = options.bucket;
    const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.root = prefix ? `${prefix}/` : '';
    this.logger = (options.logger ?? silentLogger).child({ module: 's3' });
    this.partSizeBytes = clamp(options.partSizeBytes ?? 8 * MiB, MIN_PART, MAX_PART);
    this.copyPartSizeBytes = clamp(options.copyPartSizeBytes ?? 512 * MiB, MIN_PART, MAX_PART);
    this.rangeParallelism = Math.max(1, options.rangeParallelism ?? 4);
    this.rangeChunkBytes = Math.max(64 * 1024, options.rangeChunkBytes ?? 8 * MiB);
    this.parallelThresholdBytes = options.parallelThresholdBytes ?? 16 * MiB;
  }

  private objectKey(key: string): string {
    assertValidKey(key);
    return this.root + key;
  }

  /** HEAD of an object key; undefined when absent. Never checks expiry. */
  private async headObject(key: string, objectKey: string, signal?: AbortSignal): Promise<HeadResult | undefined> {
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }), { abortSignal: signal });
      const result: HeadResult = { s3Etag: response.ETag ?? '' };
      const meta = decodeMetadata(key, response.ContentLength ?? 0, response.Metadata, response.LastModified);
      if (meta) result.meta = meta;
      else this.logger.debug({ key: objectKey }, 'object without cachew metadata ignored');
      return result;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw toCachewError('head', objectKey, err, signal);
    }
  }

  /** Metadata and S3 ETag of a live object, or undefined on a miss (absent, expired, foreign). */
  private async live(key: string, signal?: AbortSignal): Promise<{ meta: ObjectMeta; s3Etag: string } | undefined> {
    const head = await this.headObject(key, this.objectKey(key), signal);
    if (!head?.meta || isExpired(head.meta, this.clock.now())) return undefined;
    return { meta: head.meta, s3Etag: head.s3Etag };
  }

  async stat(key: string, signal?: AbortSignal): Promise<ObjectMeta | undefined> {
    return (await this.live(key, signal))?.meta;
  }

  async open(key: string, options: OpenOptions = {}): Promise<OpenResult | undefined> {
    return this.openAttempt(key, options, OPEN_ATTEMPTS);
  }

  private async openAttempt(key: string, options: OpenOptions, attemptsLeft: number): Promise<OpenResult | undefined> {
    const found = await this.live(key, options.signal);
    if (!found) return undefined;
    const { meta, s3Etag } = found;
    const outcome = evaluateConditionals(meta, options);
    const result: OpenResult = { meta, status: outcome.status, source: this.name };
    if (outcome.range) result.range = outcome.range;
    if (outcome.status === 304 || options.headOnly) return result;
    const start = outcome.range?.start ?? 0;
    const end = outcome.range?.end ?? meta.size - 1;
    try {
      result.body = await readRange({ client: this.client, bucket: this.bucket, objectKey: this.objectKey(key), s3Etag }, start, end, {
        parallelThresholdBytes: this.parallelThresholdBytes,
        chunkBytes: this.rangeChunkBytes,
        parallelism: this.rangeParallelism,
        signal: options.signal,
      });
    } catch (err) {
      // Replaced or deleted between HEAD and GET: answer from the current state instead; a key that
      // keeps changing under us fails rather than looping forever.
      if (attemptsLeft > 1 && err instanceof PreconditionFailedError && !options.signal?.aborted) {
        return this.openAttempt(key, options, attemptsLeft - 1);
      }
      throw err;
    }
    return result;
  }

  /**
   * A presigned GET URL of `key` that S3 honours for `expiresInSeconds` after `signedAt` (default now),
   * so a client can fetch the bytes from S3 directly; undefined when the object is absent or expired
   * here. The URL carries no conditions: its target is exactly the object's key.
   */
  async presignGet(key: string, options: PresignOptions): Promise<string | undefined> {
    if (!(await this.live(key, options.signal))) return undefined;
    const command = new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) });
    return getSignedUrl(this.client, command, { expiresIn: options.expiresInSeconds, signingDate: options.signedAt });
  }

  async create(key: string, options: CreateOptions = {}): Promise<CacheWriter> {
    const objectKey = this.objectKey(key);
    if (options.signal?.aborted) throw abortReason(options.signal);
    assertMetadataFits(options);
    if (options.ifNoneMatch === '*' || options.ifMatch !== undefined) {
      // Fail fast so a large upload is not wasted; the condition is enforced again by S3 at commit.
      const head = await this.headObject(key, objectKey, options.signal);
      const present = head?.meta !== undefined && !isExpired(head.meta, this.clock.now());
      if (options.ifNoneMatch === '*' && head && (present || !head.meta)) throw new AlreadyExistsError(key);
      if (options.ifMatch !== undefined && (!present || head?.meta?.etag !== options.ifMatch)) {
        throw new PreconditionFailedError(`stored etag of ${key} is not ${options.ifMatch}`);
      }
    }
    return new S3Writer({
      client: this.client,
      bucket: this.bucket,
      key,
      objectKey,
      tmpObjectKey: `${this.root}${TMP_DIR}/${randomUUID()}`,
      partSizeBytes: this.partSizeBytes,
      copyPartSizeBytes: this.copyPartSizeBytes,
      copyParallelism: this.rangeParallelism,
      options,
      logger: this.logger,
      clock: this.clock,
      head: (signal) => this.headObject(key, objectKey, signal),
    });
  }

  async delete(key: string, signal?: AbortSignal): Promise<boolean> {
    const objectKey = this.objectKey(key);
    const head = await this.headObject(key, objectKey, signal);
    if (!head) return false;
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey }), { abortSignal: signal });
    } catch (err) {
      if (isNotFound(err)) return false;
      throw toCachewError('delete', objectKey, err, signal);
    }
    return head.meta !== undefined && !isExpired(head.meta, this.clock.now());
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectMeta> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.root + prefix, ContinuationToken: token }),
          { abortSignal: signal },
        );
      } catch (err) {
        throw toCachewError('list', this.root + prefix, err, signal);
      }
      const keys = (page.Contents ?? [])
        .map((entry) => (entry.Key ?? '').slice(this.root.length))
        .filter((key) => key.length > 0 && !key.startsWith(`${TMP_DIR}/`));
      for (let i = 0; i < keys.length; i += LIST_HEAD_CONCURRENCY) {
        const batch = keys.slice(i, i + LIST_HEAD_CONCURRENCY);
        const metas = await Promise.all(batch.map((key) => this.headObject(key, this.root + key, signal)));
        for (const head of metas) if (head?.meta && !isExpired(head.meta, this.clock.now())) yield head.meta;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /**
   * Removes what crashed writers leave behind: multipart uploads under the prefix and temporary objects
   * initiated more than `olderThanMs` ago. (A bucket lifecycle rule with AbortIncompleteMultipartUpload
   * and an expiry on `<prefix>/.tmp/` does the same without a process.)
   */
  async sweep(olderThanMs: number, signal?: AbortSignal): Promise<SweepResult> {
    const cutoff = Date.now() - olderThanMs;
    const result: SweepResult = { abortedUploads: 0, deletedTempObjects: 0 };
    try {
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      do {
        const page = await this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.root, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
          { abortSignal: signal },
        );
        for (const upload of page.Uploads ?? []) {
          if (!upload.Key || !upload.UploadId || (upload.Initiated?.getTime() ?? 0) > cutoff) continue;
          await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: upload.Key, UploadId: upload.UploadId }), {
            abortSignal: signal,
          });
          result.abortedUploads++;
        }
        keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
        uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
      } while (keyMarker);
      let token: string | undefined;
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${this.root}${TMP_DIR}/`, ContinuationToken: token }),
          { abortSignal: signal },
        );
        for (const entry of page.Contents ?? []) {
          if (!entry.Key || (entry.LastModified?.getTime() ?? 0) > cutoff) continue;
          await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: entry.Key }), { abortSignal: signal });
          result.deletedTempObjects++;
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw toCachewError('sweep', this.root, err, signal);
    }
    return result;
  }

  async close(): Promise<void> {
    // The client belongs to the caller, who may share it between caches.
  }
}
