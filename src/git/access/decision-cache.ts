/**
 * Remembers what the upstream said about (credential, host, repository) for a short time, so a CI
 * fleet cloning one repository costs the upstream one check per credential per TTL, not one per
 * request. Time comes from an injected clock so tests move it instead of sleeping.
 *
 * Keys are built from the credential's sha256, never the credential itself; entries live in memory
 * only and the map is bounded (oldest entries go first), so a flood of distinct credentials cannot
 * grow it without limit.
 */

/** What the upstream answered for one credential and repository. */
export type AccessDecision = 'allow' | 'unauthorized' | 'not_found';

export interface DecisionCacheOptions {
  /** How long an `allow` is reused. */
  allowTtlMs: number;
  /** How long a denial is reused (shorter: a user who fixes a credential should not wait long). */
  denyTtlMs: number;
  /** Upper bound on entries (default 10,000). */
  maxEntries?: number;
  /** Milliseconds on some monotonic-enough clock; default Date.now. */
  now?: () => number;
}

interface Entry {
  decision: AccessDecision;
  expiresAt: number;
}

const DEFAULT_MAX_ENTRIES = 10_000;

/** The cache key of a decision; `credentialHash` is the sha256 hex from callerCredential(). */
export function decisionKey(credentialHash: string, host: string, repo: string): string {
  return `${credentialHash} ${host}/${repo}`;
}

export class AccessDecisionCache {
  readonly #entries = new Map<string, Entry>();
  readonly #allowTtlMs: number;
  readonly #denyTtlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;

  constructor(options: DecisionCacheOptions) {
    this.#allowTtlMs = options.allowTtlMs;
    this.#denyTtlMs = options.denyTtlMs;
    this.#maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.#now = options.now ?? Date.now;
  }

  /** The decision still valid for `key`, else undefined (an expired entry is dropped). */
  get(key: string): AccessDecision | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.#now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.decision;
  }

  /** Stores a fresh decision; a TTL of 0 stores nothing (caching disabled for that kind). */
  set(key: string, decision: AccessDecision): void {
    const ttl = decision === 'allow' ? this.#allowTtlMs : this.#denyTtlMs;
    this.#entries.delete(key);
    if (ttl <= 0) return;
    this.#entries.set(key, { decision, expiresAt: this.#now() + ttl });
    // Insertion order is age order: the first keys are the oldest, evict from there.
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  get size(): number {
    return this.#entries.size;
  }
}
