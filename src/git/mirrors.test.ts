import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startUpstream, type Upstream } from '../../test/harness/upstream.js';
import { runGit } from './command.js';
import { MirrorManager } from './mirrors.js';
import { UpstreamRegistry } from './upstreams.js';
import { NotFoundError, UnavailableError, UpstreamError } from '../util/errors.js';
import { silentLogger } from '../util/logger.js';
import { Metrics } from '../util/metrics.js';
import { ManualClock } from '../util/testing/manual-clock.js';

interface Fixture {
  up: Upstream;
  root: string;
  /** The clock of every manager's ref-check interval. */
  clock: ManualClock;
  manager(options?: { refCheckIntervalMs?: number; waitMs?: number }): { mirrors: MirrorManager; metrics: Metrics };
}

async function fixture(t: { after(fn: () => Promise<void>): void }): Promise<Fixture> {
  const up = await startUpstream();
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-mirrors-'));
  const managers: MirrorManager[] = [];
  const clock = new ManualClock();
  t.after(async () => {
    for (const m of managers) await m.close();
    await up.stop();
    await fs.rm(root, { recursive: true, force: true });
  });
  return {
    up,
    root,
    clock,
    manager(options = {}) {
      const metrics = new Metrics();
      const mirrors = new MirrorManager({
        root,
        refCheckIntervalMs: options.refCheckIntervalMs ?? 60_000,
        waitMs: options.waitMs ?? 60_000,
        logger: silentLogger,
        metrics,
        upstreams: new UpstreamRegistry([{ name: up.hostName, baseUrl: up.url }]),
        clock,
      });
      managers.push(mirrors);
      return { mirrors, metrics };
    },
  };
}

const infoRefs = (up: Upstream): number => up.requests.filter((r) => r.path.includes('/info/refs')).length;

async function refs(gitDir: string): Promise<string> {
  return runGit(['for-each-ref', '--format=%(objectname) %(refname)'], { cwd: gitDir });
}

void test('clones once for concurrent callers, matches upstream refs and default branch', { timeout: 120_000 }, async (t) => {
  const f = await fixture(t);
  await f.up.createRepo('org/app', { 'a.txt': 'a\n' });
  await f.up.commit('org/app', { 'b.txt': 'b\n' });
  const { mirrors, metrics } = f.manager();
  const mirror = mirrors.get(f.up.hostName, 'org/app');
  assert.equal(mirrors.get(f.up.hostName, 'org/app'), mirror, 'one object per repository');
  assert.equal(mirror.state, 'empty');
  assert.equal(mirror.gitDir, path.join(f.root, f.up.hostName, 'org/app.git'));
  assert.equal(mirror.upstreamUrl, `${f.up.url}/org/app`);

  await Promise.all(Array.from({ length: 10 }, () => mirror.ensureReady()));
  assert.equal(mirror.state, 'ready');
  assert.equal(infoRefs(f.up), 1, 'ten concurrent callers cause one clone');
  assert.match(await metrics.registry.metrics(), /cachew_git_operations_total\{op="clone",outcome="ok"\} 1/);

  assert.equal(await refs(mirror.gitDir), await refs(path.join(f.up.root, 'org/app.git')));
  const head = await f.up.head('org/app');
  assert.deepEqual(await mirror.defaultBranch(), { name: 'main', commit: head });
  assert.equal(await mirror.hasCommit(head), true);
  assert.equal(await mirror.hasCommit('0'.repeat(40)), false);
  assert.equal(await mirror.hasCommit('not-a-sha'), false);
  assert.equal((await runGit(['config', 'uploadpack.allowFilter'], { cwd: mirror.gitDir })).trim(), 'true');
  assert.deepEqual(await fs.readdir(path.join(f.root, '.tmp')), [], 'staging dir left empty');
});

void test('close waits until a clone in progress has stopped and its staging directory is gone', { timeout: 120_000 }, async (t) => {
  const f = await fixture(t);
  // Big enough that the clone is still running when close() comes.
  const files: Record<string, string> = {};
  for (let i = 0; i < 200; i++) files[`f${i}.bin`] = randomBytes(64 * 1024).toString('base64');
  await f.up.createRepo('org/big', files);
  const { mirrors } = f.manager();
  const cloning = mirrors.get(f.up.hostName, 'org/big').ensureReady();
  cloning.catch(() => undefined);
  const staging = path.join(f.root, '.tmp');
  // Bounded wait for the clone to create its staging directory (the event this test is about).
  for (let i = 0; i < 2_000 && (await fs.readdir(staging).catch(() => [])).length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.notDeepEqual(await fs.readdir(staging), [], 'the clone was staging when close() came');
  await mirrors.close();
  assert.deepEqual(await fs.readdir(staging), [], 'nothing of the clone is left, nothing still writes');
  await assert.rejects(cloning);
});

void test('reuses mirrors found on disk and cleans .tmp at start-up', { timeout: 120_000 }, async (t) => {
  const f = await fixture(t);
  await f.up.createRepo('org/keep');
  await f.manager().mirrors.get(f.up.hostName, 'org/keep').ensureReady();
  const before = f.up.requests.length;

  await fs.mkdir(path.join(f.root, '.tmp', 'half.git'), { recursive: true });
  const { mirrors } = f.manager();
  assert.equal(existsSync(path.join(f.root, '.tmp', 'half.git')), false);
  // The inventory lists the mirror from the earlier manager before anyone asks for it.
  assert.deepEqual(await mirrors.list(), [{ host: f.up.hostName, repo: 'org/keep' }]);
  const mirror = mirrors.get(f.up.hostName, 'org/keep');
  assert.equal(mirror.state, 'ready');
  await mirror.ensureReady();
  assert.deepEqual((await mirror.defaultBranch()).commit, await f.up.head('org/keep'));
  assert.equal(f.up.requests.length, before, 'no upstream request for a reused mirror');
});

void test('ensureFresh fetches at most once per interval, coalesced; fetchNow sees pushes and force-pushes', { timeout: 120_000 }, async (t) => {
  const f = await fixture(t);
  await f.up.createRepo('org/live');
  const { mirrors, metrics } = f.manager({ refCheckIntervalMs: 400 });
  const mirror = mirrors.get(f.up.hostName, 'org/live');
  await mirror.ensureFresh();
  const afterClone = f.up.requests.length;
  const cloned = (await mirror.defaultBranch()).commit;

  const pushed = await f.up.commit('org/live', { 'new.txt': 'x\n' });
  await mirror.ensureFresh();
  assert.equal(f.up.requests.length, afterClone, 'within the interval nothing goes upstream');
  assert.equal(await mirror.hasCommit(pushed), false);

  await f.clock.advance(399);
  await mirror.ensureFresh();
  assert.equal(f.up.requests.length, afterClone, 'still within the interval');
  await f.clock.advance(1);
  await Promise.all(Array.from({ length: 8 }, () => mirror.ensureFresh()));
  assert.equal((await mirror.defaultBranch()).commit, pushed);
  assert.match(await metrics.registry.metrics(), /cachew_git_operations_total\{op="fetch",outcome="ok"\} 1\n/, 'one coalesced fetch');
  assert.equal(await mirror.isAncestor(cloned, pushed), true, 'descendant');
  assert.equal(await mirror.isAncestor(pushed, pushed), true, 'a commit is its own ancestor');
  assert.equal(await mirror.isAncestor(pushed, cloned), false, 'older commit of the current history');
  assert.equal(await mirror.isAncestor('a'.repeat(40), pushed), false, 'unknown to the mirror');
  assert.equal(await mirror.isAncestor('--all', pushed), false, 'not an id');

  const rewritten = await f.up.forcePush('org/live', { 'other.txt': 'o\n' });
  await Promise.all([mirror.fetchNow(), mirror.fetchNow()]);
  assert.equal((await mirror.defaultBranch()).commit, rewritten);
  assert.equal(await mirror.isAncestor(pushed, rewritten), false, 'force-pushed out of the history');
  assert.equal(await refs(mirror.gitDir), await refs(path.join(f.up.root, 'org/live.git')));
});

void test('upstream down: an existing mirror is served stale, a new one fails with UpstreamError', { timeout: 120_000 }, async (t) => {
  const f = await fixture(t);
  await f.up.createRepo('org/old');
  await f.up.createRepo('org/new');
  const { mirrors } = f.manager({ refCheckIntervalMs: 1 });
  const old = mirrors.get(f.up.hostName, 'org/old');
  await old.ensureReady();
  f.up.setDown(true);
  await f.clock.advance(1);
  await old.ensureFresh();
  assert.equal((await old.defaultBranch()).commit, await f.up.head('org/old'));
  await assert.rejects(old.fetchNow(), UpstreamError);

  const fresh = mirrors.get(f.up.hostName, 'org/new');
  await assert.rejects(fresh.ensureReady(), (err: unknown) => err instanceof UpstreamError && /HTTP 503/.test(err.message));
  assert.equal(fresh.state, 'empty');
  assert.equal(existsSync(fresh.gitDir), false);
  f.up.setDown(false);
  await fresh.ensureReady();
  assert.equal(fresh.state, 'ready', 'a failed clone is retried by the next caller');
});

void test('missing repository → NotFoundError; slow clone → UnavailableError; bad inputs refused', { timeout: 120_000 }, async (t) => {
  const f = await fixture(t);
  await f.up.createRepo('org/slow');
  const { mirrors } = f.manager();
  const missing = mirrors.get(f.up.hostName, 'org/missing');
  await assert.rejects(missing.ensureReady(), NotFoundError);
  assert.equal(existsSync(path.join(f.root, f.up.hostName, 'org')), false, 'nothing created for a missing repo');
  const asked = f.up.requests.length;
  await assert.rejects(missing.ensureReady(), NotFoundError);
  assert.equal(f.up.requests.length, asked, 'a repeated miss within the ref-check interval does not go upstream');

  const { mirrors: impatient } = f.manager({ waitMs: 0 });
  const slow = impatient.get(f.up.hostName, 'org/slow');
  await assert.rejects(slow.ensureReady(), (err: unknown) => err instanceof UnavailableError && err.retryAfterSeconds > 0);
  const stateOf = (): string => slow.state;
  assert.equal(stateOf(), 'cloning');
  // The clone goes on in the background after the caller gave up.
  for (let i = 0; i < 600 && stateOf() !== 'ready'; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(stateOf(), 'ready');

  assert.throws(() => mirrors.get('unknown.example', 'org/x'), NotFoundError);
  assert.throws(() => mirrors.get(f.up.hostName, 'a.git/b'));
  assert.throws(() => mirrors.get(f.up.hostName, '../escape'));
});

void test('HEAD follows upstream default-branch changes with every ref check', { timeout: 120_000 }, async (t) => {
  const f = await fixture(t);
  await f.up.createRepo('org/branchy');
  const bare = path.join(f.up.root, 'org/branchy.git');
  const { mirrors } = f.manager();
  const mirror = mirrors.get(f.up.hostName, 'org/branchy');
  await mirror.ensureReady();
  assert.equal((await mirror.defaultBranch()).name, 'main');

  await runGit(['branch', 'trunk', 'main'], { cwd: bare });
  await runGit(['symbolic-ref', 'HEAD', 'refs/heads/trunk'], { cwd: bare });
  await mirror.fetchNow();
  assert.deepEqual(await mirror.defaultBranch(), { name: 'trunk', commit: await f.up.head('org/branchy') });

  // A second manager finds the mirror on disk; its HEAD follows too, also when its branch is pruned away.
  const { mirrors: lazy } = f.manager();
  const other = lazy.get(f.up.hostName, 'org/branchy');
  assert.equal(other.state, 'ready');
  await runGit(['branch', 'stable', 'main'], { cwd: bare });
  await runGit(['symbolic-ref', 'HEAD', 'refs/heads/stable'], { cwd: bare });
  await runGit(['branch', '-D', 'trunk'], { cwd: bare });
  await other.fetchNow();
  assert.equal((await other.defaultBranch()).name, 'stable');
});

void test('the default branch is read from git once per ref update, not once per request', async (t) => {
  const f = await fixture(t);
  await f.up.createRepo('org/cached');
  const { mirrors } = f.manager();
  const mirror = mirrors.get(f.up.hostName, 'org/cached');
  const head = await f.up.head('org/cached');
  assert.deepEqual(await mirror.defaultBranch(), { name: 'main', commit: head });
  // Moved behind the mirror's back (in service only its own ref updates move HEAD): the answer
  // read after the last update stands, so no git process ran for it.
  await runGit(['symbolic-ref', 'HEAD', 'refs/heads/elsewhere'], { cwd: mirror.gitDir });
  assert.deepEqual(await mirror.defaultBranch(), { name: 'main', commit: head });
  // The mirror's next ref update (a fetch, which also points HEAD back at upstream's) reads it again.
  const pushed = await f.up.commit('org/cached', { 'b.txt': 'b\n' });
  await mirror.fetchNow();
  assert.deepEqual(await mirror.defaultBranch(), { name: 'main', commit: pushed });
});

void test('the refs version moves with every ref change, and a check that finds nothing new leaves it', async (t) => {
  const f = await fixture(t);
  await f.up.createRepo('org/versioned');
  const bare = path.join(f.up.root, 'org/versioned.git');
  const { mirrors } = f.manager();
  const mirror = mirrors.get(f.up.hostName, 'org/versioned');
  await mirror.ensureReady();
  await mirror.fetchNow();
  const settled = mirror.refsVersion;
  await mirror.fetchNow();
  await mirror.fetchNow();
  assert.equal(mirror.refsVersion, settled, 'upstream unchanged: answers kept for this version stay valid');

  const pushed = await f.up.commit('org/versioned', { 'b.txt': 'b\n' });
  await mirror.fetchNow();
  const afterPush = mirror.refsVersion;
  assert.ok(afterPush > settled, 'a fetched commit');
  assert.equal((await mirror.defaultBranch()).commit, pushed);

  await runGit(['branch', 'side', 'main'], { cwd: bare });
  await mirror.fetchNow();
  const afterBranch = mirror.refsVersion;
  assert.ok(afterBranch > afterPush, 'a new branch');
  await runGit(['symbolic-ref', 'HEAD', 'refs/heads/side'], { cwd: bare });
  await mirror.fetchNow();
  const afterHead = mirror.refsVersion;
  assert.ok(afterHead > afterBranch, 'HEAD moved');
  assert.equal((await mirror.defaultBranch()).name, 'side');
  await runGit(['symbolic-ref', 'HEAD', 'refs/heads/main'], { cwd: bare });
  await runGit(['branch', '-D', 'side'], { cwd: bare });
  await mirror.fetchNow();
  assert.ok(mirror.refsVersion > afterHead, 'a deleted branch');
  assert.equal(await refs(mirror.gitDir), await refs(bare));
  assert.equal((await mirror.defaultBranch()).name, 'main');

  f.up.setDown(true);
  const beforeFailure = mirror.refsVersion;
  await assert.rejects(mirror.fetchNow());
  f.up.setDown(false);
  assert.equal(mirror.refsVersion, beforeFailure, 'a listing that failed wrote nothing');
  const later = await f.up.commit('org/versioned', { 'c.txt': 'c\n' });
  await mirror.fetchNow();
  assert.ok(mirror.refsVersion > beforeFailure);
  assert.equal((await mirror.defaultBranch()).commit, later);
});
