/**
 * The one deterministic pack builder: every pack cachew produces (snapshot layers, layer-build.ts,
 * and delta bundles, ../bundle.ts) runs `git pack-objects` with the options below, so all of them
 * are byte-stable across differently packed mirrors for one git version.
 *
 * Measured here with git 2.39: `pack-objects` with one thread and no reuse of the mirror's existing
 * deltas/objects produces identical bytes from independently cloned, differently repacked mirrors; with
 * several threads (delta search is split nondeterministically) or with reuse (output mirrors the source
 * packs) it does not. Every other knob that can change the output is pinned on the command line, so a
 * mirror's own config (or a future default) cannot leak into the bytes: bitmaps off (a bitmap walk
 * loses the path-name hashes that guide delta selection), no verbatim pack reuse, no sparse walk (the
 * exact object set of a range), a fixed zlib level and delta window (PackProfile), no window memory cap, no size
 * limit, idx version 2, OFS_DELTA, and replace refs ignored (PURE_OBJECT_ENV). Blobs above
 * `core.bigFileThreshold` are stored whole and streamed, never held in memory for a delta search.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { runGit } from '../command.js';
import { PURE_OBJECT_ENV } from './tree-list.js';
import { isSha1ObjectId } from '../../protocol/object-id.js';

export interface PackFiles {
  /** The pack's name hash (its trailing checksum), as in `pack-<hash>.pack`. */
  hash: string;
  packPath: string;
  packSize: number;
  idxPath: string;
  idxSize: number;
}

const PINNED_CONFIG = [
  'pack.useBitmaps=false',
  'pack.allowPackReuse=false',
  'pack.writeReverseIndex=false',
  'pack.useSparse=false',
  'core.bigFileThreshold=64m',
  'pack.windowMemory=0',
  'pack.packSizeLimit=0',
  'pack.indexVersion=2',
  // Memory only, never bytes: map the mirror's packs through small windows, as cat-file does
  // (blob-reader.ts). A blob above bigFileThreshold is streamed through these windows, so they bound
  // pack-objects' memory for a 1 GiB file (with 32m/128m it held ~120 MiB for a 200 MiB blob).
  'core.packedGitWindowSize=16m',
  'core.packedGitLimit=64m',
];

/**
 * What a pack is for, which fixes its zlib level and delta window (both change bytes).
 *
 * `bundle`: delta bundles travel as they are, so they keep git's default zlib level (-1, i.e. 6) and
 * window (10); they hold only the new objects since a snapshot, so their delta search is small.
 *
 * `layer`: snapshot layers store their objects (zlib level 0): the archive compresses them with zstd
 * anyway, which does better over raw objects than over zlib streams, and deflating every object again
 * (no reuse) was about a quarter of pack-objects' CPU. Measured on the bench repository's history (6
 * parts): 32.3 → 23.1 CPU s, zstd'd pack bytes 119.1 → 108.7 MB; the pack on disk grows 121 → 215 MB.
 * Their delta window is 4 (format v9): the search is the larger half of a layer's CPU, and it shrinks
 * faster than the compression gets worse. Measured on the bench repository's whole history as one
 * stored pack (one thread, CPU user s → zstd -3 bytes): window 10: 17.9 s → 115.7 MB; window 4:
 * 12.1 s → 116.9 MB (+1.0%); window 2: 10.8 s → 120.7 MB (+4.3%); window 0 (reading and writing
 * alone): 7.3 s.
 */
export type PackProfile = 'bundle' | 'layer';

const PROFILE_SETTINGS: Record<PackProfile, { zlibLevel: string; window: number }> = {
  bundle: { zlibLevel: '-1', window: 10 },
  layer: { zlibLevel: '0', window: 4 },
};

/**
 * `git` arguments for a deterministic `pack-objects` run: the pinned config and flags shared by every
 * pack cachew writes. Callers append their mode (`--revs`, `--stdout`, `--thin`) and destination.
 */
export function deterministicPackObjectsArgs(profile: PackProfile): string[] {
  const { zlibLevel, window } = PROFILE_SETTINGS[profile];
  return [
    ...PINNED_CONFIG.flatMap((kv) => ['-c', kv]),
    '-c',
    `pack.compression=${zlibLevel}`,
    '-c',
    `core.compression=${zlibLevel}`,
    'pack-objects',
    '--threads=1',
    '--no-reuse-delta',
    '--no-reuse-object',
    `--window=${window}`,
    '--depth=50',
    '--delta-base-offset',
    '--index-version=2',
    '-q',
  ];
}

/** The environment of every deterministic pack-objects run (replace refs ignored). */
export const DETERMINISTIC_PACK_ENV = PURE_OBJECT_ENV;

export interface DeterministicPackOptions {
  signal?: AbortSignal;
  profile: PackProfile;
}

/**
 * Writes `pack-<hash>.pack` and `.idx` into the (empty, private) directory `outDir` from `objects`:
 * pack-objects' non-`--revs` input, one `<oid>[ <path>]` line per object, in a deterministic order
 * (layer-build.ts lists them with rev-list). The pack is self-contained (never thin).
 */
export async function writeDeterministicPack(
  gitDir: string,
  objects: Readable,
  outDir: string,
  options: DeterministicPackOptions,
): Promise<PackFiles> {
  const args = [...deterministicPackObjectsArgs(options.profile), join(outDir, 'pack')];
  const out = await runGit(args, { cwd: gitDir, env: DETERMINISTIC_PACK_ENV, signal: options.signal, input: objects, timeoutMs: 6 * 3_600_000 });
  const hash = out.trim();
  if (!isSha1ObjectId(hash)) throw new Error(`unexpected pack-objects output: ${out.slice(0, 100)}`);
  const names = await readdir(outDir);
  const expected = new Set([`pack-${hash}.pack`, `pack-${hash}.idx`]);
  if (names.length !== 2 || !names.every((n) => expected.has(n))) {
    throw new Error(`pack-objects wrote unexpected files: ${names.join(', ')}`);
  }
  const packPath = join(outDir, `pack-${hash}.pack`);
  const idxPath = join(outDir, `pack-${hash}.idx`);
  const [packStat, idxStat] = await Promise.all([stat(packPath), stat(idxPath)]);
  return { hash, packPath, packSize: packStat.size, idxPath, idxSize: idxStat.size };
}
