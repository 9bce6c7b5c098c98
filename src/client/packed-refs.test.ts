import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { formatPackedRefs, isValidRefName, parsePackedRefs, writePackedRefs } from './packed-refs.js';

const exec = promisify(execFile);
const env = { PATH: process.env.PATH, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' };
const git = async (cwd: string, ...args: string[]): Promise<string> => (await exec('git', args, { cwd, env })).stdout.trim();

let root: string;
before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-packed-refs-'));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

void describe('packed-refs', () => {
  void it('accepts the names git accepts and refuses the others', () => {
    for (const good of ['refs/tags/v1.0', 'refs/heads/feature/x', 'refs/tags/ünï', "refs/tags/it's", 'refs/heads/a.b-c_d']) {
      assert.equal(isValidRefName(good), true, good);
    }
    for (const bad of ['refs/tags/a..b', 'refs/tags/a b', 'refs/tags/x.lock', 'refs/tags/.hidden', 'refs/tags/a/', 'refs/tags/a.', 'refs/tags/a~1', 'refs/tags/a^', 'refs/tags/a:b', 'refs/tags/a\\b', 'refs/tags/a@{1}', 'refs//x', 'HEAD', 'refs/tags/a\nb', 'refs/tags/\uFFFD']) {
      assert.equal(isValidRefName(bad), false, JSON.stringify(bad));
    }
  });

  void it('formats sorted, peeled packed-refs that parse back', () => {
    const a = 'a'.repeat(40);
    const b = 'b'.repeat(40);
    const text = formatPackedRefs([
      { name: 'refs/tags/v2', oid: b, peeled: a },
      { name: 'refs/heads/main', oid: a },
      { name: 'refs/tags/v1', oid: a, peeled: a },
    ]);
    assert.equal(text, `# pack-refs with: peeled fully-peeled sorted \n${a} refs/heads/main\n${a} refs/tags/v1\n${b} refs/tags/v2\n^${a}\n`);
    assert.deepEqual(parsePackedRefs(text), [
      { name: 'refs/heads/main', oid: a },
      { name: 'refs/tags/v1', oid: a },
      { name: 'refs/tags/v2', oid: b, peeled: a },
    ]);
    assert.throws(() => parsePackedRefs(`^${a}\n`));
    assert.throws(() => parsePackedRefs(`${a} refs/tags/a..b\n`));
  });

  void it('merges into a repository that git then reads as a clone would have it', async () => {
    const dir = path.join(root, 'repo');
    await fs.mkdir(dir);
    await git(dir, 'init', '-q', '-b', 'main');
    await git(dir, 'commit', '-q', '--allow-empty', '-m', 'one');
    await git(dir, 'tag', '-a', '-m', 'annotated', 'v1');
    const commit = await git(dir, 'rev-parse', 'HEAD');
    const tag = await git(dir, 'rev-parse', 'v1');
    await git(dir, 'tag', '-d', 'v1');
    await git(dir, 'pack-refs', '--all');
    await writePackedRefs(path.join(dir, '.git'), [
      { name: 'refs/tags/v1', oid: tag, peeled: commit },
      { name: 'refs/remotes/origin/main', oid: commit },
    ]);
    assert.equal(await git(dir, 'for-each-ref', '--format=%(refname) %(objecttype)'), 'refs/heads/main commit\nrefs/remotes/origin/main commit\nrefs/tags/v1 tag');
    assert.equal(await git(dir, 'describe', '--tags'), 'v1');
    await git(dir, 'fsck', '--no-progress');
    assert.ok(!(await fs.readdir(path.join(dir, '.git'))).includes('packed-refs.lock'));
    await assert.rejects(writePackedRefs(path.join(dir, '.git'), [{ name: 'refs/tags/bad..name', oid: commit }]));
    assert.ok(!(await fs.readdir(path.join(dir, '.git'))).includes('packed-refs.lock'), 'no lock left after a refusal');
  });
});
