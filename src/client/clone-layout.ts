/**
 * The last touches that make a restored snapshot indistinguishable from `git clone <url>` on this
 * machine, for everything that is the user's rather than the archive's:
 *
 * - `remote.origin.url` is exactly what the user typed (with or without `.git`, credentials included,
 *   as clone stores it); the archive holds the canonical upstream URL, shared by both spellings.
 * - `git init` in the clone adds what clone takes from the user's templates (`init.templateDir`, hook
 *   samples) and probes the file system like clone does (`core.ignorecase`, `core.symlinks`,
 *   `core.precomposeunicode` on macOS, ...). Re-running init never overwrites existing files or keys.
 * - The reflog entries of the checkout name the user and now, as clone's do, and point at the commit
 *   finally checked out; the archive's carry a fixed identity and the commit time.
 * - No ORIG_HEAD: moving the branch past the snapshot commit (`reset --keep`) leaves one; clone does not.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { runGit } from './git.js';
import type { GitRunner } from './git-launcher.js';
import { GitRefs } from './git-refs.js';

export interface CloneLayoutOptions {
  cloneDir: string;
  /** The repository URL exactly as the user gave it. */
  repoUrl: string;
  signal?: AbortSignal;
  /** Runs git (default runGit; a GitLauncher's parked processes, see git-launcher.ts). */
  git?: GitRunner;
}

/** The git commands of startCloneLayout, in its order (to park them in advance: git-launcher.ts). */
export function cloneLayoutCommands(repoUrl: string): { varList: string[]; originUrl: string[]; init: string[] } {
  return { varList: ['var', '-l'], originUrl: ['config', 'remote.origin.url', repoUrl], init: ['init', '--quiet'] };
}

const ZERO_OID = '0'.repeat(40);

/**
 * The layout steps that need neither the final refs nor the final work tree, started as soon as the
 * archive's `.git` is on disk (finish-clone.ts), while the work tree is still being extracted:
 * - `remote.origin.url` as the user typed it;
 * - `git init`: templates and file-system probes (see the module comment), after the URL (both
 *   write `.git/config`, under one lock). It must finish before anything compares the work tree with
 *   the index: a probe may set a key that changes what git sees (`core.filemode=false` on a file
 *   system without an executable bit), and a template may add `info/exclude` or `info/attributes`;
 * - `git var -l` for the user's identity, meanwhile.
 * Resolves with what finishCloneLayout needs, once all three are done. Nothing else may write
 * `.git/config` meanwhile.
 */
export async function startCloneLayout(options: CloneLayoutOptions): Promise<PreparedLayout> {
  const { cloneDir, repoUrl, signal } = options;
  const git = options.git ?? runGit;
  const commands = cloneLayoutCommands(repoUrl);
  const varList = git(commands.varList, cloneDir, signal);
  varList.catch(() => undefined); // awaited below, unless a step before fails
  try {
    await git(commands.originUrl, cloneDir, signal);
    await git(commands.init, cloneDir, signal);
  } catch (err) {
    await varList.catch(() => undefined); // no git process may outlive a failure
    throw err;
  }
  return { varList: await varList };
}

/** What startCloneLayout learned for finishCloneLayout. */
export interface PreparedLayout {
  /** The output of `git var -l`. */
  varList: string;
}

/**
 * The rest of the user-specific parts of a clone, once its refs are final (after the bundle and the
 * ref sync) and startCloneLayout is done; see the module comment.
 */
export async function finishCloneLayout(options: CloneLayoutOptions, prepared: PreparedLayout): Promise<void> {
  const { cloneDir, repoUrl } = options;
  await rewriteCloneReflogs(cloneDir, repoUrl, prepared.varList);
  await fs.rm(path.join(cloneDir, '.git', 'ORIG_HEAD'), { force: true });
}

/**
 * Replaces the reflogs of HEAD, the checked-out branch and `origin/HEAD` with the single entry clone
 * writes: `0{40} <commit> <user> <now>\tclone: from <url>`. The identity is git's own non-strict one
 * (`varList`: the output of `git var -l`, the same fallback to user@host that clone uses when none is
 * configured).
 */
async function rewriteCloneReflogs(cloneDir: string, repoUrl: string, varList: string): Promise<void> {
  const ident = committerIdent(varList);
  if (!ident) return; // keep the archive's entries rather than write a malformed line
  const message = `clone: from ${anonymizeUrl(repoUrl)}`;
  const refs = new GitRefs(cloneDir);
  const { branchRef, commit: head } = await refs.head();
  const originHead = await refs.resolve('refs/remotes/origin/HEAD');
  const gitDir = path.join(cloneDir, '.git');
  const line = (commit: string): string => `${ZERO_OID} ${commit} ${ident}\t${message}\n`;
  await writeLog(gitDir, 'HEAD', line(head));
  if (branchRef !== undefined) await writeLog(gitDir, branchRef, line(head));
  if (originHead) await writeLog(gitDir, 'refs/remotes/origin/HEAD', line(originHead));
}

/** `GIT_COMMITTER_IDENT` without its timestamp is the name and email; we append our own "now". */
function committerIdent(varList: string): string | undefined {
  // The last such line wins: `git var -l` prints the config first, and a value could mimic the name.
  const line = varList
    .split('\n')
    .filter((l) => l.startsWith('GIT_COMMITTER_IDENT='))
    .pop();
  const match = line ? /^GIT_COMMITTER_IDENT=(.*<[^<>\n]*>) (\d+) ([+-]\d{4})$/.exec(line) : null;
  return match ? `${match[1]} ${match[2]} ${match[3]}` : undefined;
}

/** What clone prints in its reflog: the URL without a user or password (git's transport_anonymize_url). */
export function anonymizeUrl(url: string): string {
  return url.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^@/?#]*@/, '$1');
}

/** Writes `.git/logs/<ref>`, refusing a ref name that would leave `.git/logs`. */
async function writeLog(gitDir: string, ref: string, content: string): Promise<void> {
  const logs = path.join(gitDir, 'logs');
  const file = path.resolve(logs, ref);
  if (!file.startsWith(logs + path.sep)) return;
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, content);
}
