/**
 * Which packs a snapshot carries, and producing them cheaply: deterministic checkpoint packs.
 *
 * The deterministic pack (deterministic-pack.ts) recomputes every delta, which is what makes it
 * byte-stable across mirrors and also what makes it slow. So a snapshot's `.git/objects/pack/` holds
 * up to two deterministic packs chosen by a rule that only depends on the commit graph, so that every
 * replica picks the same ones and the bytes stay a pure function of (upstream URL, commit, format):
 *
 *   n = first-parent depth of the commit (`git rev-list --first-parent --count`; the root is 1),
 *   K = SNAPSHOT_CHECKPOINT_INTERVAL;
 *   n <= K: one full pack of everything reachable from the commit;
 *   n >  K: the checkpoint is the first-parent ancestor at depth m = K * floor((n - 1) / K) (K <= m < n).
 *           Pack 1 is the full pack of the checkpoint, pack 2 the objects reachable from the commit
 *           but not from the checkpoint (self-contained, not thin).
 *
 * Pack 1 is the same for K consecutive commits of the default branch; with a pack cache directory it
 * is computed once per replica per checkpoint and reused (pack-cache.ts), and regeneration after a new
 * commit only packs what was added since the checkpoint. A cached pack and a recomputed one are
 * byte-identical (they are the same deterministic function of the checkpoint commit). With
 * `sharedCheckpoints` (shared-checkpoints.ts) a replica whose local cache misses first asks the shared
 * cache for the pack, and publishes the packs it had to compute, so one replica computes each
 * checkpoint.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { runGit } from '../command.js';
import { silentLogger, type Logger } from '../../util/logger.js';
import { CachewError, abortReason } from '../../util/errors.js';
import { writeDeterministicPack, type PackFiles } from './deterministic-pack.js';
import { SNAPSHOT_CHECKPOINT_INTERVAL, snapshotFormatId } from './format.js';
import { storeCheckpoint, takeCachedCheckpoint } from './pack-cache.js';
import { PURE_OBJECT_ENV } from './tree-list.js';

/** The packs of one snapshot, decided by the commit graph alone. */
export interface PackPlan {
  /** First-parent depth of the commit (root = 1). */
  depth: number;
  /** Present when depth > K: the first-parent ancestor whose full pack is pack 1. */
  checkpoint?: { commit: string; depth: number };
}

/**
 * Checkpoint packs shared between replicas, bound to one repository (SharedCheckpoints does this for
 * the service). `fetch` resolves undefined on any miss or cache problem, and leaves `outDir` as it was.
 */
export interface CheckpointShare {
  fetch(commit: string, format: string, outDir: string, signal?: AbortSignal): Promise<PackFiles | undefined>;
  publish(commit: string, format: string, pack: PackFiles, signal?: AbortSignal): Promise<void>;
}

export interface SnapshotPacksOptions {
  signal?: AbortSignal;
  logger?: Logger;
  /** Per-repository directory for the checkpoint's pack; without it the checkpoint is packed in scratch. */
  packCacheDir?: string;
  /** Asked after the local pack cache misses; given every checkpoint pack computed here. */
  sharedCheckpoints?: CheckpointShare;
}

/** Where a snapshot's checkpoint pack came from (logged, and asserted on by tests). */
export type CheckpointSource = 'local' | 'shared' | 'computed';

/** The checkpoint depth for first-parent depth `n`, or undefined when `n <= K` (one full pack). */
export function checkpointDepth(n: number, k: number = SNAPSHOT_CHECKPOINT_INTERVAL): number | undefined {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`bad first-parent depth ${n}`);
  if (n <= k) return undefined;
  return k * Math.floor((n - 1) / k);
}

/** Works out the pack plan of `commit` in the mirror `gitDir` (two rev-list calls). */
export async function planPacks(gitDir: string, commit: string, signal?: AbortSignal): Promise<PackPlan> {
  const git = (args: string[]): Promise<string> => runGit(args, { cwd: gitDir, env: PURE_OBJECT_ENV, signal });
  const depth = Number((await git(['rev-list', '--first-parent', '--count', commit, '--'])).trim());
  const m = checkpointDepth(depth);
  if (m === undefined) return { depth };
  const ancestor = (await git(['rev-list', '--first-parent', `--skip=${depth - m}`, '--max-count=1', commit, '--'])).trim();
  if (!/^[0-9a-f]{40}$/.test(ancestor)) throw new CachewError('internal', `no first-parent ancestor at depth ${m} of ${commit}`);
  return { depth, checkpoint: { commit: ancestor, depth: m } };
}

/**
 * Writes the snapshot packs of `commit` under the private, empty directory `scratch` and returns them
 * in archive (name) order. Reuses / fills `options.packCacheDir` for the checkpoint pack; a failure to
 * store into the cache is logged and does not fail the snapshot.
 */
export async function writeSnapshotPacks(gitDir: string, commit: string, scratch: string, options: SnapshotPacksOptions = {}): Promise<PackFiles[]> {
  const { signal, packCacheDir, sharedCheckpoints } = options;
  const log = (options.logger ?? silentLogger).child({ module: 'snapshot-packs' });
  const plan = await planPacks(gitDir, commit, signal);
  const subdir = async (name: string): Promise<string> => {
    const dir = join(scratch, name);
    await mkdir(dir);
    return dir;
  };
  if (plan.checkpoint === undefined) {
    return [await writeDeterministicPack(gitDir, commit, await subdir('full'), { signal })];
  }
  const checkpoint = plan.checkpoint.commit;
  const format = await snapshotFormatId();
  const base = await subdir('checkpoint');
  let source: CheckpointSource = 'local';
  let pack1 = packCacheDir === undefined ? undefined : await takeCachedCheckpoint(packCacheDir, checkpoint, format, base);
  if (pack1 === undefined && sharedCheckpoints !== undefined) {
    // Its own directory: whatever a failed fetch leaves behind cannot disturb pack-objects below.
    pack1 = await sharedCheckpoints.fetch(checkpoint, format, await subdir('checkpoint-shared'), signal);
    source = 'shared';
  }
  if (pack1 === undefined) {
    pack1 = await writeDeterministicPack(gitDir, checkpoint, base, { signal });
    source = 'computed';
  }
  if (source !== 'local' && packCacheDir !== undefined) {
    try {
      await storeCheckpoint(packCacheDir, checkpoint, format, pack1);
    } catch (err) {
      log.warn({ err, checkpoint, packCacheDir }, 'could not cache the checkpoint pack');
    }
  }
  if (source === 'computed' && sharedCheckpoints !== undefined) {
    try {
      await sharedCheckpoints.publish(checkpoint, format, pack1, signal);
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal);
      log.warn({ err, checkpoint }, 'could not share the checkpoint pack');
    }
  }
  const pack2 = await writeDeterministicPack(gitDir, commit, await subdir('increment'), { signal, exclude: checkpoint });
  log.debug(
    { commit, depth: plan.depth, checkpoint, checkpointDepth: plan.checkpoint.depth, checkpointSource: source, checkpointBytes: pack1.packSize, incrementBytes: pack2.packSize },
    'checkpoint packs ready',
  );
  return [pack1, pack2].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
}
