/**
 * A restored clone is a clone: `cachew git restore <url>` compared with `git clone <url>` through
 * cachewd (an `insteadOf` rule given only to that command, so the clone stores the URL as typed), on
 * an upstream with several branches, annotated and lightweight tags (one on a commit no branch
 * reaches). Same refs, same config apart from the keys docs/snapshots.md lists as ours, the same
 * `.git` layout (description, info/exclude, reflogs, hook samples), `origin` as typed with and without
 * `.git`, and `git describe` / `git checkout <branch>` working without any transport.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';

const exec = promisify(execFile);

/**
 * Keys a restored clone may have and a clone has not (docs/snapshots.md, "Config keys that are
 * ours"): none — the client drops the archive's core.checkStat/core.trustctime (index-stat.ts).
 */
const OUR_CONFIG_KEYS = new Set<string>();

let upstream: Upstream;
let cachew: TestCachew;
let tmp: string;
/** The environment of the user: no GIT_* redirections, a fixed identity, no system or global config. */
let userEnv: NodeJS.ProcessEnv;

async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await exec('git', args, { cwd, env: userEnv, maxBuffer: 16 * 1024 * 1024 });
  return stdout.replace(/\n$/, '');
}

/** Git that may not use any transport: proves a command works offline. */
const offlineGit = (cwd: string, ...args: string[]): Promise<string> => git(cwd, '-c', 'protocol.allow=never', ...args);

async function restoreCli(repoUrl: string, dir: string, ...flags: string[]): Promise<void> {
  await exec(process.execPath, ['--import', 'tsx', 'src/cli/cachew.ts', 'git', 'restore', repoUrl, dir, '--url', cachew.url, ...flags], {
    env: userEnv,
  });
}

/** `git clone <typed>` with cachewd in between, the way users point git at the cache. */
async function cloneThroughCachew(typed: string, dir: string): Promise<void> {
  const rule = `url.${cachew.url}/git/${upstream.hostName}/.insteadOf=${upstream.url}/`;
  await git(tmp, '-c', rule, 'clone', '-q', typed, dir);
}

/** Every path under `.git`, except objects, loose refs (packed or not is git's choice) and the index. */
async function gitLayout(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (at: string): Promise<void> => {
    for (const entry of await readdir(at, { withFileTypes: true })) {
      const full = join(at, entry.name);
      const rel = relative(join(dir, '.git'), full);
      if (rel === 'objects' || rel === 'index' || rel === 'packed-refs' || rel.startsWith('refs/')) continue;
      out.push(entry.isDirectory() ? `${rel}/` : rel);
      if (entry.isDirectory()) await walk(full);
    }
  };
  await walk(join(dir, '.git'));
  return out.sort();
}

/** A reflog line without its timestamp (clone and restore ran at different seconds). */
const withoutTime = (log: string): string => log.replace(/> \d+ [+-]\d{4}\t/g, '> <time>\t');

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cachew-clone-parity-'));
  const home = join(tmp, 'home');
  await mkdir(home);
  userEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GIT_')));
  Object.assign(userEnv, {
    HOME: home,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: 'User',
    GIT_AUTHOR_EMAIL: 'user@example.com',
    GIT_COMMITTER_NAME: 'User',
    GIT_COMMITTER_EMAIL: 'user@example.com',
    GIT_TERMINAL_PROMPT: '0',
  });
  upstream = await startUpstream();
  await upstream.createRepo('org/tagged', { 'README.md': '# tagged\n' });
  await upstream.commit('org/tagged', { 'a.txt': 'a\n' });
  // Branches and tags, pushed from a work clone of the bare repository.
  const work = join(tmp, 'work');
  await git(tmp, 'clone', '-q', join(upstream.root, 'org/tagged.git'), work);
  await git(work, 'tag', 'v0.1'); // lightweight
  await git(work, 'tag', '-a', '-m', 'release 1.0', 'v1.0');
  await git(work, 'checkout', '-q', '-b', 'feature/x');
  await git(work, 'commit', '-q', '--allow-empty', '-m', 'feature work');
  await git(work, 'tag', '-a', '-m', 'on the feature', 'feature-tag');
  await git(work, 'checkout', '-q', '--orphan', 'detached-history');
  await git(work, 'commit', '-q', '--allow-empty', '-m', 'reachable from a tag only');
  await git(work, 'tag', '-a', '-m', 'orphan', 'orphan-tag');
  await git(work, 'checkout', '-q', 'main');
  await git(work, 'branch', 'release-1', 'v0.1');
  await git(work, 'push', '-q', 'origin', 'main', 'feature/x', 'release-1', 'v0.1', 'v1.0', 'feature-tag', 'orphan-tag');
  await upstream.commit('org/tagged', { 'b.txt': 'b\n' });
  // Every request rechecks upstream: what restore and clone see is upstream "now", with no waiting.
  cachew = await startCachew([upstream], { refCheckIntervalMs: 1 });
});

after(async () => {
  await cachew?.stop();
  await upstream?.stop();
  await rm(tmp, { recursive: true, force: true });
});

/** Asserts everything a user could tell apart between the restored clone and the real clone. */
async function assertSameAsClone(restored: string, cloned: string, typed: string): Promise<void> {
  const refs = (dir: string): Promise<string> => git(dir, 'for-each-ref', '--format=%(objectname) %(objecttype) %(refname) %(symref)');
  const restoredRefs = await refs(restored);
  assert.equal(restoredRefs, await refs(cloned), 'same refs as git clone');
  assert.match(restoredRefs, / tag refs\/tags\/orphan-tag /, 'a tag on history no branch reaches');
  assert.match(restoredRefs, / refs\/remotes\/origin\/HEAD refs\/remotes\/origin\/main$/m);

  assert.equal(await git(restored, 'remote', 'get-url', 'origin'), typed);
  assert.equal(await git(restored, 'config', 'remote.origin.url'), typed);
  const localConfig = async (dir: string): Promise<string[]> =>
    (await git(dir, 'config', '--list', '--local')).split('\n').filter((line) => !OUR_CONFIG_KEYS.has(line.split('=')[0]!));
  assert.deepEqual(await localConfig(restored), await localConfig(cloned), 'config equal except our keys');

  assert.deepEqual(await gitLayout(restored), await gitLayout(cloned), 'same .git layout');
  for (const file of ['description', 'info/exclude']) {
    assert.equal(await readFile(join(restored, '.git', file), 'utf8'), await readFile(join(cloned, '.git', file), 'utf8'), file);
  }
  for (const log of ['logs/HEAD', 'logs/refs/heads/main', 'logs/refs/remotes/origin/HEAD']) {
    const mine = await readFile(join(restored, '.git', log), 'utf8');
    assert.equal(withoutTime(mine), withoutTime(await readFile(join(cloned, '.git', log), 'utf8')), log);
  }

  assert.equal(await offlineGit(restored, 'describe', '--tags'), await offlineGit(cloned, 'describe', '--tags'));
  assert.equal(await offlineGit(restored, 'describe', '--tags', 'origin/feature/x'), 'feature-tag');
  assert.equal(await git(restored, 'status', '--porcelain'), '');
  await git(restored, 'fsck', '--full', '--strict', '--no-progress');
  await offlineGit(restored, 'checkout', '-q', 'feature/x');
  assert.equal(await git(restored, 'rev-parse', 'HEAD'), await git(cloned, 'rev-parse', 'origin/feature/x'));
  assert.equal(await git(restored, 'rev-parse', '--abbrev-ref', '@{upstream}'), 'origin/feature/x');
  await offlineGit(restored, 'checkout', '-q', 'release-1');
  await offlineGit(restored, 'checkout', '-q', 'main');
  assert.equal(await git(restored, 'status', '--porcelain'), '');

  // Git's default stat rules apply, as in a clone: a file replaced by one of the same size with its
  // old mtime put back (what cache-restore tools do) is still seen as modified — by its new inode,
  // which core.checkStat=minimal would ignore. Written beside and renamed, so the inode must differ.
  const readme = join(restored, 'README.md');
  const before = await stat(readme);
  const content = await readFile(readme);
  await writeFile(`${readme}.new`, Buffer.from(content.toString('latin1').toUpperCase(), 'latin1'));
  await utimes(`${readme}.new`, before.atime, before.mtime);
  await rename(`${readme}.new`, readme);
  assert.equal(await git(restored, 'status', '--porcelain'), ' M README.md');
  await git(restored, 'checkout', '--', 'README.md');
}

for (const spelling of ['with .git', 'without .git'] as const) {
  test(`a restored clone is a clone (URL typed ${spelling})`, { timeout: 180_000 }, async () => {
    const typed = `${upstream.url}/org/tagged${spelling === 'with .git' ? '.git' : ''}`;
    const name = spelling.replace(/\W+/g, '-');
    const restored = join(tmp, `restored-${name}`);
    const cloned = join(tmp, `cloned-${name}`);
    await restoreCli(typed, restored);
    await cloneThroughCachew(typed, cloned);
    await assertSameAsClone(restored, cloned, typed);
  });
}

test('upstream moved on after the snapshot: the restore still matches a clone made now', { timeout: 180_000 }, async () => {
  const typed = `${upstream.url}/org/tagged.git`;
  // Make sure a snapshot exists, then move every kind of ref upstream.
  await restoreCli(typed, join(tmp, 'warm'));
  const work = join(tmp, 'work');
  await git(work, 'pull', '-q', '--ff-only', 'origin', 'main');
  await git(work, 'commit', '-q', '--allow-empty', '-m', 'after the snapshot');
  await git(work, 'tag', '-a', '-m', 'new', 'v2.0');
  await git(work, 'branch', 'late-branch');
  await git(work, 'push', '-q', 'origin', 'main', 'late-branch', 'v2.0');
  const restored = join(tmp, 'restored-late');
  const cloned = join(tmp, 'cloned-late');
  await restoreCli(typed, restored);
  await cloneThroughCachew(typed, cloned);
  assert.equal(await git(restored, 'rev-parse', 'HEAD'), await git(work, 'rev-parse', 'HEAD'));
  await assertSameAsClone(restored, cloned, typed);
  assert.equal(await offlineGit(restored, 'describe', '--tags', 'main'), 'v2.0');
});

test('--no-bundle restores the archive exactly: the snapshot commit, its branch only, origin as typed', { timeout: 120_000 }, async () => {
  const typed = `${upstream.url}/org/tagged.git`;
  const restored = join(tmp, 'restored-archive-only');
  await restoreCli(typed, restored, '--no-bundle');
  const refs = await git(restored, 'for-each-ref', '--format=%(refname)');
  assert.deepEqual(refs.split('\n'), ['refs/heads/main', 'refs/remotes/origin/HEAD', 'refs/remotes/origin/main']);
  assert.equal(await git(restored, 'remote', 'get-url', 'origin'), typed);
  assert.equal(await git(restored, 'status', '--porcelain'), '');
  await git(restored, 'fsck', '--full', '--no-progress');
});
