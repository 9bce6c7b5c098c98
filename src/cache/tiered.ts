/**
 * TieredCache: several caches composed into one, nearest first (memory → disk → S3); the last tier is
 * authoritative (it decides create-if-absent and compare-and-swap and answers list()).
 *
 * Invariant: a nearer (local) tier never keeps bytes that differ from the authoritative tier's, as far
 * as writes through this instance go:
 * - writes commit in the authoritative tier first and only then in the local tiers (a local tier that
 *   failed gets the key deleted);
 * - deletes remove from the authoritative tier first, then from the local ones;
 * - a backfill (copying a farther tier's bytes into nearer tiers after a full read) commits under the
 *   same per-key lock as those local updates, and is dropped if the key was written or deleted after
 *   the read began (a per-key version that every local update bumps).
 * Writes made by OTHER replicas into a shared authoritative tier are not seen by this instance's local
 * tiers: mutable keys shared across replicas (pointers) should be read from {@link TieredCache.authoritative}.
 */
import type { Cache, CacheWriter, CreateOptions, ObjectMeta, OpenOptions, OpenResult } from './cache.js';
import { KeyedMutex } from './key-lock.js';
import { teeIntoTiers, type Backfill, type BackfillHost, type KeyWatch } from './tiered-backfill.js';
import { TieredWriter, type LocalShare } from './tiered-writer.js';
import { ConfigError, abortReason } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { systemClock, type Clock } from '../util/clock.js';

/** Receives per-tier read outcomes (for metrics). */
export interface TierObserver {
  /** `tier` answered open() (stat() is not reported); `bytes` is the body length it returns (0 for 304 / HEAD). */
  hit(tier: string, bytes: number): void;
  /** `tier` did not have the object. */
  miss(tier: string): void;
}

/** Options of {@link TieredCache}. */
export interface TieredCacheOptions {
  logger?: Logger;
  observer?: TierObserver;
  /** Clock for the remaining TTL of backfilled copies (default: the system clock; give the tiers' clock). */
  clock?: Clock;
}

/** A Cache over `tiers` (nearest first, last = authoritative). close() closes every tier. */
export class TieredCache implements Cache {
  readonly name = 'tiered';
  readonly logger: Logger;
  private readonly tiers: readonly Cache[];
  private readonly observer?: TierObserver;
  private readonly clock: Clock;
  private readonly locks = new KeyedMutex();
  /** Versions of keys that an in-flight backfill is watching; absent keys are watched by nobody. */
  private readonly watched = new Map<string, { version: number; refs: number }>();
  /** Backfills still committing or copying in the background. */
  private readonly backfills = new Set<Backfill>();
  private localView: Cache | undefined;

  constructor(tiers: Cache[], options: TieredCacheOptions = {}) {
    if (tiers.length === 0) throw new ConfigError('a tiered cache needs at least one tier');
    this.tiers = [...tiers];
    this.logger = (options.logger ?? silentLogger).child({ module: 'cache-tiered' });
    this.observer = options.observer;
    this.clock = options.clock ?? systemClock;
  }

  /** The last tier: the one that decides preconditions and is shared between replicas. */
  get authoritative(): Cache {
    return this.tiers[this.tiers.length - 1];
  }

  private get locals(): readonly Cache[] {
    return this.tiers.slice(0, -1);
  }

  /**
   * The local tiers alone, as one Cache (the farthest local tier decides), for what must work while
   * the authoritative tier is unreachable: local copies of shared metadata and snapshots published
   * while degraded. Undefined with a single tier. It shares the tiers with this instance (closing it
   * closes nothing) but not the backfill bookkeeping, so it is meant for keys this instance does not
   * backfill: small metadata read through authoritative-view.ts, and content-addressed blobs whose
   * bytes can never differ.
   */
  get local(): Cache | undefined {
    if (this.tiers.length < 2) return undefined;
    this.localView ??= new LocalTiers(new TieredCache([...this.locals], { logger: this.logger }));
    return this.localView;
  }

  /** Nearest-first; a tier that fails makes stat fail (a failure is never reported as a miss). */
  async stat(key: string, signal?: AbortSignal): Promise<ObjectMeta | undefined> {
    for (const tier of this.tiers) {
      const meta = await tier.stat(key, signal);
      if (meta) return meta;
    }
    return undefined;
  }

  /**
   * Nearest-first; a tier that fails makes open fail. A full (200) read answered by a farther tier is
   * copied into the nearer tiers while the caller reads it.
   */
  async open(key: string, options: OpenOptions = {}): Promise<OpenResult | undefined> {
    const watch = this.watch(key);
    let handedOff = false;
    try {
      for (let i = 0; i < this.tiers.length; i++) {
        const tier = this.tiers[i];
        const result = await tier.open(key, options);
        if (!result) {
          this.observer?.miss(tier.name);
          continue;
        }
        this.observer?.hit(tier.name, result.body ? bodyBytes(result) : 0);
        if (i > 0 && result.status === 200 && result.body) {
          handedOff = true;
          result.body = await teeIntoTiers(this.backfillHost(), result.meta, result.body, this.tiers.slice(0, i), watch);
        }
        return result;
      }
      return undefined;
    } finally {
      if (!handedOff) watch.release();
    }
  }

  /**
   * Writes every tier from one stream. The authoritative tier commits first and decides; local copies
   * are committed only after it succeeded (without preconditions: they follow the authoritative tier).
   */
  async create(key: string, options: CreateOptions = {}): Promise<CacheWriter> {
    if (options.signal?.aborted) throw abortReason(options.signal);
    const authoritative = await this.authoritative.create(key, options);
    const locals: LocalShare[] = [];
    const localOptions: CreateOptions = {
      ttlMs: options.ttlMs,
      metadata: options.metadata,
      expectedSha256: options.expectedSha256,
      signal: options.signal,
    };
    for (const tier of this.locals) {
      try {
        locals.push({ tier, writer: await tier.create(key, localOptions) });
      } catch (err) {
        // Without a writer this tier's (possibly old) copy is deleted once the write commits.
        this.logger.warn({ err, key, tier: tier.name }, 'local tier create failed');
        locals.push({ tier });
      }
    }
    return new TieredWriter(
      { logger: this.logger, mutateLocals: (k, fn) => this.mutateLocals(k, fn) },
      key,
      authoritative,
      locals,
    );
  }

  /** Removes from the authoritative tier first, then from the local tiers; true if any tier had it. */
  async delete(key: string, signal?: AbortSignal): Promise<boolean> {
    let removed = await this.authoritative.delete(key, signal);
    await this.mutateLocals(key, async () => {
      for (const tier of this.locals) removed = (await tier.delete(key, signal)) || removed;
    });
    return removed;
  }

  /** Lists the authoritative tier (the local tiers hold a subset of it). */
  list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectMeta> {
    return this.authoritative.list(prefix, signal);
  }

  /**
   * Resolves once every backfill started so far has committed or been dropped (backfills of bodies
   * still being read wait for their reader).
   */
  async whenIdle(): Promise<void> {
    while (this.backfills.size > 0) await Promise.all([...this.backfills].map((backfill) => backfill.settled));
  }

  /** Drops backfills of bodies not read to the end, waits for the rest to commit, then closes every tier. */
  async close(): Promise<void> {
    for (const backfill of this.backfills) backfill.cancel();
    await this.whenIdle();
    await Promise.all(this.tiers.map((tier) => tier.close()));
  }

  private backfillHost(): BackfillHost {
    return {
      logger: this.logger,
      clock: this.clock,
      withLocalLock: (key, fn) => this.locks.run(key, fn),
      track: (backfill) => {
        this.backfills.add(backfill);
        void backfill.settled.then(() => this.backfills.delete(backfill));
      },
    };
  }

  /** Changes local copies of `key` under its lock, then tells watching backfills their bytes are stale. */
  private mutateLocals(key: string, fn: () => Promise<void>): Promise<void> {
    return this.locks.run(key, async () => {
      try {
        await fn();
      } finally {
        const entry = this.watched.get(key);
        if (entry) entry.version++;
      }
    });
  }

  private watch(key: string): KeyWatch {
    let entry = this.watched.get(key);
    if (!entry) {
      entry = { version: 0, refs: 0 };
      this.watched.set(key, entry);
    }
    const watched = entry;
    watched.refs++;
    const start = watched.version;
    let released = false;
    return {
      changed: () => watched.version !== start,
      release: () => {
        if (released) return;
        released = true;
        if (--watched.refs === 0 && this.watched.get(key) === watched) this.watched.delete(key);
      },
    };
  }
}

/** A view of the local tiers that does not close them (the owning TieredCache does). */
class LocalTiers implements Cache {
  readonly name = 'local';
  constructor(private readonly tiers: TieredCache) {}
  stat(key: string, signal?: AbortSignal): Promise<ObjectMeta | undefined> {
    return this.tiers.stat(key, signal);
  }
  open(key: string, options?: OpenOptions): Promise<OpenResult | undefined> {
    return this.tiers.open(key, options);
  }
  create(key: string, options?: CreateOptions): Promise<CacheWriter> {
    return this.tiers.create(key, options);
  }
  delete(key: string, signal?: AbortSignal): Promise<boolean> {
    return this.tiers.delete(key, signal);
  }
  list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectMeta> {
    return this.tiers.list(prefix, signal);
  }
  async close(): Promise<void> {}
}

function bodyBytes(result: OpenResult): number {
  if (result.range) return result.range.end - result.range.start + 1;
  return result.meta.size;
}
