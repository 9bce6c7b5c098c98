/**
 * Delta bundles (SPEC §3 `snapshot.bundle?base=`): a git bundle carrying what a clone at `base` lacks
 * to reach `head`. Stored like snapshots by storage/bundles.ts (a content-addressed blob plus a
 * write-once record, both with the cache's TTL).
 *
 * Byte stability: `git bundle create` reuses deltas from the mirror's packs, so two mirrors packed
 * differently (or one with a bitmap) give different bundles. We therefore write the bundle ourselves:
 * the v2 header, then `git pack-objects --revs --thin --stdout` with exactly the pinned options of
 * snapshot packs (snapshot/deterministic-pack.ts: one thread, no object/delta reuse, no bitmaps, no
 * sparse walk, pinned window/depth/compression), byte-stable across independent clones for one git version.
 * Correctness does not depend on it: bundles are content-addressed and the first record wins.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isCommit } from '../protocol/routes.js';
import { BadRequestError } from '../util/errors.js';
import { runGit, spawnGit } from './command.js';
import { DETERMINISTIC_PACK_ENV, deterministicPackObjectsArgs } from './snapshot/deterministic-pack.js';

export interface CreateBundleOptions {
  /** The (bare) mirror. */
  gitDir: string;
  base: string;
  head: string;
  /** The ref the bundle advertises, `refs/heads/<default>`; it names `head`. */
  headRef: string;
  /** Where to write the bundle (the caller owns the file and its directory). */
  outPath: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

/**
 * Writes a v2 git bundle with `headRef` at `head` and `base` (with the other boundary commits) as
 * prerequisites, hashing while writing. A fetch from it into a clone that has `base` yields `head`.
 */
export async function createBundle(options: CreateBundleOptions): Promise<{ sha256: string; size: number }> {
  const { gitDir, base, head, headRef, outPath, signal, timeoutMs } = options;
  if (!isCommit(base) || !isCommit(head)) throw new BadRequestError('bundle base and head must be commit ids');
  if (!/^refs\/heads\/[A-Za-z0-9._/-]+$/.test(headRef)) throw new BadRequestError(`bad bundle ref: ${headRef}`);

  // Prerequisites are the boundary commits, as `git bundle create` lists them; the pack is thin and may
  // delta against their objects. The comment after each id is optional, so we omit it.
  const boundary = await runGit(['rev-list', '--boundary', head, `^${base}`], { cwd: gitDir, signal, timeoutMs });
  const prerequisites = boundary
    .split('\n')
    .filter((line) => line.startsWith('-'))
    .map((line) => `${line}\n`);
  const header = Buffer.from(`# v2 git bundle\n${prerequisites.join('')}${head} ${headRef}\n\n`, 'utf8');

  const hash = createHash('sha256');
  let size = 0;
  const hashing = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
  });
  const proc = spawnGit([...deterministicPackObjectsArgs('bundle'), '--revs', '--thin', '--stdout'], {
    cwd: gitDir,
    env: DETERMINISTIC_PACK_ENV,
    input: `${head}\n^${base}\n`,
    signal,
    timeoutMs,
  });
  try {
    hashing.write(header);
    await Promise.all([pipeline(proc.stdout, hashing, createWriteStream(outPath), { signal }), proc.done]);
  } catch (err) {
    proc.kill();
    await rm(outPath, { force: true });
    throw err;
  }
  return { sha256: hash.digest('hex'), size };
}
