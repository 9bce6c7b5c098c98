/**
 * The snapshot format identifier: everything besides (upstream URL, commit) that the archive bytes
 * depend on. Two replicas with the same id produce byte-identical snapshots of the same commit; a
 * replica whose id differs (another zstd or git release) may produce different bytes, which is safe
 * (the first published snapshot wins, SPEC §5) but worth seeing in records and logs.
 *
 * Bump SNAPSHOT_FORMAT_VERSION whenever our own layout changes: tar header encoding, entry order,
 * .git file contents, index encoding, pack-objects options, the checkpoint rule or the zstd level.
 *
 * v2: `.git/objects/pack/` holds up to two packs. A commit at first-parent depth n (root = 1) above
 * SNAPSHOT_CHECKPOINT_INTERVAL (K) gets the full pack of its checkpoint, the first-parent ancestor at
 * depth K * floor((n - 1) / K), plus a pack of what the commit adds to it; n <= K gets one full pack
 * (checkpoint.ts). v1 always had one full pack.
 *
 * v3: `.git/` also holds what `git clone` leaves and users rely on: `description`, `info/exclude`,
 * empty `hooks/` and `branches/`, and the checkout's reflog (`logs/HEAD`, `logs/refs/heads/<branch>`,
 * `logs/refs/remotes/origin/HEAD`) with a fixed identity and the commit time (git-dir-files.ts).
 */
import { runGit } from '../command.js';
import { ZSTD_LEVEL, zstdVersion } from './zstd.js';

export const SNAPSHOT_FORMAT_VERSION = 'cachew-snapshot-v3';

/**
 * K of the checkpoint rule: checkpoints sit at first-parent depths K, 2K, 3K, ... so a replica
 * recomputes the expensive full pack once every K commits of the default branch. Part of the format:
 * changing it changes the bytes of most snapshots.
 */
export const SNAPSHOT_CHECKPOINT_INTERVAL = 64;

let cached: Promise<string> | undefined;

/**
 * e.g. `cachew-snapshot-v3;zstd-1.5.4;git-2.39.5` (zstd level included when not the default 3).
 * Computed once per process. Git's zlib is not part of the id: `git version --build-options` does not
 * report it; a distribution that relinks git against another zlib should be treated as a new git.
 */
export function snapshotFormatId(): Promise<string> {
  cached ??= computeFormatId().catch((err: unknown) => {
    cached = undefined; // a transient spawn failure must not stick for the process lifetime
    throw err;
  });
  return cached;
}

async function computeFormatId(): Promise<string> {
  const [zstd, gitOut] = await Promise.all([zstdVersion(), runGit(['--version'])]);
  const git = /git version (\S+)/.exec(gitOut)?.[1] ?? 'unknown';
  const level = ZSTD_LEVEL === 3 ? '' : `-l${ZSTD_LEVEL}`;
  return `${SNAPSHOT_FORMAT_VERSION};zstd-${zstd}${level};git-${git}`;
}
