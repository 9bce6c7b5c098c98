/**
 * The ref sync's shortcut (src/client/ref-advertisement.ts): when every branch and tag the server has
 * names the archive's commit, the restore writes them without running git (no upload-pack request
 * reaches cachewd); as soon as one names anything else (here an annotated tag, whose tag object the
 * archive lacks), git clones the rest as before. Either way the refs are exactly those of
 * `git clone` through cachewd.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { restore } from '../src/client/restore.js';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';

const exec = promisify(execFile);
const gitEnv = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0' };

let upstream: Upstream;
let cachew: TestCachew;
let tmp: string;
let repoUrl: string;

async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await exec('git', args, { cwd, env: gitEnv });
  return stdout.trim();
}

/** upload-pack requests cachewd answered so far (a `git clone` or `git fetch` sends one or more). */
async function uploadPackRequests(): Promise<number> {
  const text = await (await fetch(`${cachew.url}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('cachew_http_requests_total{') && line.includes('route="git.upload-pack"')) total += Number(line.split(' ').pop());
  }
  return total;
}

/** Branches, tags and what they name, as `for-each-ref` lists them (remote-tracking and tags only). */
async function cloneRefs(dir: string): Promise<string> {
  return git(dir, 'for-each-ref', '--format=%(objectname) %(objecttype) %(refname) %(symref)', 'refs/remotes', 'refs/tags');
}

async function restoreAndClone(name: string): Promise<{ restored: string; cloned: string; uploadPacks: number }> {
  const restored = join(tmp, `${name}-restored`);
  const before = await uploadPackRequests();
  await restore({ repoUrl, dir: restored, serverUrl: cachew.url });
  const uploadPacks = (await uploadPackRequests()) - before;
  const cloned = join(tmp, `${name}-cloned`);
  await git(tmp, 'clone', '-q', `${cachew.url}/git/${upstream.hostName}/org/one`, cloned);
  assert.equal(await cloneRefs(restored), await cloneRefs(cloned), 'the refs of git clone');
  assert.equal(await git(restored, 'status', '--porcelain'), '');
  await git(restored, 'fsck', '--connectivity-only');
  return { restored, cloned, uploadPacks };
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cachew-refs-shortcut-'));
  upstream = await startUpstream();
  repoUrl = await upstream.createRepo('org/one', { 'README.md': '# one\n' });
  await upstream.commit('org/one', { 'a.txt': 'a\n' });
  cachew = await startCachew([upstream], { refCheckIntervalMs: 1 });
});

after(async () => {
  await cachew?.stop();
  await upstream?.stop();
  await rm(tmp, { recursive: true, force: true });
});

test('one branch: the refs come from the advertisement, no git clone of the server', { timeout: 120_000 }, async () => {
  const { restored, uploadPacks } = await restoreAndClone('single');
  assert.equal(uploadPacks, 0, 'no upload-pack request: the sync ran no git');
  assert.equal(await git(restored, 'rev-parse', 'origin/main'), await upstream.head('org/one'));
});

test('a lightweight tag at the head is still the shortcut; an annotated one makes git fetch it', { timeout: 120_000 }, async () => {
  const work = join(tmp, 'work');
  await git(tmp, 'clone', '-q', join(upstream.root, 'org/one.git'), work);
  await git(work, 'tag', 'v1');
  await git(work, 'push', '-q', 'origin', 'v1');
  const light = await restoreAndClone('light');
  assert.equal(light.uploadPacks, 0, 'every ref names the archive commit');
  assert.equal(await git(light.restored, 'rev-parse', 'v1'), await upstream.head('org/one'));

  await git(work, '-c', 'user.name=T', '-c', 'user.email=t@example.com', 'tag', '-a', '-m', 'release', 'v2');
  await git(work, 'push', '-q', 'origin', 'v2');
  const annotated = await restoreAndClone('annotated');
  assert.ok(annotated.uploadPacks > 0, 'the tag object came through git');
  assert.equal(await git(annotated.restored, 'cat-file', '-t', 'v2'), 'tag');
});
