/**
 * The bookkeeping the memory and disk tiers share: objects by key in least-recently-used order
 * (a Map's insertion order, refreshed on use) with a running byte total, plus the TTL test every
 * backend applies.
 */
import type { ObjectMeta } from './cache.js';

/** True when `meta` has passed its TTL at `now` (ms since the epoch, from the backend's clock). */
export function isExpired(meta: ObjectMeta, now: number): boolean {
  return meta.expiresAt !== undefined && meta.expiresAt.getTime() <= now;
}

export interface LruIndexOptions<E> {
  /** How many bytes an entry counts against the limit. */
  sizeOf(entry: E): number;
  /** The entry's metadata (for its TTL). */
  metaOf(entry: E): ObjectMeta;
  /** Called when live()/use() find an entry past its TTL; the backend removes it its own way. */
  onExpired(key: string, entry: E): void;
  /** The time TTLs are checked against (the backend's clock). */
  now(): number;
}

export class LruIndex<E> {
  private readonly map = new Map<string, E>();
  private bytes = 0;

  constructor(private readonly options: LruIndexOptions<E>) {}

  private sizeOf(entry: E): number {
    return this.options.sizeOf(entry);
  }

  get totalBytes(): number {
    return this.bytes;
  }

  get size(): number {
    return this.map.size;
  }

  /** The entry, without changing its recency. */
  peek(key: string): E | undefined {
    return this.map.get(key);
  }

  /** The unexpired entry for `key` (an expired one is handed to onExpired), recency unchanged. */
  live(key: string): E | undefined {
    const entry = this.map.get(key);
    if (entry === undefined) return undefined;
    if (isExpired(this.options.metaOf(entry), this.options.now())) {
      this.options.onExpired(key, entry);
      return undefined;
    }
    return entry;
  }

  /** Like live(), and marks the entry most recently used. */
  use(key: string): E | undefined {
    const entry = this.live(key);
    if (entry !== undefined) this.touch(key);
    return entry;
  }

  /** Marks the entry most recently used. */
  touch(key: string): void {
    const entry = this.map.get(key);
    if (entry === undefined) return;
    this.map.delete(key);
    this.map.set(key, entry);
  }

  /** Inserts or replaces, as the most recently used entry. */
  set(key: string, entry: E): void {
    this.delete(key);
    this.map.set(key, entry);
    this.bytes += this.sizeOf(entry);
  }

  delete(key: string): E | undefined {
    const entry = this.map.get(key);
    if (entry === undefined) return undefined;
    this.map.delete(key);
    this.bytes -= this.sizeOf(entry);
    return entry;
  }

  /** The least recently used entry. */
  oldest(): [string, E] | undefined {
    const first = this.map.entries().next();
    return first.done ? undefined : first.value;
  }

  /** A copy of the entries, oldest first, safe to iterate while the index changes. */
  snapshot(): Array<[string, E]> {
    return [...this.map];
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }
}
