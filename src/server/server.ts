/**
 * The composition root: config → storage tiers → mirrors and snapshots → HTTP. Nothing imports this
 * module except the cachewd CLI and tests; every other module receives plain options objects.
 */
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { join, resolve } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import type { CachewConfig } from '../config/types.js';
import { createLogger, type Logger } from '../util/logger.js';
import { Metrics } from '../util/metrics.js';
import type { Cache } from '../cache/cache.js';
import { MemoryCache } from '../cache/memory.js';
import { DiskCache } from '../cache/disk.js';
import { S3Cache } from '../cache/s3.js';
import { PresignedUrls } from '../cache/presigned-urls.js';
import { TieredCache } from '../cache/tiered.js';
import { blobKey } from '../cache/write.js';
import { AuthoritativeReadView } from '../cache/authoritative-view.js';
import { GuardedCache } from '../cache/guarded.js';
import { UpstreamRegistry } from '../git/upstreams.js';
import { MirrorManager } from '../git/mirrors.js';
import { SnapshotStore, staleReadLimits } from '../storage/store.js';
import { GenerationLeases } from '../storage/lease.js';
import { PublishBacklog } from '../storage/backlog.js';
import { SnapshotService } from '../git/snapshot/service.js';
import { SharedLayers } from '../git/snapshot/shared-layers.js';
import { Scheduler } from '../git/scheduler.js';
import { snapshotFormatId } from '../git/snapshot/format.js';
import { AbortedError, CachewError, isNoSpace } from '../util/errors.js';
import { systemClock, type Clock } from '../util/clock.js';
import { AccessGate } from '../git/access/gate.js';
import { DiskHealth } from '../util/disk-health.js';
import { markChildrenWith, reapOrphans } from '../util/orphans.js';
import { sweepTemp } from '../git/temp-sweep.js';
import type { Writable } from 'node:stream';
import { createHttpServer } from '../http/server.js';
import { effectiveConnectionCap, openFileLimit } from '../http/limits.js';
import { createRouter } from '../http/router.js';
import { createGitRoutes } from '../http/routes/git.js';
import { createSnapshotRoutes, type BlobRedirect } from '../http/routes/snapshot.js';
import { createApiRoutes } from '../http/routes/api.js';
import { liveness, metricsHandler, readiness } from '../http/routes/health.js';

export interface RunningServer {
  /** `http://host:port` */
  url: string;
  config: CachewConfig;
  metrics: Metrics;
  service: SnapshotService;
  scheduler: Scheduler;
  cache: Cache;
  /** Graceful stop: not ready, stop accepting, finish in-flight responses (up to the grace), close tiers. */
  close(): Promise<void>;
  /** Runs one temp sweep now (the periodic one, with the configured age bound). */
  sweep(): Promise<string[]>;
}

/** Fault-injection seams for tests; production passes none. */
export interface ServerHooks {
  /** Opens upload-pack spool files (see GitRouteDeps.openSpool). */
  openSpool?: (file: string) => Writable;
}

const MB = 1024 * 1024;

/** Options of {@link startServer} that are not configuration. */
export interface StartOptions {
  logger?: Logger;
  /** The clock of TTLs, sweeps, ref checks, retention and the scheduler (tests pass a manual one). */
  clock?: Clock;
  /**
   * Signing time of presigned S3 URLs (`--s3-redirect`); default `clock`. Tests sign in the past to
   * hand out URLs that are expired on arrival, without moving every other deadline.
   */
  presignClock?: () => number;
  /** Fault-injection seams for tests. */
  hooks?: ServerHooks;
}

export async function startServer(config: CachewConfig, options: StartOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const clock = options.clock ?? systemClock;
  const metrics = new Metrics({ defaultMetrics: true });
  const stateDir = resolve(config.stateDir);
  await mkdir(stateDir, { recursive: true });
  // Fail at start-up, not on the first snapshot request, when git (or the zstd CLI, needed only when
  // the zstd-napi addon is not built) is missing.
  const formatId = await snapshotFormatId().catch((err: unknown) => {
    throw new CachewError('internal', `git, and zstd unless the zstd-napi addon is built, must be on PATH (${(err as Error).message.split('\n')[0]})`);
  });

  // Before anything else touches the state dir: children a crashed run left behind are killed, then
  // every temp location is emptied (nothing of ours can be using it now).
  markChildrenWith(stateDir);
  const reaped = await reapOrphans({ stateDir });
  if (reaped.length > 0) logger.warn({ groups: reaped.length }, 'killed git children left by a crashed cachewd');
  const mirrorsRoot = join(stateDir, 'mirrors');
  const scratchDirs = [join(stateDir, 'tmp'), join(mirrorsRoot, '.tmp')];
  const startup = await sweepTemp({ scratchDirs, mirrorsRoot, olderThanMs: 0 });
  if (startup.removed.length > 0) logger.info({ removed: startup.removed.length }, 'removed temp leftovers of an earlier run');
  const disk = new DiskHealth({ dir: stateDir, minFreeBytes: config.hygiene.minFreeDiskBytes, now: () => clock.now() });

  // Set once the snapshot service exists: S3 answering again publishes the backlog.
  let onS3Recovered = (): void => {};
  const cache = await openCache(config, stateDir, logger, metrics, clock, () => onS3Recovered());
  const shared = cache.authoritative instanceof GuardedCache ? cache.authoritative : undefined;
  const stopS3Sweeper = startS3Sweeper(shared, logger, clock);
  // Pointers and records are read from S3; while it is unreachable, local copies answer (bounded).
  const metadataCache = new AuthoritativeReadView(cache, {
    staleLimitMs: staleReadLimits(config.s3StaleReadsMs),
    onStaleRead: () => metrics.staleReads.inc(),
    logger,
    clock,
  });
  const upstreams = new UpstreamRegistry(config.upstreams);
  const mirrors = new MirrorManager({
    root: mirrorsRoot,
    refCheckIntervalMs: config.refCheckIntervalMs,
    waitMs: config.mirrorWaitMs,
    logger,
    metrics,
    upstreams,
    clock,
  });
  const local = cache.local;
  const backlog =
    shared && local
      ? new PublishBacklog({ dir: join(stateDir, 'backlog'), logger, onSize: (entries) => metrics.publishBacklog.set(entries) })
      : undefined;
  const store = new SnapshotStore({
    cache,
    metadataCache,
    logger,
    graceMs: config.snapshotGraceMs,
    now: () => clock.now(),
    degraded: shared && local && backlog ? { local, shared, backlog } : undefined,
  });
  // Aborted once in-flight responses are done: background generations stop instead of delaying exit.
  const shutdown = new AbortController();
  const service = new SnapshotService({
    shutdown: shutdown.signal,
    store,
    mirrors,
    workDir: join(stateDir, 'tmp'),
    packDir: join(stateDir, 'packs'),
    // Only S3 is shared between replicas; without it the local layer cache already does the job and a
    // copy in the disk tier (under the same state directory) would only cost space.
    sharedLayers: config.s3 ? new SharedLayers({ cache, metadataCache: new AuthoritativeReadView(cache), logger }) : undefined,
    leases: shared
      ? new GenerationLeases({
          cache: shared,
          owner: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
          ttlMs: config.generationLeaseMs,
          logger,
          // Wall time on purpose, even when tests inject a clock: a lease's expiry is compared across
          // processes, and a waiter must poll while a test's manual clock stands still.
          clock: systemClock,
          onOutcome: (outcome) => metrics.generationLeases.inc({ outcome }),
        })
      : undefined,
    backlog,
    bundleTtlMs: config.bundleTtlMs,
    logger,
    metrics,
  });
  const stopBacklog = startBacklogPublisher(service, backlog, logger);
  onS3Recovered = () => void publishBacklog(service, logger);
  const scheduler = new Scheduler({
    service,
    snapshotIntervalMs: config.snapshotIntervalMs,
    retentionIntervalMs: Math.max(1000, Math.min(60_000, Math.floor(config.snapshotGraceMs / 4) || 1000)),
    listRepos: () => mirrors.list(),
    logger,
    clock,
  });

  const passthrough = new Set(config.upstreams.filter((u) => u.auth === 'passthrough').map((u) => u.name));
  const access =
    passthrough.size > 0
      ? new AccessGate({
          upstreams,
          passthrough,
          allowTtlMs: config.authAllowTtlMs,
          denyTtlMs: config.authDenyTtlMs,
          clock,
          logger,
          metrics,
        })
      : undefined;

  let ready = false;
  const router = createRouter({
    upstreams: new Map(config.upstreams.map((u) => [u.name, u.baseUrl])),
    git: createGitRoutes({ mirrors, upstreams, readOnly: config.readOnly, metrics, logger, limits: config.http, openSpool: options.hooks?.openSpool }).handle,
    snapshots: createSnapshotRoutes({ service, reader: store, metrics, redirect: blobRedirect(config, cache, options.presignClock ?? (() => clock.now())) }),
    api: createApiRoutes({ service, reader: store, isMirrored: (host, repo) => mirrors.has(host, repo) }),
    liveness,
    readiness: readiness(() => ready, {
      checks: [async () => (await disk.check()).problem],
      degraded: () => (shared?.state === 'degraded' ? `s3 unreachable since ${new Date(shared.since).toISOString()}` : undefined),
    }),
    metrics: metricsHandler(metrics),
    apiToken: config.apiToken,
    access,
  });
  const fdLimit = openFileLimit();
  const maxConnections = effectiveConnectionCap(config.http.maxConnections, fdLimit);
  if (maxConnections < config.http.maxConnections) {
    logger.warn({ configured: config.http.maxConnections, applied: maxConnections, fdLimit }, 'max-connections lowered to fit the open-file limit (raise ulimit -n)');
  }
  // A full disk anywhere below is noted for readiness before the error becomes its 507.
  const observed: typeof router = async (ctx) => {
    try {
      await router(ctx);
    } catch (err) {
      if (isNoSpace(err)) disk.noteNoSpace();
      throw err;
    }
  };
  const http = createHttpServer(observed, { logger, metrics, limits: { ...config.http, maxConnections } });
  await http.listen(config.bind.host, config.bind.port);
  scheduler.start();
  const sweep = async (): Promise<string[]> => {
    await reapOrphans({ stateDir });
    const report = await sweepTemp({ scratchDirs, mirrorsRoot, olderThanMs: config.hygiene.tempMaxAgeMs });
    if (report.removed.length > 0) logger.info({ removed: report.removed.length }, 'swept stale temp files');
    return report.removed;
  };
  const sweeper =
    config.hygiene.sweepIntervalMs > 0
      ? setInterval(() => void sweep().catch((err: unknown) => logger.warn({ err }, 'temp sweep failed')), config.hygiene.sweepIntervalMs).unref()
      : undefined;
  ready = true;
  const url = http.url();
  logger.info({ url, stateDir, s3: config.s3?.bucket, upstreams: config.upstreams.map((u) => u.name), passthrough: [...passthrough], snapshotFormat: formatId }, 'cachewd listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    config,
    metrics,
    service,
    scheduler,
    cache,
    sweep,
    close() {
      closing ??= (async () => {
        ready = false;
        clearInterval(sweeper);
        await http.close(config.shutdownGraceMs);
        stopS3Sweeper();
        stopBacklog();
        await scheduler.stop();
        shutdown.abort(new AbortedError('cachewd is shutting down'));
        await service.drain();
        await mirrors.close();
        await cache.close();
        logger.info('cachewd stopped');
      })();
      return closing;
    },
  };
}

async function openCache(
  config: CachewConfig,
  stateDir: string,
  logger: Logger,
  metrics: Metrics,
  clock: Clock,
  onS3Recovered: () => void,
): Promise<TieredCache> {
  const tiers: Cache[] = [];
  if (config.memoryLimitMb > 0) {
    tiers.push(new MemoryCache({ limitBytes: config.memoryLimitMb * MB, maxObjectBytes: config.memoryMaxObjectMb * MB, logger, clock }));
  }
  tiers.push(await DiskCache.open({ root: join(stateDir, 'cache'), limitBytes: config.diskLimitMb * MB, logger, clock }));
  if (config.s3) {
    const client = new S3Client({
      region: config.s3.region,
      endpoint: config.s3.endpoint,
      forcePathStyle: config.s3.endpoint !== undefined,
      // An unreachable S3 (no RST, packets dropped) must fail in bounded time so degraded mode starts.
      requestHandler: { connectionTimeout: 5_000 },
    });
    const s3 = new S3Cache({ client, bucket: config.s3.bucket, prefix: config.s3.prefix || undefined, logger, clock });
    // Fails fast while S3 is unreachable and probes it until it answers (degraded mode).
    tiers.push(
      new GuardedCache(s3, {
        logger,
        clock,
        onStateChange: (state) => {
          metrics.storageDegraded.set({ tier: 's3' }, state === 'degraded' ? 1 : 0);
          if (state === 'healthy') onS3Recovered();
        },
        onFailure: () => metrics.storageFailures.inc({ tier: 's3' }),
      }),
    );
    metrics.storageDegraded.set({ tier: 's3' }, 0);
  }
  return new TieredCache(tiers, {
    logger,
    clock,
    observer: {
      hit: (tier: string, bytes: number) => {
        metrics.cacheHits.inc({ tier });
        metrics.cacheBytes.inc({ tier }, bytes);
      },
      miss: (tier: string) => metrics.cacheMisses.inc({ tier }),
    },
  });
}

/** `--s3-redirect`: presigned GET URLs of blobs in the S3 tier, or undefined when redirecting is off. */
function blobRedirect(config: CachewConfig, cache: TieredCache, signingClock: () => number): BlobRedirect | undefined {
  // The S3 tier sits behind the degraded-mode guard (cache/guarded.ts); presigning needs the S3Cache itself.
  const shared = cache.authoritative;
  const s3 = shared instanceof GuardedCache ? shared.inner : shared;
  if (!config.s3Redirect || !(s3 instanceof S3Cache)) return undefined;
  const urls = new PresignedUrls(s3, { ttlMs: config.s3RedirectTtlMs, now: signingClock });
  return (digest, signal) => urls.get(blobKey(digest), signal);
}

/** Uploads and temp objects older than this are leftovers of a crashed writer (no write takes an hour). */
const S3_LEFTOVER_AGE_MS = 60 * 60_000;

/**
 * Periodically aborts multipart uploads and deletes temp objects that a crashed replica left in S3
 * (a bucket lifecycle rule does the same; see docs/config.md). Returns a stop function.
 */
function startS3Sweeper(shared: GuardedCache | undefined, logger: Logger, clock: Clock): () => void {
  const s3 = shared?.inner;
  if (!(s3 instanceof S3Cache)) return () => {};
  const sweep = (): void => {
    s3.sweep(S3_LEFTOVER_AGE_MS).then(
      (report) => logger.debug({ ...report }, 's3 sweep'),
      (err: unknown) => logger.warn({ err }, 's3 sweep failed'),
    );
  };
  const first = clock.setTimeout(sweep, 10_000);
  const timer = clock.setInterval(sweep, S3_LEFTOVER_AGE_MS);
  return () => {
    first.cancel();
    timer.cancel();
  };
}

/** How often the publish backlog is retried besides S3's recovery and start-up. */
const BACKLOG_RETRY_MS = 60_000;

function publishBacklog(service: SnapshotService, logger: Logger): Promise<void> {
  return service.publishBacklog().then(
    (published) => {
      if (published > 0) logger.info({ published }, 'publish backlog drained');
    },
    (err: unknown) => logger.warn({ err }, 'publishing the backlog failed'),
  );
}

/** Publishes what an earlier run kept locally (shortly after start), then retries every minute while anything waits. */
function startBacklogPublisher(service: SnapshotService, backlog: PublishBacklog | undefined, logger: Logger): () => void {
  if (!backlog) return () => {};
  const tick = (): void => {
    if (backlog.size > 0) void publishBacklog(service, logger);
  };
  const first = setTimeout(tick, 1_000).unref();
  const timer = setInterval(tick, BACKLOG_RETRY_MS).unref();
  return () => {
    clearTimeout(first);
    clearInterval(timer);
  };
}
