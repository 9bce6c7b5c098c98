/**
 * The snapshot format identifier: everything besides (upstream URL, commit) that the archive bytes
 * depend on. Two replicas with the same id produce byte-identical snapshots of the same commit; a
 * replica whose id differs (another zstd or git release) may produce different bytes, which is safe
 * (the first published snapshot wins, SPEC §5) but worth seeing in records and logs.
 *
 * Bump SNAPSHOT_FORMAT_VERSION whenever our own layout changes: tar header encoding, entry order,
 * .git file contents, index encoding, pack-objects options, the layer rule, the frame cuts or the
 * zstd level.
 *
 * v10: the idx files follow the metadata, and each `.pack` is placed among the work tree's frames
 * (frame-order.ts) instead of all packs before the index: a restoring client decompresses packs while
 * its writer thread creates the small files decoded just before (docs/benchmarks.md). Frames carry no
 * XXH64 checksum (the archive's sha256 covers them; zstd-native.ts).
 * v9: layer packs search deltas in a window of 4 objects instead of 10 (deterministic-pack.ts
 * PackProfile): measured 13.9 instead of 19.5 CPU s for the whole history as one pack, for 1% more
 * zstd'd bytes (bundles keep 10).
 * v8: a frame always starts at `.git/index` (archive.ts packFrames / workTreeFrames): the index and
 * work tree frames no longer depend on the packs, so they are compressed while the layers are packed.
 * v7: frames are compressed in-process by libzstd (zstd-native.ts; the id names `libzstd-<version>`):
 * light frames in one single-threaded call, heavy ones streamed in multi-threaded mode. Hosts where
 * the addon cannot load use the CLI as before, under an id naming `zstd-<CLI version>`.
 * v6: layer packs store their objects without zlib (level 0, deterministic-pack.ts PackProfile):
 * the archive's zstd compresses them better than zlib did, and pack-objects no longer deflates every
 * object of the history again (about a quarter of its CPU). The restored clone's pack is larger on
 * disk (bench repository: 215 MB instead of 121 MB; the archive is 10 MB smaller).
 * v5: the layer rule counts in base 8 (SNAPSHOT_LAYER_BASE; base 2 before): fewer, bigger layers, so
 * less size lost to layers that cannot delta against each other. The work tree is cut into frames of
 * about 8 entries (archive.ts WORK_TREE_CUT; 128 before), and frames under 1 MiB are compressed from
 * files, so their headers carry the content size (zstd.ts BATCH_FRAME_LIMIT).
 * v4: `.git/objects/pack/` holds the layers of the layer rule (layers.ts, SNAPSHOT_LAYER_BASE), each
 * one or more packs (layer-build.ts); pack files and the work tree carry a fixed mtime; the archive
 * is a sequence of independent zstd frames cut at stable places, led by a skippable frame holding the
 * frame table (frames.ts).
 * v3: `.git/` also holds what `git clone` leaves and users rely on: `description`, `info/exclude`,
 * empty `hooks/` and `branches/`, and the checkout's reflog (`logs/HEAD`, `logs/refs/heads/<branch>`,
 * `logs/refs/remotes/origin/HEAD`) with a fixed identity and the commit time (git-dir-files.ts).
 * v2: up to two packs, a checkpoint every 64 first-parent commits plus the increment; one zstd frame.
 * v1 always had one full pack.
 */
import { runGit } from '../command.js';
import { ZSTD_LEVEL, zstdVersion } from './zstd.js';
import { nativeZstdVersion } from './zstd-native.js';

export const SNAPSHOT_FORMAT_VERSION = 'cachew-snapshot-v10';

/**
 * B of the layer rule (layers.ts): a snapshot at first-parent depth n carries one layer per non-zero
 * digit of n - 1 in base B, plus its own top layer. Part of the format: changing it changes the bytes
 * of most snapshots. Chosen by measured size against one pack (docs/benchmarks.md, "layer rule"): at
 * depth 256, where every digit rule carries the most layers, base 2 cost +57.5% pack bytes over one
 * pack, base 4 +29.5%, base 8 +27.1%, and bases 4 and 8 also built faster. The price of a larger base
 * is background work: the layer of the lowest digit (up to B − 1 commits) is rebuilt for every commit,
 * and the whole history whenever the leading digit changes (every 64 commits below depth 512, every
 * 512 below 4096, ...), always off the request path (prepareNextLayers).
 */
export const SNAPSHOT_LAYER_BASE = 8;

let cached: Promise<string> | undefined;

/**
 * e.g. `cachew-snapshot-v10;libzstd-1.5.7;git-2.39.5` (frames compressed in-process by the addon's
 * libzstd) or `cachew-snapshot-v10;zstd-1.5.4;git-2.39.5` (by the zstd CLI, when the addon cannot
 * load: other bytes, so another id); the zstd level is included when not the default 3.
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
  const gitOut = await runGit(['--version']);
  const git = /git version (\S+)/.exec(gitOut)?.[1] ?? 'unknown';
  const level = ZSTD_LEVEL === 3 ? '' : `-l${ZSTD_LEVEL}`;
  return `${SNAPSHOT_FORMAT_VERSION};${await compressorId()}${level};git-${git}`;
}

/** `libzstd-<version>` when frames are compressed in-process (archive.ts defaultCompressor), else `zstd-<CLI version>`. */
async function compressorId(): Promise<string> {
  const native = nativeZstdVersion();
  return native !== undefined ? `libzstd-${native}` : `zstd-${await zstdVersion()}`;
}
