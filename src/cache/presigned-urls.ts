/**
 * Presigned GET URLs for `--s3-redirect`, reused for the first half of their lifetime. Signing a URL
 * costs a HEAD on S3 (is the object there?) plus the signature; a popular snapshot downloaded by many
 * clients, or by `curl -L` once per range, would pay that on every request. A reused URL still has at
 * least half its lifetime left when handed out, and every client re-resolves an expired one anyway.
 */
import type { PresignOptions } from './s3.js';

/** What this needs of S3Cache. */
export interface Presigner {
  presignGet(key: string, options: PresignOptions): Promise<string | undefined>;
}

export interface PresignedUrlsOptions {
  /** Lifetime of each URL. */
  ttlMs: number;
  /** Signing clock in ms since the epoch. */
  now: () => number;
  /** Most URLs remembered (least recently signed go first); default 1024. */
  maxEntries?: number;
}

/** Hands out presigned GET URLs of cache keys, signing a new one only when needed. */
export class PresignedUrls {
  /** Map order is signing order: the first entry is the oldest. */
  private readonly urls = new Map<string, { url: string; signedAt: number }>();
  private readonly maxEntries: number;

  constructor(
    private readonly presigner: Presigner,
    private readonly options: PresignedUrlsOptions,
  ) {
    this.maxEntries = options.maxEntries ?? 1024;
  }

  /** A URL of `key` valid for at least half the TTL from now, or undefined when S3 lacks the object. */
  async get(key: string, signal?: AbortSignal): Promise<string | undefined> {
    const now = this.options.now();
    const known = this.urls.get(key);
    if (known && now >= known.signedAt && now - known.signedAt < this.options.ttlMs / 2) return known.url;
    this.urls.delete(key);
    const url = await this.presigner.presignGet(key, {
      expiresInSeconds: Math.floor(this.options.ttlMs / 1000),
      signedAt: new Date(now),
      signal,
    });
    if (url === undefined) return undefined;
    this.urls.set(key, { url, signedAt: now });
    if (this.urls.size > this.maxEntries) this.urls.delete(this.urls.keys().next().value as string);
    return url;
  }
}
