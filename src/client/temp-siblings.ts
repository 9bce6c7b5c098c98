/**
 * The temporary sibling a restore builds its clone in, and the removal of siblings that earlier,
 * killed restores left behind.
 *
 * A sibling is named `<target>.cachew-tmp-<host>-<pid>-<random>`: `<host>` is a short hash of this
 * machine's host name and `<pid>` the restoring process. One is **stale**, and removed by the next
 * restore of the same target, when it is a directory owned by us with exactly that name shape and
 *   - it was made on this host and its process is gone (signal 0 fails with ESRCH), or
 *   - it has not been modified for STALE_AFTER_MS (a process id reused by another program, another
 *     host on a shared filesystem, or a sibling from a version that did not record its pid).
 * A live restore on this host, or anything recent from elsewhere, is never touched; nor is any name
 * that is not ours.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** Long enough that no real restore is still writing into its sibling. */
export const STALE_AFTER_MS = 24 * 60 * 60 * 1000;

const MARK = '.cachew-tmp-';
const HOST = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
/**
 * Current shape (`<host>-<pid>-<random>`), then the shape of versions that wrote only a random suffix.
 * The host hash and the random part are hex, which these lowercase-alphanumeric classes include.
 */
const CURRENT = /^([a-z\d]{8})-(\d+)-[a-z\d]{12}$/;
const LEGACY = /^[a-z\d]{12}$/;

/** Creates `<target>.cachew-tmp-<host>-<pid>-<random>` with the default (umask) permissions a clone would get. */
export async function makeTempSibling(target: string): Promise<string> {
  const temp = `${target}${MARK}${HOST}-${process.pid}-${randomBytes(6).toString('hex')}`;
  await fs.mkdir(temp, { mode: 0o777 });
  return temp;
}

export interface StaleCleanupOptions {
  /** Milliseconds since the epoch; injectable for tests. */
  now?: number;
  /** Whether a process id is running; injectable for tests. */
  isAlive?: (pid: number) => boolean;
}

/**
 * Removes the stale temporary siblings of `target` (see the module comment for the rule). Best
 * effort: what cannot be examined or removed is left alone. Returns the names removed.
 */
export async function removeStaleSiblings(target: string, options: StaleCleanupOptions = {}): Promise<string[]> {
  const now = options.now ?? Date.now();
  const isAlive = options.isAlive ?? processIsAlive;
  const parent = path.dirname(target);
  const prefix = `${path.basename(target)}${MARK}`;
  let names: string[];
  try {
    names = await fs.readdir(parent);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const suffix = name.slice(prefix.length);
    const current = CURRENT.exec(suffix);
    if (!current && !LEGACY.test(suffix)) continue;
    const full = path.join(parent, name);
    const stat = await fs.lstat(full).catch(() => undefined);
    if (!stat?.isDirectory() || (process.getuid && stat.uid !== process.getuid())) continue;
    const deadHere = current !== null && current[1] === HOST && !isAlive(Number(current[2]));
    const old = now - stat.mtimeMs > STALE_AFTER_MS;
    if (!deadHere && !old) continue;
    try {
      await fs.rm(full, { recursive: true, force: true, maxRetries: 3 });
      removed.push(name);
    } catch {
      // someone else's problem to report; this restore does not depend on it
    }
  }
  return removed;
}

function processIsAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, it just is not ours to signal.
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
