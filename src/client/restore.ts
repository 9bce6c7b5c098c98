/**
 * `cachew git restore` as a library: turn an empty or missing directory into a working clone from the
 * server's newest snapshot, or leave nothing behind.
 *
 * Everything happens in a temporary sibling (`<dir>.cachew-tmp-<random>`, same filesystem) that is
 * renamed into place only once the archive verified, the delta bundle applied and `git status` came
 * back clean. On any failure the sibling is removed and `<dir>` is never created. If the immutable
 * snapshot ages out mid-download, the stable URL is resolved again once.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { repoFromUpstreamUrl } from '../protocol/routes.js';
import { BadRequestError, CachewError } from '../util/errors.js';
import { downloadSnapshot } from './download.js';
import { SnapshotGoneError } from './errors.js';
import { finishClone, parkFinishCommands, startEarlyWork, type EarlyWork, type FinishContext } from './finish-clone.js';
import { GitLauncher, runnerOf } from './git-launcher.js';
import { makeTempSibling, removeStaleSiblings } from './temp-siblings.js';
import { HttpClient } from './http.js';
import { mark } from './trace.js';
import type { ParallelGetStats } from './parallel-get.js';

export interface RestoreProgress {
  phase: 'download' | 'bundle' | 'refs' | 'verify';
  /** Compressed bytes received so far (download phase). */
  bytes: number;
  /** Archive size in bytes. */
  total: number;
}

export interface RestoreOptions {
  /** Upstream repository URL, e.g. `https://github.com/org/repo`. */
  repoUrl: string;
  /** Target directory: must be missing or empty. */
  dir: string;
  /** The cachew server, e.g. `http://127.0.0.1:8080`. */
  serverUrl: string;
  /** Concurrent Range requests (default 8). */
  concurrency?: number;
  /** Bytes per Range request (default 8 MiB). */
  chunkSize?: number;
  /**
   * Bring the clone up to what `git clone` gives now (default true): apply an advertised delta bundle,
   * then fetch every branch and tag from the server (ref-sync.ts). `false` restores the archive
   * exactly: the snapshot commit, its default branch only, no request beyond the snapshot.
   */
  bundle?: boolean;
  /**
   * Headers for the server's smart-HTTP endpoint used by the ref sync (e.g. `Authorization` for a
   * passthrough upstream); they reach git through its environment, never argv.
   */
  serverHeaders?: Record<string, string>;
  signal?: AbortSignal;
  onProgress?: (progress: RestoreProgress) => void;
  /** Failed attempts allowed per request before giving up (default 5). */
  maxAttempts?: number;
  /** First retry delay in ms, doubling per failure (default 200). */
  backoffMs?: number;
  /** A request waiting this long for its next byte fails and is retried (default 30 s). */
  idleTimeoutMs?: number;
  /**
   * Credentials for a server that checks callers against the upstream: a known Authorization value
   * (see tokenAuthorization) and/or a way to get one on the first 401 (see gitCredentialFill).
   * Sent to the cachew server only.
   */
  credentials?: { authorization?: string; fill?: () => Promise<string | undefined> };
}

export interface RestoreResult {
  /** The checked-out commit (after the bundle, if one was applied). */
  commit: string;
  /** sha256 hex of the snapshot archive, verified. */
  digest: string;
  /** Size of the snapshot archive in bytes. */
  bytes: number;
  seconds: number;
  bundleApplied: boolean;
  /** The snapshot's own commit (differs from `commit` when a bundle moved the clone forward). */
  snapshotCommit: string;
  /** Download counters; `maxBufferedBytes` is the memory high-water mark of the parallel download. */
  stats: ParallelGetStats;
}

export const DEFAULT_CONCURRENCY = 8;
export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;

/** Restores `repoUrl` into `dir` from the server's snapshot. See the module comment for guarantees. */
export async function restore(options: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now();
  mark('restore-start');
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new BadRequestError(`concurrency must be 1..256`);
  if (!Number.isInteger(chunkSize) || chunkSize < 1024) throw new BadRequestError(`chunk size must be at least 1 KiB`);
  let upstream: { host: string; repo: string };
  let serverUrl: URL;
  try {
    upstream = repoFromUpstreamUrl(options.repoUrl);
    serverUrl = new URL(options.serverUrl);
  } catch (err) {
    throw new BadRequestError(err instanceof Error ? err.message : String(err));
  }
  const target = path.resolve(options.dir);
  await assertTargetFree(target, options.dir);
  await fs.mkdir(path.dirname(target), { recursive: true });
  await removeStaleSiblings(target);

  const credentials = options.credentials && { ...options.credentials, origin: serverUrl.origin, repoUrl: options.repoUrl };
  const http = new HttpClient({ maxSockets: concurrency + 2, idleTimeoutMs: options.idleTimeoutMs, credentials });
  const stats: ParallelGetStats = { requests: 0, retries: 0, bufferedBytes: 0, maxBufferedBytes: 0, fellBack: false };
  try {
    for (let round = 0; ; round++) {
      const temp = await makeTempSibling(target);
      // Everything this attempt starts stops with it: the early work, the parked git processes.
      const attempt = new AbortController();
      const signal = options.signal ? AbortSignal.any([options.signal, attempt.signal]) : attempt.signal;
      const launcher = new GitLauncher(signal);
      const context: FinishContext = {
        dir: temp,
        http,
        options: { ...options, ...upstream, serverUrl, signal },
        git: runnerOf(launcher),
        scratchId: randomBytes(6).toString('hex'),
      };
      let early: EarlyWork | undefined;
      // Spawning blocks for a few ms per process: parking waits until the download's first requests
      // are out (one turn later, as they connect after a few awaits of their own), and still comes
      // early, while the process is small (git-launcher.ts). A command not parked starts later.
      const park = (snapshotCommit: string | undefined): void => {
        setImmediate(() => parkFinishCommands(launcher, context, snapshotCommit).catch(() => undefined));
      };
      try {
        const downloading = downloadSnapshot({
          http,
          serverUrl,
          ...upstream,
          repoUrl: options.repoUrl,
          dir: temp,
          concurrency,
          chunkSize,
          maxAttempts: options.maxAttempts ?? 5,
          backoffMs: options.backoffMs ?? 200,
          signal: options.signal,
          stats,
          onBytes: (bytes, total) => options.onProgress?.({ phase: 'download', bytes, total }),
          // The layout's config steps and the ref fetch need only `.git` (finish-clone.ts).
          onGitDir: (bundleUrl) => (early ??= startEarlyWork(context, bundleUrl)),
          onDownloading: park,
        });
        const snapshot = await downloading;
        const { commit, snapshotCommit, bundleApplied } = await finishClone(context, snapshot, early);
        await launcher.close();
        // rename(2) atomically replaces an empty directory and fails on a non-empty one.
        await fs.rename(temp, target);
        mark('renamed');
        return {
          commit,
          digest: snapshot.digest,
          bytes: snapshot.size,
          seconds: (performance.now() - started) / 1000,
          bundleApplied,
          snapshotCommit,
          stats,
        };
      } catch (err) {
        // Nothing may write into the directory once it is being removed.
        attempt.abort(err);
        await Promise.allSettled([early?.layout, early?.fetch, early?.check, launcher.close()]);
        await fs.rm(temp, { recursive: true, force: true, maxRetries: 3 });
        if (err instanceof SnapshotGoneError && round === 0) continue; // aged out: re-resolve once
        throw err;
      }
    }
  } finally {
    http.close();
  }
}

/** Refuses, without touching anything, a target that exists and is not an empty directory. */
async function assertTargetFree(target: string, shown: string): Promise<void> {
  let stat;
  try {
    stat = await fs.lstat(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (stat.isDirectory() && (await fs.readdir(target)).length === 0) return;
  throw new CachewError('already_exists', `destination path '${shown}' already exists and is not an empty directory`);
}
