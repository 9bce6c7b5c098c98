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
}

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

  constructor(options: SnapshotReaderOptions) {
    this.cache = options.cache;
    this.metadataCache = options.metadataCache ?? options.cache;
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
