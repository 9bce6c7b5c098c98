/**
 * Builds a byte-stable pack (+ .idx) of every object reachable from one commit, or (with `exclude`)
 * of the objects reachable from it but not from an ancestor: a checkpoint's increment (checkpoint.ts).
 *
 * Measured here with git 2.39: `pack-objects` with one thread and no reuse of the mirror's existing
 * deltas/objects produces identical bytes from independently cloned, differently repacked mirrors; with
 * several threads (delta search is split nondeterministically) or with reuse (output mirrors the source
 * packs) it does not. Every other knob that can change the output is pinned on the command line, so a
 * mirror's own config (or a future default) cannot leak into snapshot bytes:
 * bitmaps off (a bitmap walk loses the path-name hashes that guide delta selection), no verbatim pack
 * reuse, zlib default level, no window memory cap, no size limit, idx version 2, OFS_DELTA, and replace
 * refs ignored.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { runGit } from '../command.js';
import { PURE_OBJECT_ENV } from './tree-list.js';

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
  'pack.compression=-1',
  'core.compression=-1',
  'core.bigFileThreshold=512m',
  'pack.windowMemory=0',
  'pack.packSizeLimit=0',
  'pack.useSparse=false',
  'pack.indexVersion=2',
];

export interface DeterministicPackOptions {
  signal?: AbortSignal;
  /**
   * Leave out what is reachable from this commit (an ancestor of `commit`). The pack is still
   * self-contained (never `--thin`): a pack inside a repository must not depend on other packs.
   */
  exclude?: string;
}

/**
 * Writes `pack-<hash>.pack` and `.idx` for `commit` (minus `options.exclude`) into the (empty,
 * private) directory `outDir`.
 */
export async function writeDeterministicPack(
  gitDir: string,
  commit: string,
  outDir: string,
  options: DeterministicPackOptions = {},
): Promise<PackFiles> {
  const { signal, exclude } = options;
  const args = [
    ...PINNED_CONFIG.flatMap((kv) => ['-c', kv]),
    'pack-objects',
    '--revs',
    '--threads=1',
    '--no-reuse-delta',
    '--no-reuse-object',
    '--window=10',
    '--depth=50',
    '--delta-base-offset',
    '--index-version=2',
    '-q',
    join(outDir, 'pack'),
  ];
  const out = await runGit(args, { cwd: gitDir, env: PURE_OBJECT_ENV, signal, input: revisions(commit, exclude) });
  const hash = out.trim();
  if (!/^[0-9a-f]{40}$/.test(hash)) throw new Error(`unexpected pack-objects output: ${hash.slice(0, 100)}`);
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

/** pack-objects `--revs` input: the commit, and the excluded ancestor as a negative revision. */
function revisions(commit: string, exclude: string | undefined): string {
  return exclude === undefined ? `${commit}\n` : `${commit}\n^${exclude}\n`;
}
