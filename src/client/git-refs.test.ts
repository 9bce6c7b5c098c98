import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GitRefs } from './git-refs.js';

let dir: string;
const git = (...args: string[]): string => execFileSync('git', args, { cwd: dir, encoding: 'utf8' }).trim();

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-git-refs-'));
  git('init', '-q', '-b', 'main');
  git('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '--allow-empty', '-m', 'one');
  git('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '--allow-empty', '-m', 'two');
  git('update-ref', 'refs/remotes/origin/main', 'HEAD~1');
  git('symbolic-ref', 'refs/remotes/origin/HEAD', 'refs/remotes/origin/main');
});
after(() => fs.rm(dir, { recursive: true, force: true }));

void describe('GitRefs', () => {
  void it('answers as git does, for loose and for packed refs', async () => {
    for (const packed of [false, true]) {
      if (packed) git('pack-refs', '--all');
      const refs = new GitRefs(dir);
      assert.deepEqual(await refs.head(), { branchRef: 'refs/heads/main', commit: git('rev-parse', 'HEAD') }, `packed: ${packed}`);
      assert.equal(await refs.resolve('refs/remotes/origin/HEAD'), git('rev-parse', 'refs/remotes/origin/HEAD'));
      assert.equal(await refs.resolve('refs/heads/missing'), undefined);
      assert.equal(await refs.resolve('refs/heads/../../config'), undefined, 'not a ref name');
    }
  });

  void it('reads a detached HEAD, and fails on one that names nothing', async () => {
    const commit = git('rev-parse', 'HEAD~1');
    git('checkout', '-q', '--detach', commit);
    assert.deepEqual(await new GitRefs(dir).head(), { commit });
    await fs.writeFile(path.join(dir, '.git', 'HEAD'), 'ref: refs/heads/nowhere\n');
    await assert.rejects(new GitRefs(dir).head(), /does not resolve/);
  });
});
