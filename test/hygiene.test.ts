/**
 * Crash and disk hygiene (issue 8, finding 4): temp leftovers of crashes are gone after a restart and
 * stale ones are swept while running (fresh ones kept); children whose cachewd died are killed at
 * start-up; a full disk is a 507 with Retry-After (never "could not read the request body" 400) and
 * readiness says so.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { runGit } from '../src/git/command.js';
import { GitCommandError } from '../src/util/errors.js';
import { PARENT_PID_ENV, STATE_DIR_ENV } from '../src/util/orphans.js';
import { publicError, statusForError } from '../src/http/reply.js';
import { startUpstream } from './harness/upstream.js';
import { startCachew } from './harness/cachew.js';
import { get } from './harness/http.js';

const clientGit = (tmp: string, args: string[]): Promise<string> =>
  runGit(['-c', 'credential.helper=', ...args], { cwd: tmp, env: { HOME: tmp, GIT_TERMINAL_PROMPT: '0' }, timeoutMs: 120_000 });

async function plant(file: string, ageMs = 0): Promise<string> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, 'leftover\n');
  if (ageMs > 0) {
    const then = new Date(Date.now() - ageMs);
    await fs.utimes(file, then, then);
    await fs.utimes(path.dirname(file), then, then);
  }
  return file;
}

void test('crash leftovers are gone after a restart; stale ones are swept while running, fresh ones kept', { timeout: 180_000 }, async (t) => {
  const up = await startUpstream();
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-hygiene-'));
  const stateDir = path.join(tmp, 'state');
  t.after(async () => {
    await up.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  });
  await up.createRepo('org/app', { 'a.txt': 'a\n' });
  const first = await startCachew([up], {}, { stateDir });
  await clientGit(tmp, ['clone', '-q', `${first.url}/git/${up.hostName}/org/app`, path.join(tmp, 'c1')]);
  await first.stop();

  // What a kill -9 or ENOSPC in the middle of generation, fetch and spooling leaves behind.
  const gitDir = path.join(stateDir, 'mirrors', up.hostName, 'org/app.git');
  const leftovers = [
    await plant(path.join(stateDir, 'tmp', '.cachew-pack-Ab12Cd', 'pack-1.pack')),
    await plant(path.join(stateDir, 'tmp', 'snapshot-0b6f.tar.zst')),
    await plant(path.join(stateDir, 'mirrors', '.tmp', 'req-0011223344556677')),
    await plant(path.join(gitDir, 'objects', 'pack', 'tmp_pack_Xy12Zq')),
    await plant(path.join(gitDir, 'objects', 'pack', 'tmp_idx_Xy12Zq')),
    await plant(path.join(gitDir, 'objects', 'ab', 'tmp_obj_Qw3Er4')),
    await plant(path.join(gitDir, 'objects', 'tmp_obj_Ty5Ui6')),
    await plant(path.join(gitDir, 'refs', 'heads', 'main.lock')),
    await plant(path.join(gitDir, 'packed-refs.lock')),
  ];
  const second = await startCachew([up], { refCheckIntervalMs: 1 }, { stateDir });
  t.after(() => second.stop());
  for (const file of leftovers) assert.equal(existsSync(file), false, `${path.relative(stateDir, file)} removed at start-up`);
  // The mirror itself is intact and serves (and refreshes: the ref lock is gone).
  await up.commit('org/app', { 'b.txt': 'b\n' });
  await clientGit(tmp, ['clone', '-q', `${second.url}/git/${up.hostName}/org/app`, path.join(tmp, 'c2')]);
  assert.equal((await clientGit(path.join(tmp, 'c2'), ['rev-parse', 'HEAD'])).trim(), await up.head('org/app'));

  // While running: only entries older than the bound (2 h by default) go.
  const hour = 60 * 60_000;
  const stale = [
    await plant(path.join(stateDir, 'tmp', '.cachew-pack-old', 'pack-1.pack'), 3 * hour),
    await plant(path.join(gitDir, 'objects', 'pack', 'tmp_pack_old'), 3 * hour),
    await plant(path.join(gitDir, 'refs', 'heads', 'old.lock'), 3 * hour),
  ];
  const fresh = [
    await plant(path.join(stateDir, 'tmp', '.cachew-pack-new', 'pack-1.pack')),
    await plant(path.join(gitDir, 'objects', 'pack', 'tmp_pack_new')),
  ];
  const removed = await second.server.sweep();
  for (const file of stale) assert.equal(existsSync(file), false, `${path.relative(stateDir, file)} swept`);
  for (const file of fresh) assert.equal(existsSync(file), true, `${path.relative(stateDir, file)} kept (may be in use)`);
  assert.ok(removed.length >= stale.length);
});

void test('children whose cachewd died are killed at start-up; children of live processes or of other state dirs are not', { timeout: 120_000 }, async (t) => {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-orphans-'));
  const stateDir = path.join(tmp, 'state');
  const otherStateDir = path.join(tmp, 'other-state');
  // A pid that is certainly dead: a process that already exited. And one that lives for the test.
  const gone = spawn('true');
  await once(gone, 'exit');
  const deadPid = gone.pid!;
  const live = spawn('sleep', ['300'], { stdio: 'ignore' });
  const spawnMarked = (parent: number, state: string) =>
    spawn('sleep', ['300'], {
      detached: true,
      stdio: 'ignore',
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', [PARENT_PID_ENV]: String(parent), [STATE_DIR_ENV]: state },
    });
  const orphan = spawnMarked(deadPid, stateDir);
  const adopted = spawnMarked(live.pid!, stateDir);
  const foreign = spawnMarked(deadPid, otherStateDir);
  const orphanExit = once(orphan, 'exit');
  t.after(async () => {
    for (const child of [orphan, adopted, foreign]) if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
    live.kill('SIGKILL');
  });
  const up = await startUpstream();
  const cachew = await startCachew([up], {}, { stateDir });
  t.after(async () => {
    await cachew.stop();
    await up.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  });
  const [, signal] = await orphanExit;
  assert.equal(signal, 'SIGKILL', 'the orphan was killed');
  assert.equal(adopted.exitCode, null, 'a child of a live process is left alone');
  assert.equal(adopted.signalCode, null);
  assert.equal(foreign.signalCode, null, "another state dir's orphan is left to its own cachewd");
});

void test('a full disk is 507 with Retry-After, never a 4xx, and readiness reports it', { timeout: 120_000 }, async (t) => {
  const up = await startUpstream();
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-enospc-'));
  await up.createRepo('org/app', { 'a.txt': 'a\n' });
  let diskFull = false;
  // The seam: spool writes fail as a full filesystem would make them fail.
  const openSpool = (file: string): Writable => {
    if (!diskFull) return createWriteStream(file);
    return new Writable({
      write(_chunk, _enc, callback) {
        callback(Object.assign(new Error(`ENOSPC: no space left on device, write '${file}'`), { code: 'ENOSPC', errno: -28 }));
      },
    });
  };
  const cachew = await startCachew([up], {}, { hooks: { openSpool } });
  t.after(async () => {
    await cachew.stop();
    await up.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  });
  const url = `${cachew.url}/git/${up.hostName}/org/app`;
  await clientGit(tmp, ['clone', '-q', url, path.join(tmp, 'ok')]);
  assert.equal((await get(`${cachew.url}/_readiness`)).status, 200);

  diskFull = true;
  await assert.rejects(clientGit(tmp, ['clone', '-q', url, path.join(tmp, 'full')]), (err: unknown) => {
    assert.ok(err instanceof GitCommandError);
    assert.match(err.stderrTail, /507/);
    assert.doesNotMatch(err.stderrTail, /could not read the request body|\b400\b/);
    return true;
  });
  const raw = await fetch(`${url}/git-upload-pack`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-git-upload-pack-request' },
    body: `0032want ${'a'.repeat(40)}\n00000009done\n`,
  });
  assert.equal(raw.status, 507);
  assert.ok(Number(raw.headers.get('retry-after')) > 0, 'Retry-After is set');
  await raw.arrayBuffer();
  const ready = await get(`${cachew.url}/_readiness`);
  assert.equal(ready.status, 503);
  assert.match(ready.body.toString(), /disk full/);

  // git's own ENOSPC (a fetch into the mirror) maps the same way.
  const fetchFailure = new GitCommandError(['fetch'], 128, 'fatal: write error: No space left on device\n');
  assert.equal(statusForError(publicError(fetchFailure)), 507);
});
