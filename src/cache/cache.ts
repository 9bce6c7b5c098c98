/**
 * The Cache contract. Every backend (memory, disk, S3) and the tiered composition implement it, and
 * every MUST below is a case in the shared conformance suite (src/cache/testing/conformance.ts).
 *
 * Keys are `/`-separated relative paths of `[A-Za-z0-9._-]` segments (never `.` or `..`); backends
 * MAY reject anything else with BadRequestError. The cache knows nothing about git or HTTP.
 */
import type { Writable, Readable } from 'node:stream';
import type { ReadRequest } from '../protocol/conditions.js';
import type { ResolvedRange } from '../protocol/range.js';

/** What a backend knows about one committed object. */
export interface ObjectMeta {
  key: string;
  /** Length of the whole object in bytes. */
  size: number;
  /**
   * Strong validator: the lowercase sha256 hex of the object's bytes, computed while writing.
   * Identical for identical content on every backend, so tiers and replicas can compare copies.
   */
  etag: string;
  /** When the object was committed. */
  lastModified: Date;
  /** When the object stops being readable (per-object TTL); undefined = never. */
  expiresAt?: Date;
  /** Small string metadata given at create() (e.g. content-type), returned verbatim. */
  metadata: Record<string, string>;
}

/**
 * Options of {@link Cache.open}: the protocol's {@link ReadRequest} — one byte range and the RFC 9110
 * conditionals, evaluated against the object's etag, size and last-modified date — plus HEAD and abort.
 */
export type OpenOptions = ReadRequest;

export interface OpenResult {
  meta: ObjectMeta;
  /** 200 full body, 206 `range` only, 304 not modified (no body). */
  status: 200 | 206 | 304;
  /** The resolved inclusive range when status is 206. */
  range?: ResolvedRange;
  /** The bytes (absent for 304 and headOnly). The caller MUST consume or destroy it. */
  body?: Readable;
  /** Which tier answered (backend name), for metrics and logs. */
  source: string;
}

export interface CreateOptions {
  /** Create-if-absent: commit MUST fail with AlreadyExistsError if the key exists (first writer wins). */
  ifNoneMatch?: '*';
  /** Compare-and-swap: commit MUST fail with PreconditionFailedError unless the stored etag equals this. */
  ifMatch?: string;
  /** Time to live from commit, in milliseconds; expired objects read as absent. */
  ttlMs?: number;
  /** If set, commit MUST fail with DigestMismatchError when the bytes' sha256 differs (nothing published). */
  expectedSha256?: string;
  /** Small string metadata returned in ObjectMeta.metadata. */
  metadata?: Record<string, string>;
  /** Aborting MUST abort the write (as abort() would). */
  signal?: AbortSignal;
}

/**
 * An in-progress write. Bytes go into `stream`; ending the stream does NOT publish anything.
 * Exactly one of commit() / abort() MUST be called.
 */
export interface CacheWriter {
  readonly stream: Writable;
  /**
   * Waits for `stream` to finish, then publishes atomically: before commit resolves the object MUST NOT
   * be readable (not even partially), after it resolves it MUST be readable in full. Rejects (and
   * publishes nothing) on precondition failure, digest mismatch, a destroyed stream or abort.
   */
  commit(): Promise<ObjectMeta>;
  /** Discards everything written; MUST leave no visible object and no leftovers. Idempotent. */
  abort(reason?: unknown): Promise<void>;
}

export interface Cache {
  /** Backend name for logs/metrics ("memory", "disk", "s3", "tiered"). */
  readonly name: string;
  /**
   * Objects larger than this are never held: a write of one succeeds and the object is dropped at once
   * (as if evicted). Undefined: no such limit. The tiered cache does not backfill such objects here.
   */
  readonly maxObjectBytes?: number;
  /** Metadata of a committed, unexpired object; undefined on a miss. MUST throw (not miss) on failure. */
  stat(key: string, signal?: AbortSignal): Promise<ObjectMeta | undefined>;
  /**
   * Opens an object. Undefined on a miss. Conditionals are evaluated in RFC 9110 §13.2.2 order:
   * If-Match, If-Unmodified-Since (PreconditionFailedError) → If-None-Match, If-Modified-Since (304) →
   * If-Range → Range (RangeNotSatisfiableError). A failing backend MUST throw, never report a miss.
   */
  open(key: string, options?: OpenOptions): Promise<OpenResult | undefined>;
  /**
   * Starts a write. MAY fail fast with AlreadyExistsError / PreconditionFailedError when the
   * precondition already fails; MUST check it again atomically at commit.
   */
  create(key: string, options?: CreateOptions): Promise<CacheWriter>;
  /** Removes an object; resolves true if something was removed. */
  delete(key: string, signal?: AbortSignal): Promise<boolean>;
  /** Lists committed, unexpired objects whose key starts with `prefix` (any order). */
  list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectMeta>;
  /** Releases resources (timers, sockets). */
  close(): Promise<void>;
}
