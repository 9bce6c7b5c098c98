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
import { BadRequestError, GitCommandError, NotFoundError } from '../util/errors.js';
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
  const proc = spawnGit([...deterministicPackObjectsArgs(), '--revs', '--thin', '--stdout'], {
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

/** True when `oid` names a commit present in the repository. */
export async function commitExists(gitDir: string, oid: string, signal?: AbortSignal): Promise<boolean> {
  if (!isCommit(oid)) return false;
  try {
    await runGit(['cat-file', '-e', `${oid}^{commit}`], { cwd: gitDir, signal });
    return true;
  } catch (err) {
    if (err instanceof GitCommandError) return false;
    throw err;
  }
}

/** `git merge-base --is-ancestor older newer`; false when either is unknown to the repository. */
export async function isAncestor(gitDir: string, older: string, newer: string, signal?: AbortSignal): Promise<boolean> {
  try {
    await runGit(['merge-base', '--is-ancestor', older, newer], { cwd: gitDir, signal });
    return true;
  } catch (err) {
    if (err instanceof GitCommandError) return false;
    throw err;
  }
}

/**
 * The pointer's "only forward" rule for SnapshotStore.publish: moving from `older` to `newer` is allowed
 * when `newer` descends from `older`, or when `older` is known to the mirror but no longer in the history
 * of `headRef` (upstream was force-pushed). A commit the mirror does not know is treated as newer than
 * ours (a replica whose mirror is behind must not move the pointer back); such a mirror catches up on
 * its next fetch.
 */
export function forwardCheck(gitDir: string, headRef: string): (older: string, newer: string) => Promise<boolean> {
  return async (older, newer) => {
    if (!(await commitExists(gitDir, older))) return false;
    if (await isAncestor(gitDir, older, newer)) return true;
    return !(await isAncestor(gitDir, older, headRef));
  };
}

/**
 * Validates a bundle request's base against the mirror: malformed → BadRequestError (400); equal to
 * head → undefined (the route answers 204); unknown to the mirror → NotFoundError (404).
 * A base that is known but not an ancestor of head (force-push) is accepted: the bundle still carries
 * everything head needs, the client just cannot fast-forward and checks head out instead.
 */
export async function resolveBundleBase(options: {
  gitDir: string;
  base: string;
  head: string;
  signal?: AbortSignal;
}): Promise<{ base: string; head: string } | undefined> {
  const { gitDir, base, head, signal } = options;
  if (!isCommit(base)) throw new BadRequestError('base must be a 40 or 64 character lowercase hex commit id');
  if (base === head) return undefined;
  if (!(await commitExists(gitDir, base, signal))) throw new NotFoundError(`unknown base commit ${base}`);
  return { base, head };
}
