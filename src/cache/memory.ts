/**
 * MemoryCache: the nearest tier. Whole objects in process memory, evicted least-recently-used by bytes,
 * with per-object TTL.
 *
 * Design notes:
 * - An entry is immutable once published: a replace swaps the Map entry, so a reader that already got
 *   a body keeps streaming the old blocks and can never see a mix.
 * - Bytes are copied out of the caller's chunks into ~1 MiB blocks, so the accounting is exact and we
 *   never pin a caller's (possibly pooled) buffers.
 * - Every check-and-publish runs synchronously inside publish(), so create-if-absent and
 *   compare-and-swap are atomic without locks.
 * - An object larger than `maxObjectBytes` (at most `limitBytes`) cannot be held. Its write still succeeds (digest and
 *   preconditions are checked, any older version of the key is removed) but the object is dropped at
 *   once, exactly as if it had been evicted right after commit. A cache may evict at any time, so this
 *   keeps the tiered cache simple: a huge snapshot simply lives in the farther tiers.
 */
import { Readable } from 'node:stream';
import type { Cache, CacheWriter, CreateOptions, ObjectMeta, OpenOptions, OpenResult } from './cache.js';
import { evaluateConditionals } from './conditional.js';
import { LruIndex } from './lru-index.js';
import { StreamingWriter, committedMeta, type WriteTarget, type WrittenBytes } from './hashing-sink.js';
import { assertValidKey } from './keys.js';
import { AlreadyExistsError, PreconditionFailedError, abortReason } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { systemClock, type Clock } from '../util/clock.js';

/** Options of {@link MemoryCache}. */
export interface MemoryCacheOptions {
  /** Upper bound on the bytes of committed objects held; least recently used go first. */
  limitBytes: number;
  /**
   * Largest object held (default: `limitBytes`). Big snapshot blobs are better left to the disk tier,
   * whose reads are page-cache hits: held here they pin their whole size in the process heap.
   */
  maxObjectBytes?: number;
  logger?: Logger;
  /** Clock for TTLs and commit times (default: the system clock). */
  clock?: Clock;
}

const BLOCK_BYTES = 1024 * 1024;

interface Entry {
  meta: ObjectMeta;
  blocks: Buffer[];
}

/** An in-process, LRU-by-bytes cache with TTL. See the module comment for the oversized-object rule. */
export class MemoryCache implements Cache {
  readonly name = 'memory';
  private readonly entries = new LruIndex<Entry>({
    sizeOf: (entry) => entry.meta.size,
    metaOf: (entry) => entry.meta,
    // Expired entries are dropped on sight.
    onExpired: (key) => this.remove(key),
    now: () => this.clock.now(),
  });
  /** Upper bound on the bytes of committed objects held. */
  readonly limitBytes: number;
  readonly maxObjectBytes: number;
  readonly clock: Clock;
  private readonly logger: Logger;

  constructor(options: MemoryCacheOptions) {
    this.clock = options.clock ?? systemClock;
    this.limitBytes = options.limitBytes;
    this.maxObjectBytes = Math.min(options.limitBytes, options.maxObjectBytes ?? options.limitBytes);
    this.logger = (options.logger ?? silentLogger).child({ module: 'cache-memory' });
  }

  /** Bytes currently held by committed objects. */
  get usedBytes(): number {
    return this.entries.totalBytes;
  }

  async stat(key: string, signal?: AbortSignal): Promise<ObjectMeta | undefined> {
    if (signal?.aborted) throw abortReason(signal);
    assertValidKey(key);
    return this.touch(key)?.meta;
  }

  open(key: string, options: OpenOptions = {}): Promise<OpenResult | undefined> {
    try {
      if (options.signal?.aborted) throw abortReason(options.signal);
      assertValidKey(key);
      const entry = this.touch(key);
      if (!entry) return Promise.resolve(undefined);
      const outcome = evaluateConditionals(entry.meta, options);
      const result: OpenResult = { meta: entry.meta, status: outcome.status, range: outcome.range, source: this.name };
      if (outcome.status !== 304 && !options.headOnly) {
        const start = outcome.range?.start ?? 0;
        const end = outcome.range ? outcome.range.end + 1 : entry.meta.size;
        result.body = Readable.from(sliceBlocks(entry.blocks, start, end), {
          objectMode: false,
          signal: options.signal,
        });
      }
      return Promise.resolve(result);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  create(key: string, options: CreateOptions = {}): Promise<CacheWriter> {
    try {
      if (options.signal?.aborted) throw abortReason(options.signal);
      assertValidKey(key);
      this.checkPrecondition(key, options);
      return Promise.resolve(new StreamingWriter(new MemoryWriteTarget(this, key, options), options));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async delete(key: string, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) throw abortReason(signal);
    assertValidKey(key);
    const live = this.live(key) !== undefined;
    this.remove(key);
    return live;
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectMeta> {
    // Snapshot the keys so concurrent writes cannot disturb the iteration.
    for (const [key] of this.entries.snapshot()) {
      if (signal?.aborted) throw abortReason(signal);
      if (!key.startsWith(prefix)) continue;
      const entry = this.live(key);
      if (entry) yield entry.meta;
    }
  }

  close(): Promise<void> {
    this.entries.clear();
    return Promise.resolve();
  }

  /** @internal Throws if the write's precondition fails against the current state. */
  checkPrecondition(key: string, options: CreateOptions): void {
    const current = this.live(key);
    if (options.ifNoneMatch === '*' && current) throw new AlreadyExistsError(key);
    if (options.ifMatch !== undefined && current?.meta.etag !== options.ifMatch) {
      throw new PreconditionFailedError(`etag of ${key} is not ${options.ifMatch}`);
    }
  }

  /** @internal Installs a committed object (or drops it when it cannot fit) and evicts to the limit. */
  install(key: string, meta: ObjectMeta, blocks: Buffer[] | undefined): void {
    this.remove(key);
    if (!blocks) {
      this.logger.debug({ key, size: meta.size, maxObjectBytes: this.maxObjectBytes }, 'object larger than the memory tier holds, not kept');
      return;
    }
    this.entries.set(key, { meta, blocks });
    while (this.entries.totalBytes > this.limitBytes) {
      const victim = this.entries.oldest();
      if (!victim) break;
      this.remove(victim[0]);
    }
  }

  private live(key: string): Entry | undefined {
    return this.entries.live(key);
  }

  /** Like live(), and marks the entry most recently used. */
  private touch(key: string): Entry | undefined {
    return this.entries.use(key);
  }

  private remove(key: string): void {
    this.entries.delete(key);
  }
}

/** Collects one write into blocks; gives up holding bytes once they exceed the largest object held. */
class MemoryWriteTarget implements WriteTarget {
  private blocks: Buffer[] = [];
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private heldBytes = 0;
  private oversized = false;

  constructor(
    private readonly cache: MemoryCache,
    private readonly key: string,
    private readonly options: CreateOptions,
  ) {}

  write(chunk: Buffer): Promise<void> {
    if (this.oversized) return Promise.resolve();
    this.heldBytes += chunk.length;
    if (this.heldBytes > this.cache.maxObjectBytes) {
      this.oversized = true;
      this.blocks = [];
      this.pending = [];
      return Promise.resolve();
    }
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= BLOCK_BYTES) this.flush();
    return Promise.resolve();
  }

  publish(written: WrittenBytes, assertLive: () => void): Promise<ObjectMeta> {
    try {
      this.flush();
      this.cache.checkPrecondition(this.key, this.options);
      assertLive();
      const meta = committedMeta(this.key, written, this.options, new Date(this.cache.clock.now()));
      this.cache.install(this.key, meta, this.oversized ? undefined : this.blocks);
      return Promise.resolve(meta);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  discard(): Promise<void> {
    this.blocks = [];
    this.pending = [];
    return Promise.resolve();
  }

  /** Copies pending chunks into one owned block (decoupling us from the caller's buffers). */
  private flush(): void {
    if (this.pendingBytes === 0) return;
    this.blocks.push(Buffer.concat(this.pending, this.pendingBytes));
    this.pending = [];
    this.pendingBytes = 0;
  }
}

/** Yields the bytes [start, end) of a block list without copying. */
function* sliceBlocks(blocks: readonly Buffer[], start: number, end: number): Generator<Buffer> {
  let offset = 0;
  for (const block of blocks) {
    const blockEnd = offset + block.length;
    if (blockEnd > start && offset < end) {
      yield block.subarray(Math.max(0, start - offset), Math.min(block.length, end - offset));
    }
    offset = blockEnd;
    if (offset >= end) return;
  }
}
