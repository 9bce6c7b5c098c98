/**
 * Brings a restored snapshot up to what `git clone` would give at this moment: every branch of the
 * server's mirror as `refs/remotes/origin/*`, every tag with its objects, and the checked-out branch at
 * the server's current head.
 *
 * The archive is a pure function of one commit (SPEC §5), so it carries only the default branch. The
 * rest comes from cachewd's smart-HTTP endpoint (`/git/{host}/{repo}`, served from the mirror like any
 * clone), never from `origin` (the upstream, which the client may not be able to reach). The way to
 * get exactly a clone's refs is to let git clone:
 *   1. `git clone --no-checkout --reference <restored clone> <server>` into a scratch directory: the
 *      snapshot's objects are its haves, so the pack holds only what the archive lacks (tag objects,
 *      other branches' commits, the default branch's newer commits when the server moved on); clone
 *      picks the refs (all branches, all tags, no `refs/pull/*`), checks connectivity, and writes them
 *      to packed-refs, peeled;
 *   2. its pack moves into the restored clone (a rename) and its branches and tags are merged into
 *      the restored clone's packed-refs (packed-refs.ts); the scratch directory goes;
 *   3. the checked-out branch moves to the server's head (`git reset --keep`).
 * Why not `git fetch`: it writes one loose ref per branch and tag, a transaction each; with 2,000 tags
 * that took 5–12 s on the test machine, against about 1.2 s for this clone (docs/restore.md).
 * No reflogs, FETCH_HEAD or maintenance are left behind, as after a clone.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { repoBase } from '../protocol/routes.js';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { abortReason, GitCommandError } from '../util/errors.js';
import { runGit } from './git.js';
import type { GitRunner } from './git-launcher.js';
import { GitRefs } from './git-refs.js';
import { parsePackedRefs, writePackedRefs, type PackedRef } from './packed-refs.js';

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
  /** Attempts before giving up (default 5): the scratch clone starts afresh, a retry only repeats work. */
  maxAttempts?: number;
  /** First retry delay in ms, doubling per failure (default 200). */
  backoffMs?: number;
  signal?: AbortSignal;
  /** Names the scratch directory inside `.git` (default: random), so the command can be parked in advance. */
  scratchId?: string;
  /** Runs git (default runGit; a GitLauncher's parked processes, see git-launcher.ts). */
  git?: GitRunner;
}

export interface SyncRefsResult {
  /** HEAD after the sync. */
  commit: string;
  /** The checked-out branch moved (the server's head was ahead of the clone). */
  moved: boolean;
  /** Branches and tags written. */
  refs: number;
}

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

/**
 * Fetches every branch and tag from the server and moves the checked-out branch to the server's head.
 * `beforeMove` is awaited before the work tree and index change (e.g. a `git status` still reading
 * them, which may take `index.lock`).
 */
export async function syncRefs(options: SyncRefsOptions, fetching?: Promise<PackedRef[]>, beforeMove?: () => Promise<void>): Promise<SyncRefsResult> {
  const { cloneDir, signal } = options;
  const fetched = await (fetching ?? fetchServerRefs(options));
  // Loose refs (the delta bundle's fetch writes one) would shadow what we put in packed-refs.
  if (await hasLooseRefs(path.join(cloneDir, '.git', 'refs'))) await runGit(['pack-refs', '--all'], cloneDir, signal);
  await writePackedRefs(path.join(cloneDir, '.git'), fetched);
  const { branchRef, commit: head } = await new GitRefs(cloneDir).head();
  let commit = head;
  if (branchRef !== undefined) {
    // Branches name commits; clone's own checks made sure the fetched ones exist.
    const tip = fetched.find((ref) => ref.name === `refs/remotes/origin/${branchRef.slice('refs/heads/'.length)}`)?.oid;
    // `reset --keep` fast-forwards the work tree, and copes with a force-push, like the delta bundle.
    if (tip && tip !== head) {
      await beforeMove?.();
      await runGit(['reset', '--quiet', '--keep', tip], cloneDir, signal);
      commit = tip;
    }
  }
  return { commit, moved: commit !== head, refs: fetched.length };
}

/**
 * Steps 1–2 of the module comment alone (with retries): their objects land in the clone's object
 * directory, nothing else of the clone changes, so they may run while the clone's index and config
 * are being rewritten. Hand the promise to `syncRefs` for step 3.
 */
export function fetchServerRefs(options: SyncRefsOptions): Promise<PackedRef[]> {
  const command = refCloneCommand({ ...options, scratchId: options.scratchId ?? randomBytes(6).toString('hex') });
  return withRetries(options, () => cloneRefs(options, command));
}

/** The git command of step 1 (for fetchServerRefs, or to park in advance: git-launcher.ts). */
export function refCloneCommand(options: SyncRefsOptions & { scratchId: string }): { args: string[]; env: Record<string, string>; scratch: string } {
  const url = serverRepoUrl(options.serverUrl, options.host, options.repo);
  const scratch = path.join(options.cloneDir, '.git', `cachew-refs-${options.scratchId}`);
  // --template= : no hooks or samples to copy into a directory that lives for a second.
  const args = ['clone', '--quiet', '--no-checkout', '--template=', '--reference', options.cloneDir, url.href, scratch];
  return { args, env: gitHttpEnv(url, options.headers), scratch };
}

/**
 * Steps 1–2 of the module comment: clones the server's repository into a scratch directory inside
 * `.git` with the restored clone as `--reference`, moves the fetched objects into the restored clone
 * and returns the clone's branches and tags. The scratch directory is always removed (so a retry may
 * use the same name).
 */
async function cloneRefs(options: SyncRefsOptions, { args, env, scratch }: ReturnType<typeof refCloneCommand>): Promise<PackedRef[]> {
  const { cloneDir, signal } = options;
  const gitDir = path.join(cloneDir, '.git');
  try {
    await (options.git ?? runGit)(args, cloneDir, signal, env);
    const scratchGit = path.join(scratch, '.git');
    await moveObjects(path.join(scratchGit, 'objects'), path.join(gitDir, 'objects'));
    const packed = await fs.readFile(path.join(scratchGit, 'packed-refs'), 'utf8').catch(() => '');
    return parsePackedRefs(packed).filter((ref) => /^refs\/(remotes\/origin|tags)\//.test(ref.name) && ref.name !== 'refs/remotes/origin/HEAD');
  } finally {
    await fs.rm(scratch, { recursive: true, force: true, maxRetries: 3 });
  }
}

/**
 * Moves every pack (and, should git have left any, loose object) from `from` into `to`: same file
 * system, so each is a rename; objects the target already has are left behind and deleted.
 */
async function moveObjects(from: string, to: string): Promise<void> {
  for (const dir of await fs.readdir(from)) {
    if (dir === 'info') continue; // info/alternates points at `to`; the rest is packs and loose objects
    await fs.mkdir(path.join(to, dir), { recursive: true });
    for (const name of await fs.readdir(path.join(from, dir))) {
      const target = path.join(to, dir, name);
      const present = await fs.lstat(target).then(
        () => true,
        () => false,
      );
      if (!present) await fs.rename(path.join(from, dir, name), target);
    }
  }
}

/**
 * True when `refsDir` holds a loose ref naming an object (at any depth), i.e. one that could shadow
 * packed-refs; symrefs (`origin/HEAD`) stay loose after `git pack-refs` anyway.
 */
async function hasLooseRefs(refsDir: string): Promise<boolean> {
  const entries = await fs.readdir(refsDir, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const text = await fs.readFile(path.join(entry.parentPath ?? entry.path, entry.name), 'utf8');
    if (!text.startsWith('ref: ')) return true;
  }
  return false;
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
