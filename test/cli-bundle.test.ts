/**
 * The installed `cachew` command is a bundle (scripts/bundle-cli.mjs, package.json `bin`): one file
 * for the command and one for its extraction thread, built from src/. Built here into a scratch
 * directory under node_modules/.cache (so the libzstd addon resolves as it does from dist/) and run
 * for a real restore against the real server.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';

const execFileAsync = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const gitEnv = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0' };
const git = (cwd: string, ...args: string[]): string => execFileSync('git', args, { cwd, env: gitEnv, encoding: 'utf8' }).trim();

let upstream: Upstream;
let cachew: TestCachew;
let tmp: string;
let bundleDir: string;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cachew-bundle-'));
  bundleDir = join(ROOT, 'node_modules', '.cache', `cachew-bundle-test-${process.pid}`);
  const { bundleCli } = (await import(join(ROOT, 'scripts', 'bundle-cli.mjs'))) as { bundleCli: (outdir: string) => Promise<void> };
  await bundleCli(bundleDir);
  upstream = await startUpstream();
  cachew = await startCachew([upstream]);
});
after(async () => {
  await cachew?.stop();
  await upstream?.stop();
  await rm(tmp, { recursive: true, force: true });
  if (bundleDir) await rm(bundleDir, { recursive: true, force: true });
});

test('the bundled command restores a clean clone, its extraction thread beside it', { timeout: 120_000 }, async () => {
  assert.deepEqual((await readdir(bundleDir)).sort(), ['cachew.js', 'extract-worker.js']);
  const help = await execFileAsync(process.execPath, [join(bundleDir, 'cachew.js'), '--help']);
  assert.match(help.stdout, /cachew git restore <repo-url> <dir>/);

  const repoUrl = await upstream.createRepo('org/bundled', { 'README.md': '# bundled\n', 'src/a.txt': 'a\n'.repeat(5000) });
  const dir = join(tmp, 'clone');
  const { stdout } = await execFileAsync(process.execPath, [join(bundleDir, 'cachew.js'), 'git', 'restore', repoUrl, dir, '--json', '--chunk-size', '4KiB'], {
    env: { ...process.env, CACHEW_URL: cachew.url },
  });
  const summary = JSON.parse(stdout) as { commit: string; bundleApplied: boolean };
  assert.equal(summary.commit, await upstream.head('org/bundled'));
  assert.equal(git(dir, 'rev-parse', 'HEAD'), summary.commit);
  assert.equal(git(dir, 'status', '--porcelain'), '');
  assert.equal(git(dir, 'remote', 'get-url', 'origin'), repoUrl);
});
