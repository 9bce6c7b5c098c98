/**
 * A view of a TieredCache for small MUTABLE objects (snapshot pointers, records): reads go straight to
 * the authoritative tier, writes and deletes go through the tiered cache (so local copies are replaced
 * or dropped). Without it, a replica could keep reading a pointer from its own memory tier long after
 * another replica moved it forward in the shared S3 tier — and its compare-and-swap, based on the
 * stale ETag, would fail forever.
 *
 * Degraded mode: for keys given a staleness limit (`staleLimitMs(key) > 0`), every successful read
 * also keeps a local copy in step with the authoritative one, and remembers when it last confirmed it.
 * When the authoritative tier is unreachable (an outage, see guarded.ts), such a read is answered from
 * the local copy if it was confirmed (or written locally) no longer than the limit ago; otherwise the
 * outage error stands. A local miss never becomes a miss: without the shared tier we cannot tell
 * "absent" from "not known here", so it stays an outage. list() is never answered locally.
 */
import { Readable } from 'node:stream';
import type { Cache, CacheWriter, CreateOptions, ObjectMeta, OpenOptions, OpenResult } from './cache.js';
import type { TieredCache } from './tiered.js';
import { isOutage } from './guarded.js';
import { writeStream } from './write.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { systemClock, type Clock } from '../util/clock.js';

/** Options of {@link AuthoritativeReadView}. */
export interface AuthoritativeReadViewOptions {
  /**
   * How old (ms) a local copy of `key` may be to answer while the authoritative tier is unreachable;
   * 0 = never answer locally and keep no local copy (the default for every key).
   */
  staleLimitMs?: (key: string) => number;
  /** Told when a read was answered by a local copy during an outage (metrics). */
  onStaleRead?: (key: string) => void;
  logger?: Logger;
  /** Ages of local copies are measured on this clock (tests pass a ManualClock). */
  clock?: Clock;
}

/** Objects larger than this are passed through and never copied locally (records are < 1 KiB). */
const MAX_LOCAL_COPY_BYTES = 64 * 1024;
/** Confirmation times kept at most; the oldest are forgotten first (the local copy's mtime remains). */
const MAX_CONFIRMED = 50_000;

export class AuthoritativeReadView implements Cache {
  readonly name: string;
  private readonly staleLimit: (key: string) => number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  /** key → when the local copy was last seen equal to the authoritative one. */
  private readonly confirmed = new Map<string, number>();

  constructor(
    private readonly tiered: TieredCache,
    private readonly options: AuthoritativeReadViewOptions = {},
  ) {
    this.name = `${tiered.name}:authoritative-reads`;
    this.staleLimit = options.staleLimitMs ?? (() => 0);
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? silentLogger).child({ module: 'cache-authoritative-view' });
  }

  private get source(): Cache {
    return this.tiered.authoritative;
  }

  async stat(key: string, signal?: AbortSignal): Promise<ObjectMeta | undefined> {
    try {
      return await this.source.stat(key, signal);
    } catch (err) {
      if (signal?.aborted || !isOutage(err)) throw err;
      const local = await this.freshLocal(key, err, signal);
      return local.meta;
    }
  }

  async open(key: string, options: OpenOptions = {}): Promise<OpenResult | undefined> {
    let result: OpenResult | undefined;
    try {
      result = await this.source.open(key, options);
    } catch (err) {
      if (options.signal?.aborted || !isOutage(err)) throw err;
      const { cache } = await this.freshLocal(key, err, options.signal);
      const local = await cache.open(key, options);
      if (!local) throw err;
      this.options.onStaleRead?.(key);
      return local;
    }
    if (this.staleLimit(key) <= 0) return result;
    if (!result) {
      await this.forgetLocal(key);
      return undefined;
    }
    if (result.status !== 200 || !result.body || result.range || result.meta.size > MAX_LOCAL_COPY_BYTES) return result;
    const chunks: Buffer[] = [];
    for await (const chunk of result.body) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
    const bytes = Buffer.concat(chunks);
    await this.keepLocal(result.meta, bytes);
    return { ...result, body: Readable.from([bytes]) };
  }

  list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectMeta> {
    return this.source.list(prefix, signal);
  }

  create(key: string, options?: CreateOptions): Promise<CacheWriter> {
    return this.tiered.create(key, options);
  }

  delete(key: string, signal?: AbortSignal): Promise<boolean> {
    return this.tiered.delete(key, signal);
  }

  /** The tiered cache owns the tiers; closing the view closes nothing. */
  async close(): Promise<void> {}

  /**
   * The local tier holding a copy of `key` young enough to answer during an outage; throws `outage`
   * (the authoritative tier's error) when there is none.
   */
  private async freshLocal(key: string, outage: unknown, signal?: AbortSignal): Promise<{ cache: Cache; meta: ObjectMeta }> {
    const limit = this.staleLimit(key);
    const local = this.tiered.local;
    if (limit <= 0 || !local) throw outage;
    let meta: ObjectMeta | undefined;
    try {
      meta = await local.stat(key, signal);
    } catch {
      throw outage;
    }
    if (!meta) throw outage;
    const confirmedAt = Math.max(this.confirmed.get(key) ?? 0, meta.lastModified.getTime());
    if (this.clock.now() - confirmedAt > limit) throw outage;
    return { cache: local, meta };
  }

  /** Makes the local copy equal to the authoritative `meta`/`bytes` and records the confirmation. */
  private async keepLocal(meta: ObjectMeta, bytes: Buffer): Promise<void> {
    const local = this.tiered.local;
    if (!local) return;
    try {
      const existing = await local.stat(meta.key);
      if (existing?.etag !== meta.etag) {
        const ttlMs = meta.expiresAt ? meta.expiresAt.getTime() - this.clock.now() : undefined;
        if (ttlMs !== undefined && ttlMs <= 0) return;
        await writeStream(local, meta.key, [bytes], { expectedSha256: meta.etag, metadata: meta.metadata, ttlMs });
      }
      this.confirm(meta.key);
    } catch (err) {
      this.logger.warn({ err, key: meta.key }, 'could not keep a local copy');
    }
  }

  /** The authoritative tier says `key` is absent: a local copy must not answer for it later. */
  private async forgetLocal(key: string): Promise<void> {
    this.confirmed.delete(key);
    try {
      await this.tiered.local?.delete(key);
    } catch (err) {
      this.logger.warn({ err, key }, 'could not drop a local copy');
    }
  }

  private confirm(key: string): void {
    this.confirmed.delete(key);
    this.confirmed.set(key, this.clock.now());
    if (this.confirmed.size > MAX_CONFIRMED) {
      const oldest = this.confirmed.keys().next().value;
      if (oldest !== undefined) this.confirmed.delete(oldest);
    }
  }
}
