/**
 * Generation leases: with several replicas on one bucket, one snapshot generation per repository at a
 * time, instead of every replica that sees a new commit generating the same archive.
 *
 * A lease is a small JSON object `leases/<host>/<repo>.json` in the shared tier: `{owner, token,
 * expires}`. It is only ever changed by conditional writes, so two replicas never both believe they
 * hold it:
 * - take a free lease: create-if-absent (`If-None-Match: *`);
 * - take over an expired or released one: compare-and-swap on the etag we read (`If-Match`), so of two
 *   replicas that saw the same dead holder only one wins;
 * - renew (every ttl/3 while generating) and release (expires = the epoch): `If-Match` on our etag, so a
 *   holder that lost its lease to a take-over never overwrites the new holder.
 * A replica that finds the lease held polls for the holder's result (the commit's record) and uses it;
 * when the lease expires (the holder died) or is released without that result, it takes the lease.
 *
 * Correctness never depends on the lease: records are create-if-absent, so the first writer wins anyway.
 * The lease only saves work, hence it fails open: if the lease store errors, or a holder keeps the
 * lease past `maxWaitMs`, the caller generates regardless. Expiry compares the holder's clock (written
 * into `expires`) with ours, so the TTL must be well above the clock skew between replicas.
 */
import { randomUUID } from 'node:crypto';
import type { Cache } from '../cache/cache.js';
import { AlreadyExistsError, PreconditionFailedError, abortReason } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { systemClock, type Clock } from '../util/clock.js';
import { isString, isTime, objectParser, readJson, repoKeyPart, required, writeJson } from './records.js';

/** How a {@link GenerationLeases.run} ended, for metrics. */
export type LeaseOutcome = 'taken' | 'took-over' | 'waited' | 'failed-open' | 'timed-out';

export interface GenerationLeasesOptions {
  /** The shared, authoritative tier (never a local copy: a lease is only as good as its compare-and-swap). */
  cache: Cache;
  /** This replica's identity, written into the lease for operators. */
  owner: string;
  /** How long a lease lasts without renewal (default 60 s). */
  ttlMs?: number;
  /** How often a waiting replica looks for the holder's result (default min(1 s, ttl/10)). */
  pollMs?: number;
  /** A waiter gives up waiting and generates after this long (default 10 × ttl). */
  maxWaitMs?: number;
  logger?: Logger;
  onOutcome?: (outcome: LeaseOutcome) => void;
  /** Expiry, polling and renewal run on this clock (tests pass a ManualClock). */
  clock?: Clock;
}

interface LeaseBody {
  owner: string;
  token: string;
  /** ISO-8601; the epoch means released. */
  expires: string;
}

type Attempt = { kind: 'taken'; etag: string; tookOver: boolean } | { kind: 'held'; until: number };

const RELEASED = new Date(0).toISOString();

export function leaseKey(host: string, repo: string): string {
  return `leases/${repoKeyPart(host, repo)}.json`;
}

const parseLease = objectParser<LeaseBody>({
  owner: required(isString),
  token: required(isString),
  expires: required(isTime),
});

export class GenerationLeases {
  private readonly ttlMs: number;
  private readonly pollMs: number;
  private readonly maxWaitMs: number;
  private readonly clock: Clock;
  private readonly logger: Logger;

  constructor(private readonly options: GenerationLeasesOptions) {
    this.ttlMs = Math.max(1, options.ttlMs ?? 60_000);
    this.pollMs = Math.max(1, options.pollMs ?? Math.min(1_000, Math.floor(this.ttlMs / 10)));
    this.maxWaitMs = options.maxWaitMs ?? 10 * this.ttlMs;
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? silentLogger).child({ module: 'generation-lease' });
  }

  /**
   * Runs `work` while holding the repository's lease, or returns the result another replica produced
   * meanwhile: `finished()` is asked after every failed take (and once more right after a successful
   * one) and its first non-undefined answer wins. Errors of `work` and `finished` propagate; errors of
   * the lease store make `work` run without a lease.
   */
  async run<T>(host: string, repo: string, work: () => Promise<T>, finished: () => Promise<T | undefined>, signal?: AbortSignal): Promise<T> {
    const key = leaseKey(host, repo);
    const deadline = this.clock.now() + this.maxWaitMs;
    for (;;) {
      if (signal?.aborted) throw abortReason(signal);
      let attempt: Attempt;
      try {
        attempt = await this.tryTake(key, signal);
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal);
        this.logger.warn({ err, host, repo }, 'lease store failed; generating without a lease');
        this.options.onOutcome?.('failed-open');
        return work();
      }
      if (attempt.kind === 'taken') {
        this.options.onOutcome?.(attempt.tookOver ? 'took-over' : 'taken');
        if (attempt.tookOver) this.logger.info({ host, repo }, 'took over an expired generation lease');
        return this.holding(key, attempt.etag, async () => (await finished()) ?? work());
      }
      const done = await finished();
      if (done !== undefined) {
        this.options.onOutcome?.('waited');
        return done;
      }
      const now = this.clock.now();
      if (now >= deadline) {
        this.logger.warn({ host, repo }, 'generation lease held too long; generating anyway');
        this.options.onOutcome?.('timed-out');
        return work();
      }
      await this.sleep(Math.max(1, Math.min(this.pollMs, attempt.until - now, deadline - now)), signal);
    }
  }

  /** One attempt to take the lease: free → create-if-absent; expired or released → compare-and-swap. */
  private async tryTake(key: string, signal?: AbortSignal): Promise<Attempt> {
    const current = await readJson(this.options.cache, key, parseLease, signal);
    const now = this.clock.now();
    const mine: LeaseBody = { owner: this.options.owner, token: randomUUID(), expires: new Date(now + this.ttlMs).toISOString() };
    const expires = current ? Date.parse(current.value.expires) : 0;
    if (current && expires > now) return { kind: 'held', until: expires };
    try {
      const meta = await writeJson(this.options.cache, key, mine, current ? { ifMatch: current.etag, signal } : { ifNoneMatch: '*', signal });
      return { kind: 'taken', etag: meta.etag, tookOver: current !== undefined && current.value.expires !== RELEASED };
    } catch (err) {
      // Another replica took it between our read and our write: it is held now.
      if (err instanceof AlreadyExistsError || err instanceof PreconditionFailedError) return { kind: 'held', until: now + this.pollMs };
      throw err;
    }
  }

  /** Runs `work` while renewing the lease every ttl/3; releases it afterwards (both best effort). */
  private async holding<T>(key: string, etag: string, work: () => Promise<T>): Promise<T> {
    let current = etag;
    let lost = false;
    let renewing: Promise<void> | undefined;
    const renew = async (): Promise<void> => {
      const body: LeaseBody = { owner: this.options.owner, token: randomUUID(), expires: new Date(this.clock.now() + this.ttlMs).toISOString() };
      try {
        current = (await writeJson(this.options.cache, key, body, { ifMatch: current })).etag;
      } catch (err) {
        // Lost (taken over after a stall) or the store failed: keep generating, the record decides.
        lost = true;
        this.logger.warn({ err, key }, 'could not renew the generation lease');
      }
    };
    const timer = this.clock.setInterval(() => {
      if (!lost && !renewing) renewing = renew().finally(() => (renewing = undefined));
      return renewing;
    }, Math.max(1, Math.floor(this.ttlMs / 3)));
    try {
      return await work();
    } finally {
      timer.cancel();
      await renewing;
      if (!lost) await this.release(key, current);
    }
  }

  /** Resolves after `ms` on the clock; rejects when `signal` aborts. */
  private sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal));
        return;
      }
      const onAbort = (): void => {
        timer.cancel();
        reject(abortReason(signal!));
      };
      const timer = this.clock.setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private async release(key: string, etag: string): Promise<void> {
    const body: LeaseBody = { owner: this.options.owner, token: randomUUID(), expires: RELEASED };
    try {
      await writeJson(this.options.cache, key, body, { ifMatch: etag });
    } catch (err) {
      // It expires on its own; a waiter takes it over then.
      this.logger.debug({ err, key }, 'could not release the generation lease');
    }
  }
}
