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
import { cloneLayoutCommands, finishCloneLayout, startCloneLayout, type CloneLayoutOptions, type PreparedLayout } from './clone-layout.js';
import type { DownloadResult } from './download.js';
import type { GitLauncher, GitRunner } from './git-launcher.js';
import { GitRefs } from './git-refs.js';
import type { HttpClient } from './http.js';
import { adoptWorkTreeStats } from './index-stat.js';
import type { PackedRef } from './packed-refs.js';
import { singleCommitRefs, type SingleCommitRefs } from './ref-advertisement.js';
import { fetchServerRefs, refCloneCommand, serverRepoUrl, syncRefs, type SyncRefsOptions } from './ref-sync.js';
import type { RestoreOptions } from './restore.js';
import { mark } from './trace.js';

export interface FinishedClone {
  /** HEAD at the end (after the bundle and the ref sync). */
  commit: string;
  /** The snapshot's own commit. */
  snapshotCommit: string;
  bundleApplied: boolean;
}

export type FinishOptions = Omit<RestoreOptions, 'serverUrl'> & { host: string; repo: string; serverUrl: URL };

/** One restore attempt's clone, as the early work and the tail share it. */
export interface FinishContext {
  /** The temporary directory the archive is extracted into. */
  dir: string;
  http: HttpClient;
  options: FinishOptions;
  /** Runs git: the attempt's GitLauncher (git-launcher.ts). */
  git: GitRunner;
  /** Names the ref fetch's scratch directory: fixed per attempt, so its command can be parked. */
  scratchId: string;
  /** The server's refs when they all name one commit (ref-advertisement.ts): asked once per attempt. */
  singleCommitRefs?: Promise<SingleCommitRefs | undefined>;
}

/** Work started once the archive's `.git` is on disk (startEarlyWork). */
export interface EarlyWork {
  layout: Promise<PreparedLayout>;
  /** The ref fetch, when there is no bundle to apply first. */
  fetch?: Promise<PackedRef[]>;
  /** `git diff-index --cached HEAD` (see indexVsHead), when no bundle will move the branch. */
  check?: Promise<string>;
}

/**
 * Parks (git-launcher.ts) the git commands the rest of the restore will run, while the process is
 * still small: the layout's three, the clean check and, unless the archive alone is wanted, the ref
 * fetch's clone. A command whose arguments turn out different (e.g. a credential learned on a 401)
 * simply starts the usual way. The clean check parked is `git diff-index` (the index patched during
 * extraction, the usual case); `git status`, for the other cases, is not: a parked command nobody
 * releases still costs a fork of the client (a CPU the extraction needs, on a 2-core machine).
 */
export async function parkFinishCommands(launcher: GitLauncher, context: FinishContext, snapshotCommit?: string): Promise<void> {
  const { dir, options } = context;
  const layout = cloneLayoutCommands(options.repoUrl);
  for (const args of [layout.varList, layout.originUrl, layout.init, INDEX_VS_HEAD_ARGS]) launcher.park(args, dir);
  if (options.bundle === false) return;
  // No clone will run when the archive's commit is all the server has (ref-advertisement.ts).
  const known = await serverRefsAtOneCommit(context);
  if (known !== undefined && known.commit === snapshotCommit) return;
  const refsOptions = await refSyncOptions(context);
  const { args, env } = refCloneCommand({ ...refsOptions, scratchId: context.scratchId });
  launcher.park(args, dir, env);
}

/**
 * Starts what needs only the clone's `.git`, while the work tree is still being extracted (restore.ts
 * calls it when git-dir-watch.ts reports `.git` complete): the layout's config steps and, without a
 * bundle to apply first, the ref fetch. Hand the result to finishClone; on a failure before that,
 * the caller aborts `context.options.signal` and settles both promises before removing the directory.
 */
export function startEarlyWork(context: FinishContext, bundleUrl: URL | undefined): EarlyWork {
  const layout = startCloneLayout(layoutOptionsOf(context));
  layout.catch(() => undefined); // awaited by finishClone, or settled by the caller
  if (context.options.bundle !== false && bundleUrl !== undefined) return { layout };
  // The index and HEAD are final once `.git` is: compared now, while the work tree is still being
  // written (the comparison never looks at it), the check is off the restore's tail. finishClone uses
  // it when the extraction proves the work tree exactly the index's.
  const check = indexVsHead(context);
  check.catch(() => undefined);
  if (context.options.bundle === false) return { layout, check };
  const fetch = refSyncOptions(context).then((refsOptions) => refsToSync(context, refsOptions));
  fetch.catch(() => undefined);
  return { layout, fetch, check };
}

/**
 * Turns the extracted archive in `context.dir` into the finished clone; see the module comment.
 * `early` is what startEarlyWork began during extraction, if it ran.
 */
export async function finishClone(context: FinishContext, snapshot: DownloadResult, early?: EarlyWork): Promise<FinishedClone> {
  const { dir, http, options } = context;
  const isClone = await fs.lstat(path.join(dir, '.git')).then(
    (stat) => stat.isDirectory(),
    () => false,
  );
  if (!isClone) {
    const commit = snapshot.commit ?? '';
    return { commit, snapshotCommit: commit, bundleApplied: false };
  }
  const { signal } = options;
  const syncing = options.bundle !== false;
  const bundleUrl = syncing ? snapshot.bundleUrl : undefined;
  // Work started in the background: settled before any failure is thrown.
  const started: Array<Promise<unknown>> = [];
  const background = <T>(work: Promise<T>): Promise<T> => {
    work.catch(() => undefined); // awaited later, or settled on failure
    started.push(work);
    return work;
  };
  try {
    const layout = background(early?.layout ?? startCloneLayout(layoutOptionsOf(context)));
    const refsOptions = await refSyncOptions(context);
    const fetching = syncing && !bundleUrl ? background(early?.fetch ?? refsToSync(context, refsOptions)) : undefined;
    const head = (await new GitRefs(dir).head()).commit;
    if (snapshot.commit && snapshot.commit !== head) {
      throw new CachewError('internal', `snapshot claims commit ${snapshot.commit} but contains ${head}`);
    }
    // The layout writes .git/config, which the stat adoption rewrites: one after the other; and init's
    // probes come before anything compares the work tree with the index.
    const prepared = await layout;
    mark('layout-config');
    // Without a bundle the work tree is final now (unless the ref sync moves the branch): the clean
    // check runs while the stat adoption rewrites the index, see cleanStatus. When the extraction
    // thread proved the work tree exactly the index's (index-patcher.ts), only the index is compared
    // with HEAD.
    const exact = snapshot.patchedIndex !== undefined;
    // Started at `.git`'s completion (startEarlyWork); unused when the work tree is not exact, but
    // still waited for, so no git process outlives the restore.
    const indexChecked = early?.check === undefined ? undefined : background(early.check);
    const earlyCheck = bundleUrl ? undefined : background((exact ? (indexChecked ?? indexVsHead(context)) : cleanStatus(context)).finally(() => mark('clean-check')));
    await adoptWorkTreeStats(dir, signal, snapshot.statTable, snapshot.patchedIndex);
    mark('index-adopted');
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
      // After a bundle, the refs are compared with the commit it brought (its history is all here).
      const synced = await syncRefs(refsOptions, fetching ?? background(refsToSync(context, refsOptions)), async () => {
        await earlyCheck?.catch(() => undefined);
      });
      mark('refs-synced');
      commit = synced.commit;
      moved = synced.moved;
    }
    options.onProgress?.({ phase: 'verify', bytes: snapshot.size, total: snapshot.size });
    const checking = earlyCheck !== undefined && !moved ? earlyCheck : background(cleanStatus(context));
    await finishCloneLayout(layoutOptionsOf(context), prepared);
    mark('reflogs-written');
    const status = await checking;
    if (status !== '') throw new CachewError('internal', `restored clone is not clean: ${status.split('\n')[0]}`);
    await indexChecked?.catch(() => undefined);
    return { commit, snapshotCommit: head, bundleApplied };
  } catch (err) {
    await Promise.allSettled(started);
    throw err;
  }
}

/**
 * The branches and tags the ref sync writes: straight from the server's advertisement when they all
 * name the clone's HEAD commit (nothing to fetch: ref-advertisement.ts), else from a clone of the
 * server (ref-sync.ts). Call once `.git` is complete (it reads HEAD).
 */
async function refsToSync(context: FinishContext, refsOptions: SyncRefsOptions): Promise<PackedRef[]> {
  const known = await serverRefsAtOneCommit(context);
  if (known !== undefined && known.commit === (await new GitRefs(context.dir).head()).commit) {
    mark('refs-known');
    return known.refs;
  }
  return fetchServerRefs({ ...refsOptions, scratchId: context.scratchId });
}

/** Asks the server for its refs once per attempt; undefined when they do not all name one commit. */
function serverRefsAtOneCommit(context: FinishContext): Promise<SingleCommitRefs | undefined> {
  context.singleCommitRefs ??= (async () => {
    const { http, options } = context;
    const headers = options.serverHeaders ?? {};
    // The client adds the credential it holds; a second one from the caller would be sent twice.
    const named = Object.keys(headers).some((name) => name.toLowerCase() === 'authorization');
    if (named && (await http.serverAuthorization()) !== undefined) return undefined;
    return singleCommitRefs(http, serverRepoUrl(options.serverUrl, options.host, options.repo), headers, options.signal);
  })();
  return context.singleCommitRefs;
}

function layoutOptionsOf({ dir, options, git }: FinishContext): CloneLayoutOptions {
  return { cloneDir: dir, repoUrl: options.repoUrl, signal: options.signal, git };
}

async function refSyncOptions({ dir, http, options, git }: FinishContext): Promise<SyncRefsOptions> {
  return {
    cloneDir: dir,
    serverUrl: options.serverUrl,
    host: options.host,
    repo: options.repo,
    // git sends the same credential the downloads used (if the server asked for one), scoped to its URL.
    headers: await withAuthorization(http, options.serverHeaders),
    maxAttempts: options.maxAttempts,
    backoffMs: options.backoffMs,
    signal: options.signal,
    git,
  };
}

/** Never takes `index.lock` (no opportunistic index refresh): see cleanStatus. */
const STATUS_ARGS = ['--no-optional-locks', 'status', '--porcelain'];

/**
 * `git status --porcelain`: empty for a clean clone.
 *
 * The first check may run while adoptWorkTreeStats rewrites the index and then the config; either
 * way git sees a consistent pair. It reads the config first, then the index: with the snapshot's
 * `checkStat=minimal` it compares size and mtime, which the extracted index and the adopted one both
 * match; once the config has lost that key, the index was already renamed into place (adoption
 * renames the index before it rewrites the config), so git compares the real stat data with itself.
 * `--no-optional-locks` keeps git from taking `index.lock`, which the adoption holds. Measured on the
 * bench repository: the tail after extraction went from adoption + status (40–50 + 50–60 ms) to the
 * longer of the two (docs/restore.md).
 */
function cleanStatus({ dir, options, git }: FinishContext): Promise<string> {
  return git(STATUS_ARGS, dir, options.signal);
}

/** Never takes a lock; lists what the index holds that HEAD's tree does not, and the reverse. */
const INDEX_VS_HEAD_ARGS = ['--no-optional-locks', 'diff-index', '--cached', '--name-status', 'HEAD', '--'];

/**
 * The clean check for a work tree the extraction thread proved exactly the index's (same paths,
 * types, sizes and executable bits, nothing else outside `.git`: index-patcher.ts): all that
 * `git status` would still find is a difference between the index and HEAD. Empty when clean, as
 * cleanStatus. 30 ms on the bench repository against 90–130 ms for `git status`, which also walks
 * every directory for untracked files and lstats every file.
 */
function indexVsHead({ dir, options, git }: FinishContext): Promise<string> {
  return git(INDEX_VS_HEAD_ARGS, dir, options.signal);
}

/** `headers` plus the HTTP client's current Authorization for the server, unless the caller set one. */
async function withAuthorization(http: HttpClient, headers: Record<string, string> = {}): Promise<Record<string, string>> {
  const authorization = await http.serverAuthorization();
  const named = Object.keys(headers).some((name) => name.toLowerCase() === 'authorization');
  return authorization && !named ? { ...headers, Authorization: authorization } : headers;
}
