/**
 * Backfill for TieredCache: when a farther tier answers a full read, copy the bytes into the nearer
 * tiers while the caller reads them (a tee, never a second download). The copies are committed only
 * when the caller consumed the whole body, and each copy must hash to the object's etag (the writers
 * get `expectedSha256`), so a local tier never keeps a partial or corrupt object.
 */
import { Transform, pipeline, type Readable } from 'node:stream';
import type { Cache, CacheWriter, ObjectMeta } from './cache.js';
import { writeChunk } from './tiered-writer.js';
import type { Logger } from '../util/logger.js';
import type { Clock } from '../util/clock.js';

/** A token that says whether the key was mutated (through this TieredCache) since it was taken. */
export interface KeyWatch {
  changed(): boolean;
  release(): void;
}

/** A backfill running in the background, as its owner tracks it. */
export interface Backfill {
  /** Resolves once the copies were committed or dropped (never rejects). */
  readonly settled: Promise<void>;
  /** Drops the copies unless the caller already read the whole body (those still commit). */
  cancel(): void;
}

/** Hooks into the owning TieredCache. */
export interface BackfillHost {
  /** Runs `fn` while holding the key's local-mutation lock. */
  withLocalLock<T>(key: string, fn: () => Promise<T>): Promise<T>;
  /** Called once per backfill that started, so the owner can wait for it (close() must not race it). */
  track(backfill: Backfill): void;
  logger: Logger;
  /** The owner's clock: a copy keeps the remaining TTL. */
  clock: Clock;
}

interface Copy {
  tier: Cache;
  writer?: CacheWriter;
}

/**
 * Returns a body that yields exactly the bytes of `body` and, if the caller reads it to the end,
 * stores them in `tiers`. Takes ownership of `watch` (releases it when done). If nothing can be
 * backfilled (expired object, every create failed) the original body is returned.
 */
export async function teeIntoTiers(
  host: BackfillHost,
  meta: ObjectMeta,
  body: Readable,
  tiers: readonly Cache[],
  watch: KeyWatch,
): Promise<Readable> {
  const ttlMs = meta.expiresAt ? meta.expiresAt.getTime() - host.clock.now() : undefined;
  if (ttlMs !== undefined && ttlMs <= 0) {
    watch.release();
    return body;
  }
  const copies: Copy[] = [];
  for (const tier of tiers) {
    // A tier that would drop the object anyway is not worth hashing every byte for.
    if (tier.maxObjectBytes !== undefined && meta.size > tier.maxObjectBytes) continue;
    try {
      const writer = await tier.create(meta.key, { expectedSha256: meta.etag, ttlMs, metadata: meta.metadata });
      copies.push({ tier, writer });
    } catch (err) {
      host.logger.warn({ err, key: meta.key, tier: tier.name }, 'backfill create failed');
    }
  }
  if (copies.length === 0) {
    watch.release();
    return body;
  }

  const drop = async (copy: Copy, reason: unknown): Promise<void> => {
    const writer = copy.writer;
    copy.writer = undefined;
    await writer?.abort(reason);
  };
  const tee = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      const writes = copies.map(async (copy) => {
        if (!copy.writer) return;
        try {
          await writeChunk(copy.writer.stream, chunk);
        } catch (err) {
          host.logger.warn({ err, key: meta.key, tier: copy.tier.name }, 'backfill write failed');
          await drop(copy, err);
        }
      });
      // The caller waits for the slowest local tier: local tiers are fast, and it bounds memory.
      Promise.all(writes).then(
        () => callback(null, chunk),
        (err: Error) => callback(err),
      );
    },
  });

  let readToEnd = false;
  tee.once('end', () => {
    readToEnd = true;
  });
  const settleNow = async (): Promise<void> => {
    try {
      if (!readToEnd) {
        await Promise.all(copies.map((copy) => drop(copy, new Error('reader did not consume the whole body'))));
        return;
      }
      for (const copy of copies) copy.writer?.stream.end();
      await host.withLocalLock(meta.key, async () => {
        if (watch.changed()) {
          // The key was written or deleted meanwhile: these bytes may be stale, keep none of them.
          await Promise.all(copies.map((copy) => drop(copy, new Error('key changed during backfill'))));
          return;
        }
        for (const copy of copies) {
          if (!copy.writer) continue;
          try {
            await copy.writer.commit();
          } catch (err) {
            host.logger.warn({ err, key: meta.key, tier: copy.tier.name }, 'backfill commit failed');
          }
        }
      });
    } catch (err) {
      host.logger.warn({ err, key: meta.key }, 'backfill failed');
    } finally {
      watch.release();
    }
  };
  let settling: Promise<void> | undefined;
  const settle = (): Promise<void> => (settling ??= settleNow());
  let markSettled!: () => void;
  const settled = new Promise<void>((resolve) => (markSettled = resolve));
  // 'close' comes after 'end' on success, and alone when the caller or the source gave up.
  tee.once('close', () => void settle().then(markSettled));
  host.track({
    settled,
    cancel: () => {
      // A reader that never finishes must not hold its owner's close() forever.
      if (!readToEnd) void settle().then(markSettled);
    },
  });
  return pipeline(body, tee, () => undefined);
}
