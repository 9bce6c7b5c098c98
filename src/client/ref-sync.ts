/**
 * Brings a restored snapshot up to what `git clone` would give at this moment: every branch of the
 * server's mirror as `refs/remotes/origin/*`, every tag with its objects, and the checked-out branch at
 * the server's current head.
 *
 * The archive is a pure function of one commit (SPEC §5), so it carries only the default branch. The
 * rest comes from one `git fetch` from cachewd's smart-HTTP endpoint (`/git/{host}/{repo}`, served from
 * the mirror like any clone). The snapshot's objects are the haves of that fetch, so the pack only
 * holds what the archive lacks: tag objects and commits of other branches (and of the default branch,
 * when the server moved on since the snapshot and no delta bundle covered it).
 *
 * The fetch mirrors what clone writes: the same refspecs as a clone's initial fetch (heads and all
 * tags, nothing else: no `refs/pull/*`), no reflogs for the remote-tracking refs (clone writes none),
 * no FETCH_HEAD, no automatic maintenance, and the refs packed afterwards (clone writes packed-refs,
 * not thousands of loose files). `origin` is not used: it is the upstream, which the client must not
 * contact (the server may be the only host it can reach).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { repoBase } from '../protocol/routes.js';
import { abortReason, GitCommandError } from '../util/errors.js';
import { runGit } from './git.js';

export interface SyncRefsOptions {
  /** The restored clone. */
  cloneDir: string;
  serverUrl: URL;
  /** `{host}` and `{repo}` of the repository on the server (the spelling the user typed). */
  host: string;
  repo: string;
  /**
   * Extra HTTP headers for git's requests to the server, e.g. `Authorization` when the upstream is in
   * passthrough mode. Handed to git through `GIT_CONFIG_*` environment variables scoped to the server's
   * URL — never in argv, where other users could read them — and git does not follow redirects with
   * them.
   */
  headers?: Record<string, string>;
  /** Attempts before giving up (default 5): `git fetch` is idempotent, a retry only repeats work. */
  maxAttempts?: number;
  /** First retry delay in ms, doubling per failure (default 200). */
  backoffMs?: number;
  signal?: AbortSignal;
}

export interface SyncRefsResult {
  /** HEAD after the sync. */
  commit: string;
  /** The checked-out branch moved (the server's head was ahead of the clone). */
  moved: boolean;
}

/** Refspecs of a clone's initial fetch: all branches, all tags (`git clone` without `--no-tags`). */
const CLONE_REFSPECS = ['+refs/heads/*:refs/remotes/origin/*', '+refs/tags/*:refs/tags/*'];

/** The smart-HTTP URL of the repository on the server. */
export function serverRepoUrl(serverUrl: URL, host: string, repo: string): URL {
  return new URL(repoBase(host, repo), serverUrl);
}

/**
 * The `GIT_CONFIG_*` environment that makes git send `headers` to `url` (and only there) and refuse
 * redirects, so a credential never follows a redirect to another host.
 */
export function gitHttpEnv(url: URL, headers: Record<string, string> = {}): Record<string, string> {
  const entries: Array<[string, string]> = [['http.followRedirects', 'false']];
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new TypeError(`header ${name} holds a line break`);
    entries.push([`http.${url.href}.extraHeader`, `${name}: ${value}`]);
  }
  const env: Record<string, string> = { GIT_CONFIG_COUNT: String(entries.length) };
  entries.forEach(([key, value], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = key;
    env[`GIT_CONFIG_VALUE_${i}`] = value;
  });
  return env;
}

/** Fetches every branch and tag from the server and moves the checked-out branch to the server's head. */
export async function syncRefs(options: SyncRefsOptions): Promise<SyncRefsResult> {
  const { cloneDir, signal } = options;
  const url = serverRepoUrl(options.serverUrl, options.host, options.repo);
  const env = gitHttpEnv(url, options.headers);
  const fetchArgs = [
    // Clone writes no reflog for remote-tracking refs; a fetch would, for every branch.
    '-c',
    'core.logAllRefUpdates=false',
    'fetch',
    '--quiet',
    '--no-tags',
    '--no-write-fetch-head',
    '--no-auto-maintenance',
    '--recurse-submodules=no',
    url.href,
    ...CLONE_REFSPECS,
  ];
  await withRetries(options, () => runGit(fetchArgs, cloneDir, signal, env));
  const head = await runGit(['rev-parse', 'HEAD'], cloneDir, signal);
  const branch = await runGit(['symbolic-ref', '--short', '-q', 'HEAD'], cloneDir, signal).catch(() => '');
  let commit = head;
  if (branch) {
    const tip = await runGit(['rev-parse', '-q', '--verify', `refs/remotes/origin/${branch}^{commit}`], cloneDir, signal).catch(() => '');
    // `reset --keep` fast-forwards the work tree, and copes with a force-push, like the delta bundle.
    if (tip && tip !== head) {
      await runGit(['reset', '--quiet', '--keep', tip], cloneDir, signal);
      commit = tip;
    }
  }
  await runGit(['pack-refs', '--all'], cloneDir, signal);
  return { commit, moved: commit !== head };
}

/** Runs `attempt` until it succeeds, retrying git failures with exponential backoff. */
async function withRetries<T>(options: SyncRefsOptions, attempt: () => Promise<T>): Promise<T> {
  const maxAttempts = options.maxAttempts ?? 5;
  for (let failures = 0; ; failures++) {
    try {
      return await attempt();
    } catch (err) {
      if (options.signal?.aborted) throw abortReason(options.signal);
      if (!(err instanceof GitCommandError) || failures + 1 >= maxAttempts) throw err;
      await sleep((options.backoffMs ?? 200) * 2 ** failures, undefined, { signal: options.signal }).catch(() => undefined);
    }
  }
}
