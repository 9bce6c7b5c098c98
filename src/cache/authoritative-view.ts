/**
 * A view of a TieredCache for small MUTABLE objects (snapshot pointers, records): reads go straight to
 * the authoritative tier, writes and deletes go through the tiered cache (so local copies are replaced
 * or dropped). Without it, a replica could keep reading a pointer from its own memory tier long after
 * another replica moved it forward in the shared S3 tier — and its compare-and-swap, based on the
 * stale ETag, would fail forever.
 */
import type { Cache, CacheWriter, CreateOptions, ObjectMeta, OpenOptions, OpenResult } from './cache.js';
import type { TieredCache } from './tiered.js';

export class AuthoritativeReadView implements Cache {
  readonly name: string;

  constructor(private readonly tiered: TieredCache) {
    this.name = `${tiered.name}:authoritative-reads`;
  }

  private get source(): Cache {
    return this.tiered.authoritative;
  }

  stat(key: string, signal?: AbortSignal): Promise<ObjectMeta | undefined> {
    return this.source.stat(key, signal);
  }

  open(key: string, options?: OpenOptions): Promise<OpenResult | undefined> {
    return this.source.open(key, options);
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
}
