/**
 * End-to-end: snapshot routes of SPEC §3–4 against a real upstream (git http-backend) and the real
 * server: headers, every status, extraction into a working clone, bundles, retention, single-flight.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, lstat, readlink, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { download, get, sha256, waitFor } from './harness/http.js';
import { reprDigestToSha256Hex } from '../src/protocol/etag.js';
import { ManualClock } from '../src/util/testing/manual-clock.js';

const gitEnv = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0' };
function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, env: gitEnv, encoding: 'utf8' }).trim();
}

const FILES = {
  'README.md': '# demo\n',
  'bin/run.sh': { content: '#!/bin/sh\necho run\n', mode: '100755' as const },
  'link-to-readme': { content: 'README.md', mode: '120000' as const },
  'yarn.lock': 'lockfile v1\n',
  'src/deep/nested/file.txt': 'nested\n',
  'with space ü.txt': 'unicode name\n',
};

describe('snapshot routes', { timeout: 240_000 }, () => {
  let upstream: Upstream;
  let cachew: TestCachew;
  let tmp: string;
  let repoUrl: string;
  let base: string;
  const clock = new ManualClock();

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'cachew-snap-e2e-'));
    upstream = await startUpstream();
    repoUrl = await upstream.createRepo('org/demo', FILES);
    await upstream.commit('org/demo', { 'CHANGELOG.md': 'v1\n' });
    cachew = await startCachew([upstream], { snapshotGraceMs: 60 * 60_000 }, { clock });
    base = `${cachew.url}/git/${upstream.hostName}/org/demo`;
  });
  after(async () => {
    await cachew?.stop();
    await upstream?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test('20 concurrent requests to a cold stable URL cause one generation', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => get(`${base}/snapshot.tar.zst`, {}, 'HEAD')));
    for (const r of results) assert.equal(r.status, 200);
    assert.equal(new Set(results.map((r) => r.headers.get('etag'))).size, 1);
    const metrics = await cachew.server.metrics.registry.getSingleMetricAsString('cachew_snapshot_generations_total');
    assert.match(metrics, /cachew_snapshot_generations_total\{outcome="ok"\} 1\n?$/m);
  });

  test('stable URL: headers, digest, and a working clone after tar --zstd -xf', async () => {
    const head = await upstream.head('org/demo');
    const file = join(tmp, 'stable.tar.zst');
    const res = await download(`${base}/snapshot.tar.zst`, file);
    assert.equal(res.status, 200);
    const h = res.headers;
    assert.equal(h.get('etag'), `"${res.sha256}"`);
    assert.equal(reprDigestToSha256Hex(h.get('repr-digest') ?? ''), res.sha256);
    assert.equal(h.get('x-cachew-snapshot-commit'), head);
    assert.equal(h.get('content-type'), 'application/zstd');
    assert.ok(Number(h.get('content-length')) > 0);
    assert.ok(h.get('last-modified'));
    assert.equal(h.get('accept-ranges'), 'bytes');
    assert.equal(h.get('cache-control'), 'no-cache');
    assert.equal(h.get('content-location'), `/git/${upstream.hostName}/org/demo/snapshot/${head}.tar.zst`);
    assert.equal(h.get('x-cachew-bundle-url'), null);

    const dir = join(tmp, 'extracted');
    execFileSync('mkdir', ['-p', dir]);
    execFileSync('tar', ['--zstd', '-xf', file, '-C', dir]);
    assert.equal(git(dir, 'rev-parse', 'HEAD'), head);
    assert.equal(git(dir, 'symbolic-ref', 'HEAD'), 'refs/heads/main');
    assert.equal(git(dir, 'rev-parse', 'refs/remotes/origin/main'), head);
    assert.equal(git(dir, 'symbolic-ref', 'refs/remotes/origin/HEAD'), 'refs/remotes/origin/main');
    // origin is the canonical upstream URL (the repository path without .git), whatever the request spelling.
    assert.equal(git(dir, 'remote', 'get-url', 'origin'), repoUrl.replace(/\.git$/, ''));
    assert.equal(git(dir, 'status', '--porcelain'), '');
    git(dir, 'fsck', '--full', '--strict');
    assert.equal(git(dir, 'rev-list', '--count', 'HEAD'), '2');
    assert.ok(((await lstat(join(dir, 'bin/run.sh'))).mode & 0o111) !== 0, 'exec bit kept');
    assert.equal(await readlink(join(dir, 'link-to-readme')), 'README.md');
    assert.equal(await readFile(join(dir, 'yarn.lock'), 'utf8'), 'lockfile v1\n');
    assert.equal(await readFile(join(dir, 'with space ü.txt'), 'utf8'), 'unicode name\n');
    for (const absent of ['.git/FETCH_HEAD', '.git/ORIG_HEAD']) {
      await assert.rejects(lstat(join(dir, absent)), `${absent} must not exist`);
    }
    assert.deepEqual(await readdir(join(dir, '.git/hooks')), [], 'no hooks, only the directory');
  });

  test('immutable URL: every status of SPEC §4', async () => {
    const head = await upstream.head('org/demo');
    const url = `${base}/snapshot/${head}.tar.zst`;
    const full = await get(url);
    assert.equal(full.status, 200);
    const size = full.body.length;
    const etag = full.headers.get('etag')!;
    assert.equal(etag, `"${sha256(full.body)}"`);
    assert.equal(full.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(full.headers.get('x-cachew-snapshot-commit'), head);
    assert.equal(full.headers.get('accept-ranges'), 'bytes');

    const r1 = await get(url, { range: 'bytes=10-99' });
    assert.equal(r1.status, 206);
    assert.equal(r1.headers.get('content-range'), `bytes 10-99/${size}`);
    assert.deepEqual(r1.body, full.body.subarray(10, 100));
    const r2 = await get(url, { range: `bytes=${size - 5}-` });
    assert.equal(r2.status, 206);
    assert.deepEqual(r2.body, full.body.subarray(size - 5));
    const r3 = await get(url, { range: 'bytes=-7' });
    assert.equal(r3.status, 206);
    assert.deepEqual(r3.body, full.body.subarray(size - 7));

    const unsat = await get(url, { range: `bytes=${size}-` });
    assert.equal(unsat.status, 416);
    assert.equal(unsat.headers.get('content-range'), `bytes */${size}`);

    const multi = await get(url, { range: 'bytes=0-1,5-6' });
    assert.equal(multi.status, 200);
    assert.equal(multi.body.length, size);
    const malformed = await get(url, { range: 'bytes=abc' });
    assert.equal(malformed.status, 200);

    const ifRangeMiss = await get(url, { range: 'bytes=0-9', 'if-range': '"0000"' });
    assert.equal(ifRangeMiss.status, 200);
    assert.equal(ifRangeMiss.body.length, size);
    const ifRangeHit = await get(url, { range: 'bytes=0-9', 'if-range': etag });
    assert.equal(ifRangeHit.status, 206);

    const preconditionFailed = await get(url, { range: 'bytes=0-9', 'if-match': '"nope"' });
    assert.equal(preconditionFailed.status, 412);
    const ifMatchOk = await get(url, { range: 'bytes=0-9', 'if-match': etag });
    assert.equal(ifMatchOk.status, 206);

    const notModified = await get(url, { 'if-none-match': etag });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.body.length, 0);

    // Date preconditions compare against the Last-Modified we send (RFC 9110 §13.2.2 order).
    const lastModified = full.headers.get('last-modified')!;
    const earlier = new Date(Date.parse(lastModified) - 60_000).toUTCString();
    const notModifiedSince = await get(url, { 'if-modified-since': lastModified });
    assert.equal(notModifiedSince.status, 304);
    assert.equal(notModifiedSince.headers.get('last-modified'), lastModified);
    assert.equal((await get(url, { 'if-modified-since': earlier, range: 'bytes=0-9' })).status, 206);
    assert.equal((await get(url, { 'if-none-match': '"other"', 'if-modified-since': lastModified })).status, 200, 'If-None-Match wins');
    assert.equal((await get(url, { 'if-unmodified-since': earlier, range: 'bytes=0-9' })).status, 412);
    assert.equal((await get(url, { 'if-unmodified-since': lastModified, range: 'bytes=0-9' })).status, 206);
    assert.equal((await get(url, { 'if-match': etag, 'if-unmodified-since': earlier })).status, 200, 'If-Match wins');

    const head1 = await get(url, {}, 'HEAD');
    assert.equal(head1.status, 200);
    assert.equal(head1.body.length, 0);
    assert.equal(head1.headers.get('content-length'), String(size));

    assert.equal((await get(`${base}/snapshot/${'0'.repeat(40)}.tar.zst`)).status, 404);
    assert.equal((await get(`${base}/snapshot/${'0'.repeat(40)}.tar.zst`, {}, 'HEAD')).status, 404);
    assert.equal((await get(`${base}/snapshot/XYZ.tar.zst`)).status, 400);
    assert.equal((await get(`${base}/snapshot/${'A'.repeat(40)}.tar.zst`)).status, 400);
  });

  test('HEAD on the immutable URL of a cold repository generates nothing', async () => {
    await upstream.createRepo('org/cold', { 'a.txt': 'a\n' });
    const coldHead = await upstream.head('org/cold');
    const coldBase = `${cachew.url}/git/${upstream.hostName}/org/cold`;
    const res = await get(`${coldBase}/snapshot/${coldHead}.tar.zst`, {}, 'HEAD');
    assert.equal(res.status, 404);
    // Neither mirrored nor snapshotted: unknown here, so its list is a 404 like every other route.
    const list = await get(`${cachew.url}/api/v1/git/${upstream.hostName}/org/cold/snapshots`);
    assert.equal(list.status, 404);
  });

  test('API: POST snapshots now, GET lists them; URLs keep the .git spelling', async () => {
    const head = await upstream.head('org/demo');
    const post = await fetch(`${cachew.url}/api/v1/git/${upstream.hostName}/org/demo.git/snapshots`, { method: 'POST' });
    assert.equal(post.status, 200);
    const made = (await post.json()) as { commit: string; digest: string; size: number; url: string };
    assert.equal(made.commit, head);
    assert.match(made.digest, /^[0-9a-f]{64}$/);
    assert.equal(made.url, `/git/${upstream.hostName}/org/demo.git/snapshot/${head}.tar.zst`);
    const list = await get(`${cachew.url}/api/v1/git/${upstream.hostName}/org/demo/snapshots`);
    const snapshots = JSON.parse(list.body.toString()).snapshots as Array<{ commit: string; current: boolean; digest: string }>;
    assert.ok(snapshots.some((s) => s.commit === head && s.current && s.digest === made.digest));
  });

  test('upstream moves on: bundle advertised, bundle applies, then the new snapshot is served', async () => {
    const oldHead = await upstream.head('org/demo');
    const oldFile = join(tmp, 'old.tar.zst');
    await download(`${base}/snapshot.tar.zst`, oldFile);
    const newHead = await upstream.commit('org/demo', { 'new.txt': 'new\n' });
    await clock.advance(1000); // past --ref-check-interval (1 s)
    const lagging = await get(`${base}/snapshot.tar.zst`, {}, 'HEAD');
    assert.equal(lagging.headers.get('x-cachew-snapshot-commit'), oldHead);
    const bundleUrl = lagging.headers.get('x-cachew-bundle-url');
    assert.equal(bundleUrl, `/git/${upstream.hostName}/org/demo/snapshot.bundle?base=${oldHead}`);

    const bundleFile = join(tmp, 'delta.bundle');
    const b = await download(`${cachew.url}${bundleUrl}`, bundleFile);
    assert.equal(b.status, 200);
    assert.equal(b.headers.get('etag'), `"${b.sha256}"`);
    const dir = join(tmp, 'old-clone');
    execFileSync('mkdir', ['-p', dir]);
    execFileSync('tar', ['--zstd', '-xf', oldFile, '-C', dir]);
    git(dir, 'fetch', '-q', bundleFile, 'refs/heads/main:refs/remotes/origin/main');
    git(dir, 'pull', '--ff-only', '-q', bundleFile, 'main');
    assert.equal(git(dir, 'rev-parse', 'HEAD'), newHead);
    assert.equal(git(dir, 'status', '--porcelain'), '');

    assert.equal((await get(`${base}/snapshot.bundle?base=${'1'.repeat(40)}`)).status, 404);
    assert.equal((await get(`${base}/snapshot.bundle?base=nothex`)).status, 400);
    assert.equal((await get(`${base}/snapshot.bundle`)).status, 400);

    // The background generation catches up; the old immutable URL keeps serving within the grace.
    await waitFor(async () => {
      const r = await get(`${base}/snapshot.tar.zst`, {}, 'HEAD');
      return r.headers.get('x-cachew-snapshot-commit') === newHead ? r : undefined;
    });
    assert.equal((await get(`${base}/snapshot.bundle?base=${newHead}`)).status, 204);
    assert.equal((await get(`${base}/snapshot/${oldHead}.tar.zst`, {}, 'HEAD')).status, 200);
  });
});
