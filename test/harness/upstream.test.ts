import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { runGit } from '../../src/git/command.js';
import { startUpstream } from './upstream.js';

void test('upstream harness serves clone (v0, v2), fetch, push and reports requests', { timeout: 120_000 }, async (t) => {
  const up = await startUpstream();
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-upstream-test-'));
  t.after(async () => {
    await up.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  });
  const git = (args: string[], cwd = tmp): Promise<string> => runGit(['-c', 'credential.helper=', ...args], { cwd, env: { HOME: tmp } });

  const repoUrl = await up.createRepo('org/demo', {
    'README.md': 'hello\n',
    'bin/run.sh': { content: '#!/bin/sh\necho hi\n', mode: '100755' },
    link: { content: 'README.md', mode: '120000' },
  });
  assert.equal(repoUrl, `${up.url}/org/demo.git`);
  const head = await up.head('org/demo');
  assert.match(head, /^[0-9a-f]{40}$/);

  for (const version of ['0', '2']) {
    const dir = path.join(tmp, `clone-v${version}`);
    await git(['-c', `protocol.version=${version}`, 'clone', '-q', repoUrl, dir]);
    assert.equal((await git(['rev-parse', 'HEAD'], dir)).trim(), head);
    assert.equal(await fs.readlink(path.join(dir, 'link')), 'README.md');
    assert.ok(((await fs.stat(path.join(dir, 'bin/run.sh'))).mode & 0o111) !== 0);
  }
  assert.ok(up.requests.some((r) => r.path.includes('info/refs?service=git-upload-pack')));

  const next = await up.commit('org/demo', { 'a.txt': 'a\n' });
  const dir = path.join(tmp, 'clone-v2');
  await git(['fetch', '-q', 'origin'], dir);
  assert.equal((await git(['rev-parse', 'origin/main'], dir)).trim(), next);

  // push over HTTP lands in the bare repository
  await fs.writeFile(path.join(dir, 'b.txt'), 'b\n');
  await git(['add', 'b.txt'], dir);
  await git(['commit', '-q', '-m', 'pushed'], dir);
  await git(['merge', '-q', 'origin/main', '-m', 'merge'], dir);
  await git(['push', '-q', 'origin', 'HEAD:main'], dir);
  assert.equal(await up.head('org/demo'), (await git(['rev-parse', 'HEAD'], dir)).trim());

  const rewritten = await up.forcePush('org/demo', { 'new.txt': 'new\n' });
  assert.equal(await up.head('org/demo'), rewritten);

  // A gzip request body (git clients compress large negotiations), protocol v2 via Git-Protocol.
  const lsRefs = Buffer.from('0014command=ls-refs\n0001000bsymrefs0000');
  const res = await fetch(`${repoUrl}/git-upload-pack`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-git-upload-pack-request', 'content-encoding': 'gzip', 'git-protocol': 'version=2' },
    body: gzipSync(lsRefs),
  });
  assert.equal(res.status, 200);
  assert.match(await res.text(), new RegExp(`${rewritten} HEAD symref-target:refs/heads/main`));

  up.setDown(true);
  await assert.rejects(git(['ls-remote', repoUrl]));
  up.setDown(false);
  assert.match(await git(['ls-remote', repoUrl]), new RegExp(rewritten));
});
