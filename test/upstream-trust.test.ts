/**
 * End-to-end, real git client: cachew in front of a hostile upstream (test/harness/hostile-upstream.ts)
 * that redirects to another loopback listener, answers HTML or an empty 200, or a fake advertisement.
 * Redirects must never be followed (the other listener sees no connection) and a reply that is not a
 * valid ref advertisement must leave the mirror exactly as it was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runGit } from '../src/git/command.js';
import { GitCommandError } from '../src/util/errors.js';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startHostileUpstream, type HostileMode, type HostileUpstream } from './harness/hostile-upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { get } from './harness/http.js';

interface World {
  up: Upstream;
  hostile: HostileUpstream;
  cachew: TestCachew;
  tmp: string;
  /** `cachew/git/<hostile>/<repo>` */
  url(repo: string): string;
  git(args: string[], cwd?: string): Promise<string>;
}

/** Real upstream → hostile front → cachew checking refs on every request (refCheckInterval 1 ms). */
async function world(t: { after(fn: () => Promise<void>): void }): Promise<World> {
  const up = await startUpstream();
  const hostile = await startHostileUpstream(up);
  const cachew = await startCachew([hostile], { refCheckIntervalMs: 1 });
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-trust-'));
  t.after(async () => {
    await cachew.stop();
    await hostile.stop();
    await up.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  });
  return {
    up,
    hostile,
    cachew,
    tmp,
    url: (repo) => `${cachew.url}/git/${hostile.hostName}/${repo}`,
    git(args, cwd = tmp) {
      return runGit(['-c', 'credential.helper=', ...args], {
        cwd,
        env: { HOME: tmp, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1' },
        timeoutMs: 120_000,
      });
    },
  };
}

async function branches(w: World, dir: string): Promise<string> {
  return (await w.git(['for-each-ref', '--format=%(refname) %(objectname)', 'refs/remotes/origin/', 'refs/tags/'], dir)).trim();
}

void test('redirects are never followed: not by mirror clones, refreshes, nor forwarded requests', { timeout: 180_000 }, async (t) => {
  const w = await world(t);
  await w.up.createRepo('org/moved', { 'a.txt': 'a\n' });
  await w.up.createRepo('org/kept', { 'k.txt': 'k\n' });
  await w.git(['clone', '-q', w.url('org/kept'), path.join(w.tmp, 'kept-1')]);

  w.hostile.setMode('redirect');
  // A first clone through a redirecting upstream fails with a 502 naming the refusal.
  await assert.rejects(w.git(['clone', '-q', w.url('org/moved'), path.join(w.tmp, 'moved')]), (err: unknown) => {
    assert.ok(err instanceof GitCommandError);
    assert.match(err.stderrTail, /502/);
    return true;
  });
  // A mirror that exists keeps serving what it has while its refresh is refused.
  await w.git(['clone', '-q', w.url('org/kept'), path.join(w.tmp, 'kept-2')]);
  assert.equal(await branches(w, path.join(w.tmp, 'kept-2')), await branches(w, path.join(w.tmp, 'kept-1')));
  // Forwarded requests hand the 30x back; cachew does not go there itself.
  const forwarded = await fetch(`${w.url('org/kept')}/info/lfs/objects/batch`, { redirect: 'manual' });
  assert.equal(forwarded.status, 302);
  await forwarded.arrayBuffer();
  const snapshots = await get(`${w.url('org/moved')}/snapshot.tar.zst`);
  assert.ok(snapshots.status === 502, `snapshot of a redirected repository: ${snapshots.status}`);

  assert.ok(w.hostile.requests.some((r) => r.mode === 'redirect'), 'the redirects were really served');
  assert.equal(w.hostile.elsewhereConnections(), 0, 'nothing connected to the redirect target');
});

void test('an HTML, empty or fake 200 during a refresh keeps the mirror; only a valid listing removes a ref', { timeout: 240_000 }, async (t) => {
  const w = await world(t);
  await w.up.createRepo('org/app', { 'a.txt': 'a\n' });
  const bare = path.join(w.up.root, 'org/app.git');
  await runGit(['branch', 'feature', 'main'], { cwd: bare });
  await runGit(['tag', 'v1', 'main'], { cwd: bare });
  await w.git(['clone', '-q', w.url('org/app'), path.join(w.tmp, 'first')]);
  const expected = await branches(w, path.join(w.tmp, 'first'));
  assert.match(expected, /refs\/remotes\/origin\/feature/);
  assert.match(expected, /refs\/tags\/v1/);
  const stable = `${w.url('org/app')}/snapshot.tar.zst`;
  assert.equal((await get(stable, {}, 'HEAD')).status, 200);

  const modes: HostileMode[] = ['empty', 'html', 'fake-advertisement', 'garbage', { status: 500 }];
  for (const mode of modes) {
    w.hostile.setMode(mode);
    const seen = w.hostile.requests.length;
    const dir = path.join(w.tmp, `during-${JSON.stringify(mode).replace(/\W/g, '')}`);
    await w.git(['clone', '-q', w.url('org/app'), dir]);
    assert.ok(w.hostile.requests.length > seen, `the refresh really met mode ${JSON.stringify(mode)}`);
    assert.equal(await branches(w, dir), expected, `mode ${JSON.stringify(mode)}: same refs as before`);
    assert.equal((await get(stable, {}, 'HEAD')).status, 200, `mode ${JSON.stringify(mode)}: the stable snapshot stays`);
  }

  // A first mirror of another repository is not created from an empty 200: the clone fails instead
  // of producing "You appear to have cloned an empty repository".
  await w.up.createRepo('org/other', { 'o.txt': 'o\n' });
  w.hostile.setMode('empty');
  await assert.rejects(w.git(['clone', '-q', w.url('org/other'), path.join(w.tmp, 'other')]), GitCommandError);

  // A valid advertisement that omits a branch removes it.
  w.hostile.setMode('git');
  await runGit(['branch', '-D', 'feature'], { cwd: bare });
  const after = path.join(w.tmp, 'after');
  await w.git(['clone', '-q', w.url('org/app'), after]);
  const refs = await branches(w, after);
  assert.doesNotMatch(refs, /feature/);
  assert.match(refs, /refs\/remotes\/origin\/main/);
  assert.match(refs, /refs\/tags\/v1/);
});
