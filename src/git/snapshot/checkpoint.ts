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
 * byte-identical (they are the same deterministic function of the checkpoint commit).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { runGit } from '../command.js';
import { silentLogger, type Logger } from '../../util/logger.js';
import { CachewError } from '../../util/errors.js';
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

export interface SnapshotPacksOptions {
  signal?: AbortSignal;
  logger?: Logger;
  /** Per-repository directory for the checkpoint's pack; without it the checkpoint is packed in scratch. */
  packCacheDir?: string;
}

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
  const { signal, packCacheDir } = options;
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
  let pack1 = packCacheDir === undefined ? undefined : await takeCachedCheckpoint(packCacheDir, checkpoint, format, base);
  const cached = pack1 !== undefined;
  if (pack1 === undefined) {
    pack1 = await writeDeterministicPack(gitDir, checkpoint, base, { signal });
    if (packCacheDir !== undefined) {
      try {
        await storeCheckpoint(packCacheDir, checkpoint, format, pack1);
      } catch (err) {
        log.warn({ err, checkpoint, packCacheDir }, 'could not cache the checkpoint pack');
      }
    }
  }
  const pack2 = await writeDeterministicPack(gitDir, commit, await subdir('increment'), { signal, exclude: checkpoint });
  log.debug(
    { commit, depth: plan.depth, checkpoint, checkpointDepth: plan.checkpoint.depth, cached, checkpointBytes: pack1.packSize, incrementBytes: pack2.packSize },
    'checkpoint packs ready',
  );
  return [pack1, pack2].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
}
