/**
 * Everything a restore does after the archive is extracted, in the temporary sibling: the work tree's
 * real stat data into the index (index-stat.ts), the delta bundle (bundle.ts), the other branches and
 * tags (ref-sync.ts), the user's side of a clone's layout (clone-layout.ts) and the check that the
 * clone is clean. Archives without `.git` (not a clone) are left as extracted; the commit then comes
 * from the snapshot header alone.
 *
 * Each step waits only for what it needs, because this tail is on the restore's critical path and its
 * longest step, the ref fetch, mostly waits on the network:
 *
 *     extracted ─┬─ adopt stats ─ init, origin URL (var -l meanwhile) ─ clean check ──────────┬─ reflogs ─ done
 *                └─ ref fetch (objects only) ──────────────────────────── sync refs ──────────┘
 *
 * - The ref fetch only adds objects, so it runs from the start (without a bundle to apply first).
 * - `git init` and the origin URL write `.git/config`, which the stat adoption rewrites first.
 * - Without a bundle the work tree is final once init's probes are written, unless the ref sync moves
 *   the branch (the server moved on since the snapshot): the clean check runs during the ref sync, and
 *   runs again after a move, which waits for the first one (both would take `index.lock`).
 * - The reflogs name the final commit, so they come last.
 * On failure, everything started settles before the error is thrown, so nothing writes into the
 * directory once the caller removes it.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { CachewError } from '../util/errors.js';
import { applyBundle } from './bundle.js';
import { finishCloneLayout, startCloneLayout } from './clone-layout.js';
import type { DownloadResult } from './download.js';
import { runGit } from './git.js';
import { GitRefs } from './git-refs.js';
import type { HttpClient } from './http.js';
import { adoptWorkTreeStats } from './index-stat.js';
import { fetchServerRefs, syncRefs } from './ref-sync.js';
import type { RestoreOptions } from './restore.js';

export interface FinishedClone {
  /** HEAD at the end (after the bundle and the ref sync). */
  commit: string;
  /** The snapshot's own commit. */
  snapshotCommit: string;
  bundleApplied: boolean;
}

/** Turns the extracted archive in `dir` into the finished clone; see the module comment. */
export async function finishClone(
  dir: string,
  snapshot: DownloadResult,
  http: HttpClient,
  options: Omit<RestoreOptions, 'serverUrl'> & { host: string; repo: string; serverUrl: URL },
): Promise<FinishedClone> {
  const isClone = await fs.lstat(path.join(dir, '.git')).then(
    (stat) => stat.isDirectory(),
    () => false,
  );
  if (!isClone) {
    const commit = snapshot.commit ?? '';
    return { commit, snapshotCommit: commit, bundleApplied: false };
  }
  const head = (await new GitRefs(dir).head()).commit;
  if (snapshot.commit && snapshot.commit !== head) {
    throw new CachewError('internal', `snapshot claims commit ${snapshot.commit} but contains ${head}`);
  }
  const { signal } = options;
  const syncing = options.bundle !== false;
  const bundleUrl = syncing ? snapshot.bundleUrl : undefined;
  const refsOptions = {
    cloneDir: dir,
    serverUrl: options.serverUrl,
    host: options.host,
    repo: options.repo,
    // git sends the same credential the downloads used (if the server asked for one), scoped to its URL.
    headers: await withAuthorization(http, options.serverHeaders),
    maxAttempts: options.maxAttempts,
    backoffMs: options.backoffMs,
    signal,
  };
  const layoutOptions = { cloneDir: dir, repoUrl: options.repoUrl, signal };
  // Work started in the background: settled before any failure is thrown.
  const started: Array<Promise<unknown>> = [];
  const background = <T>(work: Promise<T>): Promise<T> => {
    work.catch(() => undefined); // awaited later, or settled on failure
    started.push(work);
    return work;
  };
  try {
    const fetching = syncing && !bundleUrl ? background(fetchServerRefs(refsOptions)) : undefined;
    // Before any git command that looks at the work tree: they then run under git's default stat
    // rules, with the snapshot's keys gone.
    await adoptWorkTreeStats(dir, signal, snapshot.statTable);
    const layout = background(startCloneLayout(layoutOptions));
    const earlyCheck = bundleUrl ? undefined : background(layout.then(() => cleanStatus(dir, signal)));
    let commit = head;
    let bundleApplied = false;
    if (bundleUrl) {
      options.onProgress?.({ phase: 'bundle', bytes: snapshot.size, total: snapshot.size });
      const result = await applyBundle({ http, bundleUrl, cloneDir: dir, maxAttempts: options.maxAttempts, backoffMs: options.backoffMs, signal });
      commit = result.commit;
      bundleApplied = result.applied;
    }
    let moved = false;
    if (syncing) {
      options.onProgress?.({ phase: 'refs', bytes: snapshot.size, total: snapshot.size });
      const synced = await syncRefs(refsOptions, fetching, async () => {
        await earlyCheck?.catch(() => undefined);
      });
      commit = synced.commit;
      moved = synced.moved;
    }
    const prepared = await layout;
    options.onProgress?.({ phase: 'verify', bytes: snapshot.size, total: snapshot.size });
    const checking = earlyCheck !== undefined && !moved ? earlyCheck : background(cleanStatus(dir, signal));
    await finishCloneLayout(layoutOptions, prepared);
    const status = await checking;
    if (status !== '') throw new CachewError('internal', `restored clone is not clean: ${status.split('\n')[0]}`);
    return { commit, snapshotCommit: head, bundleApplied };
  } catch (err) {
    await Promise.allSettled(started);
    throw err;
  }
}

/** `git status --porcelain`: empty for a clean clone. */
function cleanStatus(dir: string, signal?: AbortSignal): Promise<string> {
  return runGit(['status', '--porcelain'], dir, signal);
}

/** `headers` plus the HTTP client's current Authorization for the server, unless the caller set one. */
async function withAuthorization(http: HttpClient, headers: Record<string, string> = {}): Promise<Record<string, string>> {
  const authorization = await http.serverAuthorization();
  const named = Object.keys(headers).some((name) => name.toLowerCase() === 'authorization');
  return authorization && !named ? { ...headers, Authorization: authorization } : headers;
}
