/**
 * Removes what crashes and full disks leave behind: our scratch directories' contents (snapshot
 * temp files, `.cachew-pack-*` pack scratch, bundle work dirs, staged clones, spooled request bodies)
 * and git's own leftovers inside each mirror (`objects/pack/tmp_pack_*` and friends, `tmp_obj_*`
 * loose-object temps, quarantine `incoming-*` dirs, stale `*.lock` files).
 *
 * At start-up everything matching goes (nothing of ours is running: orphaned children are reaped
 * first). While running, only entries whose newest modification is older than `olderThanMs` go; every
 * git command has a timeout well below that bound, so an entry that old has no living writer, and a
 * file being written keeps a fresh mtime.
 */
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

export interface SweepOptions {
  /** Directories whose every entry is scratch of ours (e.g. `<state>/tmp`, `<state>/mirrors/.tmp`). */
  scratchDirs: readonly string[];
  /** Root of the mirrors (`<root>/<host>/<repo>.git`). */
  mirrorsRoot: string;
  /** Only entries untouched for longer than this are removed; 0 removes all (start-up). */
  olderThanMs: number;
  /** Clock (ms epoch); tests drive it. */
  now?: () => number;
}

export interface SweepReport {
  /** Paths removed. */
  removed: string[];
}

/** git's temp names inside `objects/pack`. */
const PACK_TEMP = /^(?:tmp_pack_|tmp_idx_|tmp_rev_|tmp_mtimes_|tmp_bitmap_|\.tmp-\d+-pack)/;
const OBJECT_TEMP = /^tmp_obj_/;
/** How deep `<root>/<host>/<a>/<b>/.../<repo>.git` may be (repository paths have ≤ 8 segments). */
const MAX_MIRROR_DEPTH = 9;
/** Bounds the recursive mtime scan of one scratch entry. */
const MAX_SCAN_DEPTH = 6;

/** One sweep; never throws for a single entry (it is retried at the next sweep). */
export async function sweepTemp(options: SweepOptions): Promise<SweepReport> {
  const now = (options.now ?? Date.now)();
  const removed: string[] = [];
  const stale = async (path: string): Promise<boolean> =>
    options.olderThanMs <= 0 || now - (await newestMtime(path, MAX_SCAN_DEPTH)) > options.olderThanMs;
  const remove = async (path: string): Promise<void> => {
    try {
      if (!(await stale(path))) return;
      await rm(path, { recursive: true, force: true });
      removed.push(path);
    } catch {
      // vanished meanwhile, or not removable now: the next sweep tries again
    }
  };

  for (const dir of options.scratchDirs) {
    for (const name of await names(dir)) await remove(join(dir, name));
  }
  for (const gitDir of await findMirrors(options.mirrorsRoot)) {
    for (const path of await gitLeftovers(gitDir)) await remove(path);
  }
  return { removed };
}

/** Candidate leftovers of one bare repository. */
async function gitLeftovers(gitDir: string): Promise<string[]> {
  const found: string[] = [];
  const objects = join(gitDir, 'objects');
  for (const name of await names(join(objects, 'pack'))) if (PACK_TEMP.test(name) || name.endsWith('.lock')) found.push(join(objects, 'pack', name));
  for (const name of await names(objects)) {
    if (OBJECT_TEMP.test(name) || name.startsWith('incoming-')) found.push(join(objects, name));
    else if (name.length === 2) {
      // A loose-object fan-out directory (`objects/ab/`): git writes tmp_obj_* there before renaming.
      for (const inner of await names(join(objects, name))) if (OBJECT_TEMP.test(inner)) found.push(join(objects, name, inner));
    }
  }
  for (const name of await names(join(objects, 'info'))) if (name.endsWith('.lock')) found.push(join(objects, 'info', name));
  for (const name of await names(gitDir)) if (name.endsWith('.lock')) found.push(join(gitDir, name));
  await collectLocks(join(gitDir, 'refs'), found, 0);
  return found;
}

async function collectLocks(dir: string, found: string[], depth: number): Promise<void> {
  if (depth > 32) return;
  for (const entry of await entries(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await collectLocks(path, found, depth + 1);
    else if (entry.name.endsWith('.lock')) found.push(path);
  }
}

/** Every `*.git` directory under `<root>/<host>/...`, skipping dot-directories (scratch). */
async function findMirrors(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > MAX_MIRROR_DEPTH) return;
    for (const entry of await entries(dir)) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      if (depth > 0 && entry.name.endsWith('.git')) found.push(path);
      else await walk(path, depth + 1);
    }
  };
  await walk(root, 0);
  return found;
}

/** The newest mtime (ms) of `path` and, for a directory, of what it holds (to `depth` levels). */
async function newestMtime(path: string, depth: number): Promise<number> {
  const stats = await lstat(path);
  let newest = stats.mtimeMs;
  if (stats.isDirectory() && depth > 0) {
    for (const name of await names(path)) newest = Math.max(newest, await newestMtime(join(path, name), depth - 1).catch(() => 0));
  }
  return newest;
}

async function names(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

async function entries(dir: string): Promise<import('node:fs').Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}
