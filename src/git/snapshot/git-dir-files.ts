/**
 * The fixed, canonical contents of a snapshot's `.git/` directory (besides the pack and the index):
 * the layout `git clone <upstream>` leaves and users rely on — `description`, `info/exclude`, empty
 * `hooks/` and `branches/`, and the reflog entry of the checkout — minus everything machine- or
 * time-specific (hook samples, FETCH_HEAD, ORIG_HEAD). Pure functions of (upstream URL, commit, branch,
 * commit time): the reflog names a fixed identity and the commit's time, where a clone would name the
 * user and now; the restore client rewrites it (src/client/clone-layout.ts).
 */
import { BadRequestError } from '../../util/errors.js';

/** A small `.git` entry: a directory (no content) or a file with its exact bytes. */
export interface GitDirEntry {
  path: string;
  content?: Buffer;
}

/**
 * Refnames git would accept as `refs/heads/<branch>` (the rules of git-check-ref-format, which we
 * apply here rather than spawn git for). Checked so the config and ref files we write stay well-formed.
 */
export function assertBranchName(branch: string): void {
  const bad =
    branch.length === 0 ||
    branch.length > 255 ||
    hasControlChar(branch, true) ||
    /[~^:?*[\\]/.test(branch) ||
    branch.includes('..') ||
    branch.includes('@{') ||
    branch === '@' ||
    branch.startsWith('/') ||
    branch.endsWith('/') ||
    branch.endsWith('.') ||
    branch.includes('//') ||
    branch.split('/').some((part) => part.startsWith('.') || part.endsWith('.lock')) ||
    branch.startsWith('-');
  if (bad) throw new BadRequestError(`invalid default branch name: ${JSON.stringify(branch.slice(0, 100))}`);
}

/** True when `value` holds an ASCII control character (or a space, when `spaceToo`). */
function hasControlChar(value: string, spaceToo: boolean): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || code === 0x7f || (spaceToo && code === 0x20)) return true;
  }
  return false;
}

/** Quotes a value for a git config file: always double-quoted, `\` and `"` escaped. */
function configValue(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** `.git/description` as git's default template writes it (unchanged since git 1.5). */
export const GIT_DESCRIPTION = "Unnamed repository; edit this file 'description' to name the repository.\n";

/** `.git/info/exclude` as git's default template writes it. */
export const GIT_INFO_EXCLUDE = [
  '# git ls-files --others --exclude-from=.git/info/exclude',
  "# Lines that start with '#' are comments.",
  '# For a project mostly in C, the following would be a good set of',
  '# exclude patterns (uncomment them if you want to use them):',
  '# *.[oa]',
  '# *~',
  '',
].join('\n');

/** The identity of the archive's reflog entries; the restore client replaces it with the user's. */
export const SNAPSHOT_REFLOG_IDENT = 'cachew <cachew@snapshot.invalid>';

/**
 * One reflog line as `git clone` writes it for the checkout (`0{40} <commit> <ident> <time> <tz>\tclone:
 * from <url>`), with a fixed identity and the commit's time so the archive stays a pure function.
 */
function cloneReflog(commit: string, upstreamUrl: string, time: number): string {
  return `${'0'.repeat(40)} ${commit} ${SNAPSHOT_REFLOG_IDENT} ${time} +0000\tclone: from ${upstreamUrl}\n`;
}

/** Directory entries for every parent of `refs/heads/<branch>` under `base` (a branch may hold `/`). */
function branchParents(base: string, branch: string): GitDirEntry[] {
  const parts = branch.split('/').slice(0, -1);
  return parts.map((_, i) => ({ path: `${base}/${parts.slice(0, i + 1).join('/')}` }));
}

/**
 * The `.git/` entries, directories before their contents, in the fixed order they appear in the tar.
 * `time` (seconds) stamps the reflog entries: the commit's committer time.
 */
export function gitDirEntries(upstreamUrl: string, commit: string, branch: string, time: number): GitDirEntry[] {
  assertBranchName(branch);
  // Control characters (newlines above all) could inject config lines.
  if (upstreamUrl.length === 0 || hasControlChar(upstreamUrl, false)) {
    throw new BadRequestError('invalid upstream URL for snapshot');
  }
  const config = [
    '[core]',
    '\trepositoryformatversion = 0',
    '\tfilemode = true',
    '\tbare = false',
    '\tlogallrefupdates = true',
    // The index in the snapshot carries synthetic stat data (see git-index.ts): compare only mtime,
    // size and mode, which tar extraction restores, so the restored clone is clean without a rehash.
    '\tcheckStat = minimal',
    '\ttrustctime = false',
    '[remote "origin"]',
    `\turl = ${configValue(upstreamUrl)}`,
    '\tfetch = +refs/heads/*:refs/remotes/origin/*',
    `[branch ${configValue(branch)}]`,
    '\tremote = origin',
    `\tmerge = ${configValue(`refs/heads/${branch}`)}`,
    '',
  ].join('\n');
  const packedRefs = [
    '# pack-refs with: peeled fully-peeled sorted ',
    `${commit} refs/heads/${branch}`,
    `${commit} refs/remotes/origin/${branch}`,
    '',
  ].join('\n');
  const text = (s: string): Buffer => Buffer.from(s, 'utf8');
  const reflog = text(cloneReflog(commit, upstreamUrl, time));
  return [
    { path: '.git' },
    { path: '.git/HEAD', content: text(`ref: refs/heads/${branch}\n`) },
    { path: '.git/branches' },
    { path: '.git/config', content: text(config) },
    { path: '.git/description', content: text(GIT_DESCRIPTION) },
    { path: '.git/hooks' },
    { path: '.git/info' },
    { path: '.git/info/exclude', content: text(GIT_INFO_EXCLUDE) },
    { path: '.git/logs' },
    { path: '.git/logs/HEAD', content: reflog },
    { path: '.git/logs/refs' },
    { path: '.git/logs/refs/heads' },
    ...branchParents('.git/logs/refs/heads', branch),
    { path: `.git/logs/refs/heads/${branch}`, content: reflog },
    { path: '.git/logs/refs/remotes' },
    { path: '.git/logs/refs/remotes/origin' },
    { path: '.git/logs/refs/remotes/origin/HEAD', content: reflog },
    { path: '.git/objects' },
    { path: '.git/objects/info' },
    { path: '.git/objects/pack' },
    { path: '.git/packed-refs', content: text(packedRefs) },
    { path: '.git/refs' },
    { path: '.git/refs/heads' },
    { path: '.git/refs/remotes' },
    { path: '.git/refs/remotes/origin' },
    { path: '.git/refs/remotes/origin/HEAD', content: text(`ref: refs/remotes/origin/${branch}\n`) },
    { path: '.git/refs/tags' },
  ];
}
