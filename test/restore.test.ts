/**
 * End-to-end: `cachew git restore` (the real CLI) against the real server and a real upstream:
 * a clean clone at the snapshot commit, then — after upstream moves on — at the newest commit via the
 * delta bundle, with `origin` the upstream URL and `git status` clean without rehashing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, lstat, readlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { ManualClock } from '../src/util/testing/manual-clock.js';

const execFileAsync = promisify(execFile);
const gitEnv = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0' };
const git = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, env: gitEnv, encoding: 'utf8' }).trim();

let upstream: Upstream;
let cachew: TestCachew;
let tmp: string;
let repoUrl: string;
const clock = new ManualClock();

async function restoreCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['--import', 'tsx', 'src/cli/cachew.ts', 'git', 'restore', ...args], { env: { ...process.env, CACHEW_URL: cachew.url } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cachew-restore-e2e-'));
  upstream = await startUpstream();
  repoUrl = await upstream.createRepo('org/app', {
    'README.md': '# app\n',
    'tools/build.sh': { content: '#!/bin/sh\nexit 0\n', mode: '100755' },
    'docs/link': { content: '../README.md', mode: '120000' },
    'Cargo.lock': 'lock\n',
  });
  for (let i = 0; i < 3; i++) await upstream.commit('org/app', { [`src/m${i}.txt`]: `module ${i}\n`.repeat(1000) });
  repoUrl = repoUrl.replace(/\.git$/, '');
  cachew = await startCachew([upstream], {}, { clock });
});
after(async () => {
  await cachew?.stop();
  await upstream?.stop();
  await rm(tmp, { recursive: true, force: true });
});

test('restore gives a clean clone at the snapshot commit, then at the newest commit via the bundle', { timeout: 180_000 }, async () => {
  const first = join(tmp, 'first');
  // Small chunks so several concurrent ranged requests are really used.
  const r1 = await restoreCli([repoUrl, first, '--json', '--chunk-size', '4KiB', '--concurrency', '4']);
  assert.equal(r1.code, 0, r1.stderr);
  const summary1 = JSON.parse(r1.stdout) as { commit: string; digest: string; bytes: number; seconds: number; bundleApplied: boolean };
  const head1 = await upstream.head('org/app');
  assert.equal(summary1.commit, head1);
  assert.equal(summary1.bundleApplied, false);
  assert.match(summary1.digest, /^[0-9a-f]{64}$/);
  assert.equal(git(first, 'rev-parse', 'HEAD'), head1);
  assert.equal(git(first, 'remote', 'get-url', 'origin'), repoUrl);
  const indexBefore = await stat(join(first, '.git/index'));
  assert.equal(git(first, 'status', '--porcelain'), '');
  const indexAfter = await stat(join(first, '.git/index'));
  assert.equal(indexAfter.mtimeMs, indexBefore.mtimeMs, 'git status did not need to rewrite the index');
  git(first, 'fsck', '--full');
  assert.ok(((await lstat(join(first, 'tools/build.sh'))).mode & 0o111) !== 0);
  assert.equal(await readlink(join(first, 'docs/link')), '../README.md');
  assert.deepEqual((await readdir(tmp)).sort(), ['first'], 'no temp sibling left');

  // Upstream moves on: the stable URL still names the old snapshot and advertises the bundle.
  const head2 = await upstream.commit('org/app', { 'src/new.txt': 'new\n' });
  await clock.advance(1000); // past --ref-check-interval
  const second = join(tmp, 'second');
  const r2 = await restoreCli([repoUrl, second, '--json']);
  assert.equal(r2.code, 0, r2.stderr);
  const summary2 = JSON.parse(r2.stdout) as { commit: string; bundleApplied: boolean };
  // At the new head either way: via the bundle, or because the background regeneration already won.
  assert.equal(summary2.commit, head2);
  assert.equal(git(second, 'rev-parse', 'HEAD'), head2);
  assert.equal(git(second, 'status', '--porcelain'), '');
  assert.equal(git(second, 'remote', 'get-url', 'origin'), repoUrl);

  // --no-bundle against a lagging snapshot stays at the snapshot commit.
  const head3 = await upstream.commit('org/app', { 'src/newer.txt': 'newer\n' });
  await clock.advance(1000); // past --ref-check-interval
  const third = join(tmp, 'third');
  const r3 = await restoreCli([repoUrl, third, '--json', '--no-bundle']);
  assert.equal(r3.code, 0, r3.stderr);
  const summary3 = JSON.parse(r3.stdout) as { commit: string; bundleApplied: boolean };
  assert.equal(summary3.bundleApplied, false);
  assert.notEqual(summary3.commit, head3);
  assert.equal(git(third, 'rev-parse', 'HEAD'), summary3.commit);
});

test('exit 2 when the server has no snapshot; a non-empty target is refused untouched', { timeout: 60_000 }, async () => {
  const missing = await restoreCli([`${upstream.url}/org/nope`, join(tmp, 'nope'), '--json']);
  assert.equal(missing.code, 2, missing.stderr);
  assert.equal(missing.stderr.trim().split('\n').length, 1);
  const occupied = join(tmp, 'occupied');
  execFileSync('mkdir', ['-p', occupied]);
  execFileSync('touch', [join(occupied, 'keep.txt')]);
  const refused = await restoreCli([repoUrl, occupied]);
  assert.equal(refused.code, 1);
  assert.deepEqual(await readdir(occupied), ['keep.txt']);
});
