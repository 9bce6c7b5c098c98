/**
 * The fixed, canonical contents of a snapshot's `.git/` directory (besides the pack and the index):
 * what `git clone <upstream>` would leave, minus everything machine- or time-specific (hooks, logs,
 * FETCH_HEAD, ORIG_HEAD, description, sample files). Pure functions of (upstream URL, commit, branch).
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

/** The `.git/` entries, directories before their contents, in the fixed order they appear in the tar. */
export function gitDirEntries(upstreamUrl: string, commit: string, branch: string): GitDirEntry[] {
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
  return [
    { path: '.git' },
    { path: '.git/HEAD', content: text(`ref: refs/heads/${branch}\n`) },
    { path: '.git/config', content: text(config) },
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
