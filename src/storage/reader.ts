/**
 * The read facade of snapshot storage: which snapshot a repository's pointer names, the record of one
 * commit, the retained list, and the bytes a record names with the request's Range and conditionals
 * applied. The HTTP layer reads through this and nothing else; it never sees cache keys.
 *
 * Records and pointers are read from `metadataCache` (the authoritative tier: another replica may have
 * moved or deleted them), blobs from `cache` (any tier: a blob's bytes never change).
 */
import type { Cache, OpenResult } from '../cache/cache.js';
import { blobKey } from '../cache/write.js';
import type { Conditions } from '../protocol/conditions.js';
import { NotFoundError } from '../util/errors.js';
import { listSnapshotRecords, readSnapshotRecord, type SnapshotRecord } from './records.js';
import { readPointer, type SnapshotPointer } from './pointer.js';

export interface SnapshotReaderOptions {
  /** Where blobs (immutable, content-addressed) are read and written: the tiered cache. */
  cache: Cache;
  /**
   * Where records and pointers (small, mutable or deletable by other replicas) are read: the
   * authoritative tier (see cache/authoritative-view.ts). Defaults to `cache`.
   */
  metadataCache?: Cache;
  /** Clock for the served-record memo (default Date.now). */
  now?: () => number;
}

/**
 * How long a record read to serve an immutable URL is reused. A record never changes once written,
 * it can only be removed (retention, possibly by another replica); serving from a memo that old at
 * most answers "snapshot bytes are no longer stored" instead of "no snapshot" for a few seconds. A
 * parallel restore sends 8+ range requests per snapshot, each of which read the record from the
 * authoritative tier (a file read, or an S3 GET with S3) before this memo.
 */
export const SERVED_RECORD_MEMO_MS = 5_000;
const SERVED_RECORD_MEMO_ENTRIES = 512;

export interface CurrentSnapshot {
  record: SnapshotRecord;
  pointer: SnapshotPointer;
}

/** What names a blob: a snapshot or a bundle record (its digest is the ETag, `created` the Last-Modified). */
export interface StoredBlob {
  digest: string;
  /** ISO-8601 time the record was written. */
  created: string;
}

/** How a blob is read: Range and conditionals (RFC 9110), HEAD, and abort. */
export interface BlobRead extends Conditions {
  /** Return only metadata and status, no body (HEAD). */
  headOnly?: boolean;
  signal?: AbortSignal;
}

/** Reads snapshot records, pointers and the blobs they name. */
export class SnapshotReader {
  readonly cache: Cache;
  readonly metadataCache: Cache;
  private readonly clockNow: () => number;
  /** Records recently read for serving, by `host/repo/commit`, oldest first. */
  private readonly served = new Map<string, { record: SnapshotRecord; readAt: number }>();

  constructor(options: SnapshotReaderOptions) {
    this.cache = options.cache;
    this.metadataCache = options.metadataCache ?? options.cache;
    this.clockNow = options.now ?? Date.now;
  }

  /** The snapshot the pointer names; undefined when there is none or its record or blob vanished. */
  async current(host: string, repo: string, signal?: AbortSignal): Promise<CurrentSnapshot | undefined> {
    const pointer = await readPointer(this.metadataCache, host, repo, signal);
    if (!pointer) return undefined;
    const record = await readSnapshotRecord(this.metadataCache, host, repo, pointer.value.commit, signal);
    if (!record) return undefined;
    if (!(await this.cache.stat(blobKey(record.digest), signal))) return undefined;
    return { record, pointer: pointer.value };
  }

  /** The record of one commit (the blob may still have aged out; opening it then misses). */
  async record(host: string, repo: string, commit: string, signal?: AbortSignal): Promise<SnapshotRecord | undefined> {
    return readSnapshotRecord(this.metadataCache, host, repo, commit, signal);
  }

  /**
   * The record of one commit for serving its immutable URL: like record(), but a record found within
   * the last SERVED_RECORD_MEMO_MS is reused (see there why that is safe). A miss is never memoized,
   * so a new snapshot is served as soon as its record exists.
   */
  async servedRecord(host: string, repo: string, commit: string, signal?: AbortSignal): Promise<SnapshotRecord | undefined> {
    const key = `${host}/${repo}/${commit}`;
    const now = this.clockNow();
    const memo = this.served.get(key);
    if (memo && now - memo.readAt < SERVED_RECORD_MEMO_MS) return memo.record;
    const record = await this.record(host, repo, commit, signal);
    this.served.delete(key);
    if (record) {
      this.served.set(key, { record, readAt: now });
      if (this.served.size > SERVED_RECORD_MEMO_ENTRIES) this.served.delete(this.served.keys().next().value!);
    }
    return record;
  }

  /** Every retained snapshot of a repository, newest first, flagging the current one. */
  async list(host: string, repo: string, signal?: AbortSignal): Promise<Array<SnapshotRecord & { current: boolean }>> {
    const [records, pointer] = await Promise.all([
      listSnapshotRecords(this.metadataCache, host, repo, signal),
      readPointer(this.metadataCache, host, repo, signal),
    ]);
    const currentCommit = pointer?.value.commit;
    return records
      .map((record) => ({ ...record, current: record.commit === currentCommit }))
      .sort((a, b) => Date.parse(b.created) - Date.parse(a.created) || a.commit.localeCompare(b.commit));
  }

  /**
   * Opens the blob `stored` names from the nearest tier holding it, with the request's Range and
   * conditionals evaluated against the record: its digest is the ETag, its creation time the
   * Last-Modified that date preconditions compare with. A failed precondition or an unsatisfiable
   * range rejects (PreconditionFailedError, RangeNotSatisfiableError); bytes that aged out are a
   * NotFoundError.
   */
  async open(stored: StoredBlob, request: BlobRead = {}): Promise<OpenResult> {
    const result = await this.cache.open(blobKey(stored.digest), { ...request, lastModified: new Date(stored.created) });
    if (!result) throw new NotFoundError('snapshot bytes are no longer stored');
    return result;
  }
}
