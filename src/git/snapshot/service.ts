/**
 * The snapshot service: the one place that ties a repository's mirror to its stored snapshots.
 * It answers "what is the current snapshot?" (generating one on a miss), keeps snapshots moving
 * forward as upstream moves, and makes delta bundles. Every expensive step is single-flight per
 * repository, so a burst of requests to a cold repository causes one generation.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../../util/logger.js';
import type { Metrics } from '../../util/metrics.js';
import { SingleFlight } from '../../util/single-flight.js';
import { NotFoundError, BadRequestError } from '../../util/errors.js';
import { isCommit } from '../../protocol/routes.js';
import type { MirrorManager } from '../mirrors.js';
import type { Mirror } from '../mirror.js';
import { generateSnapshot } from './archive.js';
import { snapshotFormatId } from './format.js';
import type { SnapshotStore } from '../../storage/store.js';
import type { BundleRecord, SnapshotRecord } from '../../storage/records.js';
import { createBundle } from '../bundle.js';
import { prepareNextLayers, type LayerShare } from './layer-packs.js';
import type { SharedLayers } from './shared-layers.js';
import type { GenerationLeases } from '../../storage/lease.js';
import type { PublishBacklog } from '../../storage/backlog.js';
import { isOutage } from '../../cache/guarded.js';

export interface SnapshotServiceOptions {
  store: SnapshotStore;
  mirrors: MirrorManager;
  /** Scratch space for archives being generated (same filesystem as the disk tier is best). */
  workDir: string;
  /**
   * Root of the per-repository layer caches (`<packDir>/<host>/<repo>/`, ':' in the host replaced by
   * '_'), which make regeneration after a new commit cheap; unset: no cache.
   */
  packDir?: string;
  /** Layer packs shared with other replicas through the cache; unset: each replica computes its own. */
  sharedLayers?: SharedLayers;
  /** Snapshots kept locally during an S3 outage; publishBacklog() publishes them (see storage/backlog.ts). */
  backlog?: PublishBacklog;
  /** Replicas sharing S3 take this lease before generating, so one of them generates (see storage/lease.ts). */
  leases?: GenerationLeases;
  bundleTtlMs: number;
  logger: Logger;
  metrics?: Metrics;
  /**
   * Aborted at shutdown: a generation or publish still running stops (nothing partial is published)
   * instead of holding the shutdown for a whole generation.
   */
  shutdown?: AbortSignal;
}

/** What the stable URL serves: the current snapshot and, when the mirror is ahead, the head to bundle to. */
export interface CurrentSnapshot {
  record: SnapshotRecord;
  /** The mirror's default-branch head when it is a descendant of `record.commit` (a bundle applies). */
  aheadHead?: string;
}

type StoredCurrent = NonNullable<Awaited<ReturnType<SnapshotStore['current']>>>;

/**
 * Maps an S3 outage to "not known": while S3 is unreachable this replica keeps generating from its
 * mirror (degraded publishing) rather than refusing, and S3's first-writer-wins record settles any
 * duplicate once it is back.
 */
function unknownDuringOutage(err: unknown): undefined {
  if (isOutage(err)) return undefined;
  throw err;
}

export class SnapshotService {
  private readonly generations = new SingleFlight<SnapshotRecord>();
  private readonly refreshes = new SingleFlight<SnapshotRecord | undefined>();
  /** Background layer preparations (one per repository at a time); aborted by drain(). */
  private readonly preparations = new SingleFlight<void>();
  private readonly stopping = new AbortController();
  private readonly drains = new SingleFlight<number>();
  private readonly log: Logger;

  constructor(private readonly options: SnapshotServiceOptions) {
    this.log = options.logger.child({ module: 'snapshots' });
  }

  /**
   * Resolves the current snapshot of a repository for the stable URL: refreshes the mirror (at most
   * every ref-check interval), generates a first snapshot on a miss, and when upstream has moved on
   * schedules a new snapshot in the background while the current one keeps being served.
   */
  async current(host: string, repo: string, signal?: AbortSignal): Promise<CurrentSnapshot> {
    const stored = await this.servableWithoutMirror(host, repo);
    if (stored) return { record: stored };
    const mirror = await this.readyMirror(host, repo, signal);
    await mirror.ensureFresh({ signal });
    const head = await mirror.defaultBranch();
    const existing = await this.storedCurrent(host, repo);
    if (!existing) {
      const record = await this.generate(host, repo, mirror, head.commit, head.name);
      return { record };
    }
    const record = existing.record;
    if (record.commit === head.commit) return { record };
    // Only advertise a bundle (and regenerate) when the mirror is really ahead of the snapshot;
    // a replica with an older mirror than the shared pointer must not move anything backwards.
    const ahead = await mirror.isAncestor(record.commit, head.commit);
    if (!ahead) {
      const forcePushed = !(await mirror.isAncestor(head.commit, record.commit));
      if (forcePushed) this.scheduleGeneration(host, repo, mirror, head.commit, head.name, true);
      return { record };
    }
    this.scheduleGeneration(host, repo, mirror, head.commit, head.name, false);
    return { record, aheadHead: head.commit };
  }

  /** Fetches upstream now and returns the snapshot of the new head, generating it if needed (API POST). */
  async snapshotNow(host: string, repo: string, signal?: AbortSignal): Promise<SnapshotRecord> {
    const mirror = await this.readyMirror(host, repo, signal);
    await mirror.fetchNow({ signal });
    const head = await mirror.defaultBranch();
    // generate() returns an existing record as is (moving the pointer to it if it lags).
    return this.generate(host, repo, mirror, head.commit, head.name);
  }

  /** Scheduler hook: fetch, and snapshot the head if it changed. Single-flight per repository. */
  async refresh(host: string, repo: string, signal?: AbortSignal): Promise<SnapshotRecord | undefined> {
    return this.refreshes.run(`${host}/${repo}`, async () => {
      const mirror = await this.readyMirror(host, repo, signal);
      await mirror.fetchNow({ signal });
      const head = await mirror.defaultBranch();
      const current = await this.storedCurrent(host, repo);
      if (current?.record.commit === head.commit) return current.record;
      return this.generate(host, repo, mirror, head.commit, head.name);
    });
  }

  /**
   * The delta bundle from `base` to the mirror's current head: undefined when `base` is the head
   * (204); NotFoundError when the mirror does not know `base`.
   */
  async bundle(host: string, repo: string, base: string, signal?: AbortSignal): Promise<BundleRecord | undefined> {
    if (!isCommit(base)) throw new BadRequestError('base must be a 40- or 64-character lowercase hex commit');
    const mirror = await this.readyMirror(host, repo, signal);
    await mirror.ensureFresh({ signal });
    const head = await mirror.defaultBranch();
    if (base === head.commit) return undefined;
    if (!(await mirror.hasCommit(base)) || !(await mirror.isAncestor(base, head.commit))) {
      throw new NotFoundError(`unknown base commit ${base}`);
    }
    return this.options.store.publishBundle({
      host,
      repo,
      base,
      head: head.commit,
      ttlMs: this.options.bundleTtlMs,
      make: async (outPath: string) =>
        createBundle({ gitDir: mirror.gitDir, base, head: head.commit, headRef: `refs/heads/${head.name}`, outPath }),
      workDir: this.options.workDir,
    });
  }

  /** Deletes superseded snapshots past the grace period for `repos` (the scheduler passes the mirror inventory). */
  async collectGarbage(repos: Iterable<{ host: string; repo: string }>): Promise<void> {
    for (const { host, repo } of repos) {
      try {
        await this.options.store.collectGarbage(host, repo);
      } catch (err) {
        this.log.warn({ err, host, repo }, 'retention failed');
      }
    }
  }

  /** Waits for generations in flight (shutdown). */
  async drain(): Promise<void> {
    this.stopping.abort();
    await this.generations.drain();
    await this.refreshes.drain();
    await this.preparations.drain();
    await this.drains.drain();
  }

  /**
   * Publishes the snapshots kept locally while S3 was unreachable (see storage/backlog.ts), in any order (the
   * pointer only ever moves forward, so an older entry published last changes nothing); stops at the
   * first outage (the next recovery, tick or start-up retries). An entry whose local blob was evicted
   * is regenerated instead. One drain at a time; resolves with the number published.
   */
  publishBacklog(): Promise<number> {
    return this.drains.run('backlog', async () => {
      const backlog = this.options.backlog;
      if (!backlog) return 0;
      let published = 0;
      for (const entry of await backlog.list()) {
        const { host, repo, commit } = entry;
        try {
          const mirror = await this.readyMirror(host, repo);
          try {
            const record = await this.options.store.publishPending(entry, (a, b) => mirror.isAncestor(a, b));
            this.log.info({ host, repo, commit, digest: record.digest }, 'published a snapshot kept locally during the outage');
            await backlog.remove(entry);
          } catch (err) {
            if (!(err instanceof NotFoundError)) throw err;
            // Removed first: if S3 fails again, the regeneration queues the commit anew.
            await backlog.remove(entry);
            const head = await mirror.defaultBranch();
            await this.generate(host, repo, mirror, commit, head.name, entry.force);
          }
          published++;
        } catch (err) {
          if (isOutage(err)) {
            this.log.info({ pending: backlog.size }, 'shared storage still unreachable; backlog kept');
            break;
          }
          this.log.warn({ err, host, repo, commit }, 'could not publish a snapshot kept locally; will retry');
        }
      }
      return published;
    });
  }

  /** The stored current snapshot; during an S3 outage, one this replica does not know is "none". */
  private async storedCurrent(host: string, repo: string): Promise<StoredCurrent | undefined> {
    return this.options.store.current(host, repo).catch(unknownDuringOutage);
  }

  /**
   * A replica that has no mirror of the repository yet (a new replica, an empty disk) serves the
   * snapshot other replicas published at once and clones in the background, instead of making the
   * request wait for a clone. Undefined when the mirror is ready or nothing is stored (then the
   * normal path waits for the clone and generates).
   */
  private async servableWithoutMirror(host: string, repo: string): Promise<SnapshotRecord | undefined> {
    const mirror = this.options.mirrors.get(host, repo);
    if (mirror.state === 'ready') return undefined;
    let stored;
    try {
      stored = await this.options.store.current(host, repo);
    } catch (err) {
      this.log.debug({ err, host, repo }, 'no stored snapshot to serve while the mirror is cloned');
      return undefined;
    }
    if (!stored) return undefined;
    // ensureReady waits at most mirror-wait for the clone, which carries on after it gave up.
    mirror.ensureReady().catch((err: unknown) => this.log.debug({ err, host, repo }, 'background clone still running or failed'));
    return stored.record;
  }

  private async readyMirror(host: string, repo: string, signal?: AbortSignal): Promise<Mirror> {
    const mirror = this.options.mirrors.get(host, repo);
    await mirror.ensureReady({ signal });
    return mirror;
  }

  private scheduleGeneration(host: string, repo: string, mirror: Mirror, commit: string, branch: string, force: boolean): void {
    // Background work never piles up: while any generation of this repository runs, later requests
    // keep serving the current snapshot and the next request or tick schedules again.
    if (this.generations.anyRunning(`${host}/${repo}@`)) return;
    this.generate(host, repo, mirror, commit, branch, force).catch((err: unknown) => {
      this.log.warn({ err, host, repo, commit }, 'background snapshot generation failed');
    });
  }

  /**
   * Generates and publishes the snapshot of `commit`; concurrent calls for one repository share it, and
   * with a lease so do replicas: a replica that finds the lease held uses the holder's record.
   */
  private generate(host: string, repo: string, mirror: Mirror, commit: string, branch: string, force = false): Promise<SnapshotRecord> {
    return this.generations.run(`${host}/${repo}@${commit}`, async () => {
      const stored = async (): Promise<SnapshotRecord | undefined> => {
        const existing = await this.options.store.record(host, repo, commit).catch(unknownDuringOutage);
        if (!existing) return undefined;
        await this.options.store.publish({ host, repo, commit, existing, force, isAncestor: (a, b) => mirror.isAncestor(a, b), signal: this.options.shutdown });
        return existing;
      };
      const existing = await stored();
      if (existing) return existing;
      const produce = (): Promise<SnapshotRecord> => this.produce(host, repo, mirror, commit, branch, force);
      const leases = this.options.leases;
      return leases ? leases.run(host, repo, produce, stored, this.options.shutdown) : produce();
    });
  }

  /** Generates the archive of `commit` from the mirror and publishes it. */
  private async produce(host: string, repo: string, mirror: Mirror, commit: string, branch: string, force: boolean): Promise<SnapshotRecord> {
    await mkdir(this.options.workDir, { recursive: true });
    const file = join(this.options.workDir, `snapshot-${randomUUID()}.tar.zst`);
    const started = Date.now();
    this.log.info({ host, repo, commit }, 'generating snapshot');
    try {
      const result = await generateSnapshot(
        { gitDir: mirror.gitDir, commit, upstreamUrl: mirror.upstreamUrl, defaultBranch: branch },
        file,
        { logger: this.log, ...this.layerOptions(host, repo) },
      );
      const record = await this.options.store.publish({
        host,
        repo,
        commit,
        file,
        sha256: result.sha256,
        size: result.size,
        format: await snapshotFormatId(),
        frames: result.frames,
        force,
        isAncestor: (a, b) => mirror.isAncestor(a, b),
        signal: this.options.shutdown,
      });
      this.options.metrics?.snapshotGenerations.inc({ outcome: 'ok' });
      this.log.info({ host, repo, commit, size: result.size, ms: Date.now() - started }, 'snapshot generated');
      void this.collectGarbageFor(host, repo);
      void this.prepareNext(host, repo, mirror, commit);
      return record;
    } catch (err) {
      this.options.metrics?.snapshotGenerations.inc({ outcome: 'error' });
      throw err;
    } finally {
      await rm(file, { force: true });
    }
  }

  /** The layer cache and shared layers of one repository, as generateSnapshot takes them. */
  private layerOptions(host: string, repo: string): { layerCacheDir?: string; sharedLayers?: LayerShare } {
    const root = this.options.packDir;
    const shared = this.options.sharedLayers;
    return {
      layerCacheDir: root === undefined ? undefined : join(root, host.replace(/:/g, '_'), repo),
      sharedLayers: shared && {
        fetch: (key, format, outDir, signal) => shared.fetch(host, repo, key, format, outDir, signal),
        publish: (key, format, packs, keep, signal) => shared.publish(host, repo, key, format, packs, keep, signal),
      },
    };
  }

  /** Background: builds the layers the next commit's snapshot will need (layer-packs.ts). */
  private prepareNext(host: string, repo: string, mirror: Mirror, commit: string): Promise<void> {
    if (this.stopping.signal.aborted) return Promise.resolve();
    return this.preparations.run(`${host}/${repo}@${commit}`, async () => {
      const scratch = join(this.options.workDir, `layers-${randomUUID()}`);
      const signal = this.stopping.signal;
      try {
        await mkdir(scratch, { recursive: true });
        await prepareNextLayers(mirror.gitDir, commit, scratch, { signal, logger: this.log, ...this.layerOptions(host, repo) });
      } catch (err) {
        if (!signal.aborted) this.log.warn({ err, host, repo, commit }, 'could not prepare the next snapshot layers');
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    });
  }

  private async collectGarbageFor(host: string, repo: string): Promise<void> {
    try {
      await this.options.store.collectGarbage(host, repo);
    } catch (err) {
      this.log.warn({ err, host, repo }, 'retention failed');
    }
  }
}
