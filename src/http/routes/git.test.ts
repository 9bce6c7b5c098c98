/**
 * The smart-HTTP routes without a socket: a real bare repository behind a stand-in mirror, the
 * handler called with a fake request (http/testing/fake-exchange.ts). Forwarding needs an upstream
 * and is covered end to end (test/git-proxy.test.ts); the decision itself in git/smart-http-policy.test.ts.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGit } from '../../git/command.js';
import { FLUSH_PKT, pktLine } from '../../git/pkt-line.js';
import { RefAnswerCache } from '../../git/ref-answers.js';
import { UpstreamRegistry } from '../../git/upstreams.js';
import { silentLogger } from '../../util/logger.js';
import { callRepoHandler } from '../testing/fake-exchange.js';
import { createGitRoutes, type ServedMirror } from './git.js';

const HOST = 'example.com';
const BASE = `/git/${HOST}/org/repo`;

void describe('git routes (socket-free)', { timeout: 60_000 }, () => {
  let root: string;
  let head: string;
  let fetches = 0;
  let refsVersion = 0;
  let work: string;
  let mirror: ServedMirror;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'cachew-git-route-'));
    work = join(root, 'work');
    await runGit(['init', '-q', '-b', 'main', work]);
    await writeFile(join(work, 'a.txt'), 'a\n');
    await runGit(['add', '-A'], { cwd: work });
    await runGit(['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'commit.gpgsign=false', 'commit', '-q', '-m', 'one'], { cwd: work });
    head = (await runGit(['rev-parse', 'HEAD'], { cwd: work })).trim();
    const gitDir = join(root, 'repo.git');
    await runGit(['clone', '-q', '--bare', work, gitDir]);
    mirror = {
      gitDir,
      instanceId: 'test-mirror',
      get refsVersion() {
        return refsVersion;
      },
      ensureReady: () => Promise.resolve(),
      ensureFresh: () => Promise.resolve(),
      missingObjects: (shas) => Promise.resolve(shas.filter((s) => s !== head)),
      fetchNow: () => {
        fetches++;
        return Promise.resolve();
      },
    };
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  function routes(readOnly = false, refAnswers?: RefAnswerCache): ReturnType<typeof createGitRoutes>['handle'] {
    return createGitRoutes({
      mirrors: { get: () => mirror, tmpDir: join(root, 'tmp') },
      upstreams: new UpstreamRegistry([{ name: HOST, baseUrl: 'http://upstream.invalid' }]),
      readOnly,
      logger: silentLogger,
      refAnswers,
    }).handle;
  }

  /** Adds a branch to the mirror behind the routes' back: only a new refs version may reveal it. */
  async function addBranch(name: string): Promise<void> {
    await runGit(['update-ref', `refs/heads/${name}`, head], { cwd: mirror.gitDir });
  }

  void test('info/refs advertises the mirror: v0 with the service preamble, v2 without', async () => {
    const v0 = await callRepoHandler(routes(), { url: `${BASE}/info/refs?service=git-upload-pack` });
    assert.equal(v0.statusCode, 200);
    assert.equal(v0.headers['content-type'], 'application/x-git-upload-pack-advertisement');
    assert.equal(v0.headers['cache-control'], 'no-cache, max-age=0, must-revalidate');
    const text = v0.body.toString('latin1');
    assert.ok(text.startsWith('001e# service=git-upload-pack\n0000'), text.slice(0, 40));
    assert.match(text, new RegExp(`${head} refs/heads/main`));

    const v2 = await callRepoHandler(routes(), { url: `${BASE}/info/refs?service=git-upload-pack`, headers: { 'git-protocol': 'version=2' } });
    assert.equal(v2.statusCode, 200);
    assert.ok(v2.body.toString('latin1').startsWith('000eversion 2\n'));

    const head_ = await callRepoHandler(routes(), { method: 'HEAD', url: `${BASE}/info/refs?service=git-upload-pack` });
    assert.equal(head_.statusCode, 200);
    assert.equal(head_.body.length, 0);
  });

  void test('upload-pack serves a want the mirror holds without fetching', async () => {
    const body = Buffer.concat([pktLine(`want ${head}\n`), FLUSH_PKT, pktLine('done\n')]);
    const res = await callRepoHandler(routes(), {
      method: 'POST',
      url: `${BASE}/git-upload-pack`,
      headers: { 'content-type': 'application/x-git-upload-pack-request' },
      body,
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'application/x-git-upload-pack-result');
    assert.ok(res.body.includes(Buffer.from('PACK')), 'a pack is sent');
    assert.equal(fetches, 0);
  });

  void test('an advertisement is kept for its refs version, replayed byte for byte, and dropped when the version moves', async () => {
    const answers = new RefAnswerCache();
    const handle = routes(false, answers);
    const url = `${BASE}/info/refs?service=git-upload-pack`;
    const first = await callRepoHandler(handle, { url });
    assert.equal(answers.size, 1);
    await addBranch('kept-test');
    const replayed = await callRepoHandler(handle, { url });
    assert.equal(replayed.statusCode, 200);
    assert.deepEqual(replayed.body, first.body, 'same version: the kept answer, not a new upload-pack run');
    assert.doesNotMatch(replayed.body.toString('latin1'), /refs\/heads\/kept-test/);
    // v2 asks a different question: its own entry.
    const v2 = await callRepoHandler(handle, { url, headers: { 'git-protocol': 'version=2' } });
    assert.ok(v2.body.toString('latin1').startsWith('000eversion 2\n'));
    assert.equal(answers.size, 2);
    refsVersion++;
    const fresh = await callRepoHandler(handle, { url });
    assert.match(fresh.body.toString('latin1'), new RegExp(`${head} refs/heads/kept-test`));
  });

  void test('ls-refs replies are kept per request; fetch requests never are', async () => {
    const answers = new RefAnswerCache();
    const handle = routes(false, answers);
    const post = (body: Buffer) =>
      callRepoHandler(handle, {
        method: 'POST',
        url: `${BASE}/git-upload-pack`,
        headers: { 'content-type': 'application/x-git-upload-pack-request', 'git-protocol': 'version=2' },
        body,
      });
    const lsRefs = (prefix: string) =>
      Buffer.concat([pktLine('command=ls-refs\n'), pktLine('object-format=sha1\n'), Buffer.from('0001'), pktLine(`ref-prefix ${prefix}\n`), FLUSH_PKT]);
    const first = await post(lsRefs('refs/heads/'));
    assert.equal(first.statusCode, 200);
    assert.match(first.body.toString('latin1'), new RegExp(`${head} refs/heads/main`));
    await addBranch('listed-later');
    const replayed = await post(lsRefs('refs/heads/'));
    assert.deepEqual(replayed.body, first.body);
    // Different request bytes: a different answer, computed now.
    const tags = await post(lsRefs('refs/tags/'));
    assert.doesNotMatch(tags.body.toString('latin1'), /refs\/heads/);
    assert.equal(answers.size, 2);
    refsVersion++;
    const fresh = await post(lsRefs('refs/heads/'));
    assert.match(fresh.body.toString('latin1'), /refs\/heads\/listed-later/);

    const before = answers.size;
    const fetch = Buffer.concat([pktLine('command=fetch\n'), pktLine('object-format=sha1\n'), Buffer.from('0001'), pktLine(`want ${head}\n`), pktLine('done\n'), FLUSH_PKT]);
    const packed = await post(fetch);
    assert.equal(packed.statusCode, 200);
    assert.ok(packed.body.includes(Buffer.from('PACK')));
    assert.equal(answers.size, before, 'a fetch is never kept');
  });

  void test('refusals: wrong methods and content types 400, pushes 403 when read-only', async () => {
    const post = await callRepoHandler(routes(), { method: 'POST', url: `${BASE}/info/refs?service=git-upload-pack` });
    assert.equal(post.statusCode, 400);
    const get = await callRepoHandler(routes(), { url: `${BASE}/git-upload-pack` });
    assert.equal(get.statusCode, 400);
    const wrongType = await callRepoHandler(routes(), { method: 'POST', url: `${BASE}/git-upload-pack`, headers: { 'content-type': 'text/plain' }, body: 'x' });
    assert.equal(wrongType.statusCode, 400);
    const push = await callRepoHandler(routes(true), { url: `${BASE}/info/refs?service=git-receive-pack` });
    assert.equal(push.statusCode, 403);
    const pushPost = await callRepoHandler(routes(true), { method: 'POST', url: `${BASE}/git-receive-pack`, body: 'x' });
    assert.equal(pushPost.statusCode, 403);
  });
});
