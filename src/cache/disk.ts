/**
 * DiskCache: the local persistent tier. One file per object at `<root>/<key>` (so the object for
 * `blobs/sha256/ab..` is the file `<root>/blobs/sha256/ab..`, easy for an operator to find), evicted
 * least-recently-used by bytes, with per-object TTL.
 *
 * Design:
 * - Each file holds the body followed by a metadata trailer (see disk-format.ts). A write goes to a
 *   temp file in `<root>/.tmp` (same filesystem), is hashed while written, gets its trailer, is
 *   fsynced, and is published by one atomic rename(2) over `<root>/<key>`. Readers open the file and
 *   take the metadata from the same file descriptor, so body and metadata always belong together and
 *   a reader keeps the old inode (old bytes, old metadata) while a replace lands. A crash leaves at
 *   most a temp file, which open() removes.
 * - An in-memory index (key → metadata, file size, recency) answers stat/list and the precondition
 *   checks; it is rebuilt at open() by scanning the root. The index and the files only change inside a
 *   per-key lock, which makes create-if-absent and compare-and-swap atomic within this process.
 *   Several processes sharing one root are NOT supported: each would have its own index and locks.
 * - The first key segment `.tmp` is reserved for temp files. A key cannot be both an object and a
 *   "directory" of other keys (`a` and `a/b`); such a write fails with BadRequestError. Empty
 *   directories left by deletes are kept (there is about one per repository).
 * - As in MemoryCache, an object larger than `limitBytes` is published and then evicted at once.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import type { Cache, CacheWriter, CreateOptions, ObjectMeta, OpenOptions, OpenResult } from './cache.js';
import { evaluateConditionals } from './conditional.js';
import { encodeTrailer, readTrailer } from './disk-format.js';
import { FileRangeBody } from './file-body.js';
import { LruIndex, isExpired } from './lru-index.js';
import { ReadBufferPool } from './read-buffers.js';
import { StreamingWriter, committedMeta, type WriteTarget, type WrittenBytes } from './hashing-sink.js';
import { KeyedMutex } from './key-lock.js';
import { assertValidKey, isValidKey } from './keys.js';
import { AlreadyExistsError, BadRequestError, CachewError, PreconditionFailedError, abortReason } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { systemClock, type Clock, type Timer } from '../util/clock.js';

/** Options of {@link DiskCache.open}. */
export interface DiskCacheOptions {
  /** Directory that holds the objects (created if missing). */
  root: string;
  /** Upper bound on the bytes of object files; least recently used go first. */
  limitBytes: number;
  logger?: Logger;
  /** How often expired objects are removed in the background (default 60 s; 0 disables the timer). */
  sweepIntervalMs?: number;
  /** Clock for TTLs, commit times and the sweep timer (default: the system clock). */
  clock?: Clock;
}

const TMP_DIR = '.tmp';
/**
 * Bytes per read(2) of a body. Measured (bench/serving.ts): 4 MiB halves the server's CPU per GB
 * served compared with 256 KiB (fewer syscalls, thread-pool round trips and stream callbacks) and
 * beats larger sizes; a download holds about two of these at a time.
 */
const READ_CHUNK_BYTES = 4 * 1024 * 1024;
/**
 * Read buffers (read-buffers.ts): at most 8 of 4 MiB exist at once, lent out or idle (32 MiB); a
 * download beyond them reads 1 MiB at a time.
 */
const READ_BUFFERS_IDLE = 8;

interface IndexEntry {
  meta: ObjectMeta;
  /** Size of the file (body + trailer), what counts against the limit. */
  fileBytes: number;
}

/** A persistent, LRU-by-bytes cache on the local filesystem. Create with {@link DiskCache.open}. */
export class DiskCache implements Cache {
  readonly name = 'disk';
  /** Map order is the LRU order: the first entry is the least recently used. */
  private readonly index = new LruIndex<IndexEntry>({
    sizeOf: (entry) => entry.fileBytes,
    metaOf: (entry) => entry.meta,
    // An expired file is removed in the background (it needs the key lock).
    onExpired: (key, entry) => void this.forget(key, entry),
    now: () => this.clock.now(),
  });
  private readonly locks = new KeyedMutex();
  /** The direct bodies' read buffers, reused across downloads. */
  private readonly readBuffers = new ReadBufferPool(READ_CHUNK_BYTES, READ_BUFFERS_IDLE);
  private evicting = false;
  private sweepTimer?: Timer;
  private readonly tmpDir: string;

  private constructor(
    readonly root: string,
    readonly limitBytes: number,
    private readonly logger: Logger,
    readonly clock: Clock,
  ) {
    this.tmpDir = join(root, TMP_DIR);
  }

  /** Opens (creating if needed) a cache at `options.root`: removes leftover temp files, rebuilds the index. */
  static async open(options: DiskCacheOptions): Promise<DiskCache> {
    const logger = (options.logger ?? silentLogger).child({ module: 'cache-disk' });
    const cache = new DiskCache(options.root, options.limitBytes, logger, options.clock ?? systemClock);
    await mkdir(options.root, { recursive: true });
    // Anything in the temp directory is a write that never committed (a crash or a kill -9).
    await rm(cache.tmpDir, { recursive: true, force: true });
    await mkdir(cache.tmpDir, { recursive: true });
    await cache.scan();
    await cache.evictToLimit();
    const sweepMs = options.sweepIntervalMs ?? 60_000;
    if (sweepMs > 0) {
      cache.sweepTimer = cache.clock.setInterval(() => cache.sweepExpired(), sweepMs);
    }
    return cache;
  }

  /** Bytes of object files currently indexed. */
  get usedBytes(): number {
    return this.index.totalBytes;
  }

  /** The file that holds `key` (whether or not it exists). */
  pathOf(key: string): string {
    this.assertKey(key);
    return join(this.root, ...key.split('/'));
  }

  async stat(key: string, signal?: AbortSignal): Promise<ObjectMeta | undefined> {
    if (signal?.aborted) throw abortReason(signal);
    this.assertKey(key);
    return this.touch(key)?.meta;
  }

  async open(key: string, options: OpenOptions = {}): Promise<OpenResult | undefined> {
    if (options.signal?.aborted) throw abortReason(options.signal);
    this.assertKey(key);
    const entry = this.touch(key);
    if (!entry) return undefined;
    let file: FileHandle;
    try {
      file = await open(this.pathOf(key), 'r');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) {
        // Deleted concurrently or removed by an operator: a miss either way.
        void this.forget(key, entry);
        return undefined;
      }
      throw err;
    }
    let handedOff = false;
    try {
      // The metadata of the bytes we actually opened, not the index's (a replace may have landed since).
      const meta = await readTrailer(file, (await file.stat()).size);
      if (!meta || meta.key !== key) throw new CachewError('internal', `corrupt cache file for ${key}`);
      if (isExpired(meta, this.clock.now())) return undefined;
      const outcome = evaluateConditionals(meta, options);
      const result: OpenResult = { meta, status: outcome.status, range: outcome.range, source: this.name };
      if (outcome.status === 304 || options.headOnly) return result;
      const start = outcome.range?.start ?? 0;
      const end = outcome.range ? outcome.range.end : meta.size - 1;
      result.body = new FileRangeBody(file, start, end, { chunkBytes: READ_CHUNK_BYTES, buffers: this.readBuffers, signal: options.signal });
      handedOff = true;
      return result;
    } finally {
      if (!handedOff) await file.close();
    }
  }

  async create(key: string, options: CreateOptions = {}): Promise<CacheWriter> {
    if (options.signal?.aborted) throw abortReason(options.signal);
    this.assertKey(key);
    this.checkPrecondition(key, options);
    const tmpPath = join(this.tmpDir, `${randomUUID()}.part`);
    const file = await open(tmpPath, 'wx');
    return new StreamingWriter(new DiskWriteTarget(this, key, options, file, tmpPath), options);
  }

  async delete(key: string, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) throw abortReason(signal);
    this.assertKey(key);
    return this.locks.run(key, async () => {
      const entry = this.index.peek(key);
      if (!entry) return false;
      await unlinkIfPresent(this.pathOf(key));
      this.dropFromIndex(key);
      return !isExpired(entry.meta, this.clock.now());
    });
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectMeta> {
    for (const [key, entry] of this.index.snapshot()) {
      if (signal?.aborted) throw abortReason(signal);
      if (key.startsWith(prefix) && !isExpired(entry.meta, this.clock.now())) yield entry.meta;
    }
  }

  async close(): Promise<void> {
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
  }

  /** @internal Throws if the write's precondition fails against the index. */
  checkPrecondition(key: string, options: CreateOptions): void {
    const current = this.live(key);
    if (options.ifNoneMatch === '*' && current) throw new AlreadyExistsError(key);
    if (options.ifMatch !== undefined && current?.meta.etag !== options.ifMatch) {
      throw new PreconditionFailedError(`etag of ${key} is not ${options.ifMatch}`);
    }
  }

  /**
   * @internal The commit point of a write: under the key's lock, re-check the precondition and rename
   * the finished temp file over the object's path.
   */
  async publishFile(
    key: string,
    tmpPath: string,
    entry: IndexEntry,
    options: CreateOptions,
    assertLive: () => void,
  ): Promise<void> {
    await this.locks.run(key, async () => {
      this.checkPrecondition(key, options);
      const path = this.pathOf(key);
      try {
        await mkdir(dirname(path), { recursive: true });
      } catch (err) {
        if (isErrno(err, 'EEXIST') || isErrno(err, 'ENOTDIR')) {
          throw new BadRequestError(`cache key ${key} lies under another object's key`, { cause: err });
        }
        throw err;
      }
      assertLive();
      try {
        await rename(tmpPath, path);
      } catch (err) {
        if (isErrno(err, 'EISDIR') || isErrno(err, 'ENOTEMPTY') || isErrno(err, 'ENOTDIR')) {
          throw new BadRequestError(`cache key ${key} is a prefix of other keys`, { cause: err });
        }
        throw err;
      }
      // Past the point of no return: nothing below may throw.
      await fsyncDirectory(dirname(path)).catch((err: unknown) => this.logger.warn({ err, key }, 'fsync of directory failed'));
      this.index.set(key, entry);
    });
    await this.evictToLimit();
  }

  private live(key: string): IndexEntry | undefined {
    return this.index.live(key);
  }

  private touch(key: string): IndexEntry | undefined {
    return this.index.use(key);
  }

  /** Removes `entry` (file and index) unless a newer version replaced it meanwhile. Never throws. */
  private async forget(key: string, entry: IndexEntry): Promise<void> {
    try {
      await this.locks.run(key, async () => {
        if (this.index.peek(key) !== entry) return;
        await unlinkIfPresent(this.pathOf(key));
        this.dropFromIndex(key);
      });
    } catch (err) {
      this.logger.warn({ err, key }, 'failed to remove cache file');
    }
  }

  private dropFromIndex(key: string): void {
    this.index.delete(key);
  }

  /** Evicts least recently used objects until the files fit in `limitBytes`. Never throws. */
  private async evictToLimit(): Promise<void> {
    if (this.evicting) return;
    this.evicting = true;
    try {
      while (this.index.totalBytes > this.limitBytes) {
        const oldest = this.index.oldest();
        if (!oldest) break;
        const [key, entry] = oldest;
        this.logger.debug({ key, size: entry.fileBytes }, 'evicting');
        await this.forget(key, entry);
        // forget() may have skipped a concurrently replaced entry; make sure the loop progresses.
        if (this.index.peek(key) === entry) this.dropFromIndex(key);
      }
    } finally {
      this.evicting = false;
    }
  }

  private async sweepExpired(): Promise<void> {
    for (const [key, entry] of this.index.snapshot()) {
      if (isExpired(entry.meta, this.clock.now())) await this.forget(key, entry);
    }
  }

  /** Rebuilds the index from the files under root, oldest access first (so LRU order survives restarts). */
  private async scan(): Promise<void> {
    const found: Array<{ key: string; entry: IndexEntry; atimeMs: number }> = [];
    const walk = async (dir: string): Promise<void> => {
      for (const dirent of await readdir(dir, { withFileTypes: true })) {
        const path = join(dir, dirent.name);
        if (dirent.isDirectory()) {
          if (path !== this.tmpDir) await walk(path);
          continue;
        }
        if (!dirent.isFile()) continue;
        const key = relative(this.root, path).split(sep).join('/');
        const loaded = await this.load(key, path);
        if (loaded) found.push({ key, ...loaded });
      }
    };
    await walk(this.root);
    found.sort((a, b) => a.atimeMs - b.atimeMs);
    for (const { key, entry } of found) this.index.set(key, entry);
    this.logger.info({ objects: this.index.size, bytes: this.index.totalBytes }, 'disk cache index rebuilt');
  }

  private async load(key: string, path: string): Promise<{ entry: IndexEntry; atimeMs: number } | undefined> {
    if (!isValidKey(key)) {
      this.logger.warn({ path }, 'ignoring a file whose name is not a cache key');
      return undefined;
    }
    const file = await open(path, 'r');
    try {
      const stats = await file.stat();
      const meta = await readTrailer(file, stats.size);
      if (!meta || meta.key !== key) {
        this.logger.warn({ path }, 'ignoring a file that is not a cache object');
        return undefined;
      }
      if (isExpired(meta, this.clock.now())) {
        await unlinkIfPresent(path);
        return undefined;
      }
      return { entry: { meta, fileBytes: stats.size }, atimeMs: Math.max(stats.atimeMs, stats.mtimeMs) };
    } finally {
      await file.close();
    }
  }

  private assertKey(key: string): void {
    assertValidKey(key);
    if (key === TMP_DIR || key.startsWith(`${TMP_DIR}/`)) throw new BadRequestError(`cache key ${key} is reserved`);
  }
}

/** One write: a temp file that becomes the object on commit. */
class DiskWriteTarget implements WriteTarget {
  private closed = false;

  constructor(
    private readonly cache: DiskCache,
    private readonly key: string,
    private readonly options: CreateOptions,
    private readonly file: FileHandle,
    private readonly tmpPath: string,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    let done = 0;
    while (done < chunk.length) {
      const { bytesWritten } = await this.file.write(chunk, done, chunk.length - done);
      done += bytesWritten;
    }
  }

  async publish(written: WrittenBytes, assertLive: () => void): Promise<ObjectMeta> {
    const meta = committedMeta(this.key, written, this.options, new Date(this.cache.clock.now()));
    const trailer = encodeTrailer(meta);
    await this.write(trailer);
    // Durable before visible: after a crash the renamed file must not turn out empty.
    await this.file.sync();
    this.closed = true;
    await this.file.close();
    const entry = { meta, fileBytes: written.size + trailer.length };
    await this.cache.publishFile(this.key, this.tmpPath, entry, this.options, assertLive);
    return meta;
  }

  async discard(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.file.close().catch(() => undefined);
    }
    await unlinkIfPresent(this.tmpPath).catch(() => undefined);
  }
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
}

async function fsyncDirectory(path: string): Promise<void> {
  const dir = await open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
