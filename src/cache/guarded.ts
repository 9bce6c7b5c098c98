/**
 * GuardedCache: a circuit breaker around the shared (authoritative) tier.
 *
 * When S3 is unreachable every call to it costs the SDK's retries before it fails, and a replica that
 * keeps asking turns one outage into slow answers everywhere. The guard watches the outcome of every
 * call: after `failureThreshold` consecutive failures that mean "the tier is down" (UnavailableError,
 * TimeoutError) it marks the tier **degraded** and from then on fails every call at once with
 * UnavailableError, without touching the network. While degraded it probes the tier every
 * `probeIntervalMs` with one cheap stat(); the first probe that gets an answer (a miss is an answer)
 * marks it healthy again, so recovery needs no restart.
 *
 * Callers that can do without the shared tier (the local-fallback reads of authoritative-view.ts, the
 * publish backlog) see the fast UnavailableError and switch to their local path; everything else
 * answers 503 quickly. Precondition failures, misses and bad requests are answers, not failures.
 */
import type { Cache, CacheWriter, CreateOptions, ObjectMeta, OpenOptions, OpenResult } from './cache.js';
import { CachewError, UnavailableError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { systemClock, type Clock, type Timer } from '../util/clock.js';

/** `healthy`: calls go through. `degraded`: calls fail fast until a probe succeeds. */
export type TierState = 'healthy' | 'degraded';

/** Options of {@link GuardedCache}. */
export interface GuardedCacheOptions {
  /** Consecutive failed calls that mark the tier degraded (default 3; the SDK already retried each). */
  failureThreshold?: number;
  /** How often a degraded tier is probed (default 5 s). */
  probeIntervalMs?: number;
  /** The key the probe stats; it need not exist (default `.health/probe`). */
  probeKey?: string;
  /** Told of every state change (metrics, the publish backlog). */
  onStateChange?: (state: TierState) => void;
  /** Told of every failed call (metrics). */
  onFailure?: () => void;
  logger?: Logger;
  /** Time and the probe timer (tests pass a ManualClock). */
  clock?: Clock;
}

const RETRY_AFTER_SECONDS = 5;

/** True for failures that say the tier itself is unreachable or refusing, not that the request was wrong. */
export function isOutage(err: unknown): boolean {
  return err instanceof CachewError && (err.code === 'unavailable' || err.code === 'timeout');
}

/** A Cache that forwards to `inner` while it is healthy and fails fast while it is degraded. */
export class GuardedCache implements Cache {
  readonly name: string;
  private readonly threshold: number;
  private readonly probeIntervalMs: number;
  private readonly probeKey: string;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private current: TierState = 'healthy';
  private changedAt: number;
  private consecutiveFailures = 0;
  private probeTimer: Timer | undefined;
  private probing: Promise<boolean> | undefined;
  private closed = false;

  constructor(
    readonly inner: Cache,
    private readonly options: GuardedCacheOptions = {},
  ) {
    this.name = inner.name;
    this.threshold = Math.max(1, options.failureThreshold ?? 3);
    this.probeIntervalMs = options.probeIntervalMs ?? 5_000;
    this.probeKey = options.probeKey ?? '.health/probe';
    this.logger = (options.logger ?? silentLogger).child({ module: 'cache-guard', tier: inner.name });
    this.clock = options.clock ?? systemClock;
    this.changedAt = this.clock.now();
  }

  get state(): TierState {
    return this.current;
  }

  /** When the tier entered its current state (ms since the epoch). */
  get since(): number {
    return this.changedAt;
  }

  /**
   * Asks the tier once (a stat of the probe key). Any answer marks it healthy; an outage keeps (or
   * makes) it degraded. Concurrent calls share one probe. Resolves whether the tier answered.
   */
  probe(): Promise<boolean> {
    this.probing ??= (async () => {
      try {
        await this.inner.stat(this.probeKey);
        this.succeeded();
        return true;
      } catch (err) {
        if (!isOutage(err)) {
          this.succeeded();
          return true;
        }
        this.logger.debug({ err: (err as Error).message }, 'probe failed');
        this.failed(true);
        return false;
      } finally {
        this.probing = undefined;
      }
    })();
    return this.probing;
  }

  stat(key: string, signal?: AbortSignal): Promise<ObjectMeta | undefined> {
    return this.guard(() => this.inner.stat(key, signal));
  }

  open(key: string, options?: OpenOptions): Promise<OpenResult | undefined> {
    return this.guard(() => this.inner.open(key, options));
  }

  async create(key: string, options?: CreateOptions): Promise<CacheWriter> {
    const writer = await this.guard(() => this.inner.create(key, options));
    return {
      stream: writer.stream,
      commit: () => this.guard(() => writer.commit(), false),
      abort: (reason?: unknown) => writer.abort(reason),
    };
  }

  delete(key: string, signal?: AbortSignal): Promise<boolean> {
    return this.guard(() => this.inner.delete(key, signal));
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectMeta> {
    this.failFast();
    try {
      for await (const meta of this.inner.list(prefix, signal)) yield meta;
      this.succeeded();
    } catch (err) {
      if (isOutage(err) && !signal?.aborted) this.failed(false);
      throw err;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopProbing();
    await this.inner.close();
  }

  private failFast(): void {
    if (this.current === 'degraded') {
      throw new UnavailableError('shared storage is unreachable (degraded mode), retry later', RETRY_AFTER_SECONDS);
    }
  }

  /** Runs one call unless degraded; records its outcome. A commit already started is never refused. */
  private async guard<T>(call: () => Promise<T>, refuseWhenDegraded = true): Promise<T> {
    if (refuseWhenDegraded) this.failFast();
    try {
      const result = await call();
      this.succeeded();
      return result;
    } catch (err) {
      if (isOutage(err)) this.failed(false);
      else this.succeeded();
      throw err;
    }
  }

  private succeeded(): void {
    this.consecutiveFailures = 0;
    if (this.current === 'healthy') return;
    this.stopProbing();
    this.setState('healthy');
    this.logger.warn({ downMs: this.clock.now() - this.changedAt }, 'shared storage reachable again');
  }

  private failed(fromProbe: boolean): void {
    this.options.onFailure?.();
    if (this.current === 'degraded') return;
    if (!fromProbe && ++this.consecutiveFailures < this.threshold) return;
    this.setState('degraded');
    this.logger.error('shared storage unreachable: serving from local tiers (degraded mode)');
    this.startProbing();
  }

  private setState(state: TierState): void {
    this.current = state;
    this.changedAt = this.clock.now();
    this.options.onStateChange?.(state);
  }

  private startProbing(): void {
    if (this.probeTimer || this.closed) return;
    this.probeTimer = this.clock.setInterval(() => this.probe(), Math.max(1, this.probeIntervalMs));
  }

  private stopProbing(): void {
    this.probeTimer?.cancel();
    this.probeTimer = undefined;
  }
}
