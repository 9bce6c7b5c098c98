import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryCache } from '../cache/memory.js';
import { blobKey, putBlob } from '../cache/write.js';
import { Readable } from 'node:stream';
import { BadRequestError } from '../util/errors.js';
import { runGit } from './command.js';
import { createBundle } from './bundle.js';
import { getOrCreateBundle } from '../storage/bundles.js';
import { bundleKey, writeJson } from '../storage/records.js';

const git = (cwd: string, ...args: string[]): Promise<string> => runGit(args, { cwd, timeoutMs: 60_000 });
const rev = async (cwd: string, what: string): Promise<string> => (await git(cwd, 'rev-parse', what)).trim();

/** Adds `n` commits that change a few growing files, so packs contain real deltas. */
async function addCommits(work: string, from: number, n: number): Promise<void> {
  for (let i = from; i < from + n; i++) {
    const lines = Array.from({ length: (i + 1) * 200 }, (_, k) => String(k + 1)).join('\n');
    await writeFile(join(work, `f${i % 5}.txt`), `${lines}\n`);
    await writeFile(join(work, 'log.txt'), `${i}\n`, { flag: 'a' });
    await git(work, 'add', '-A');
    await git(work, '-c', 'commit.gpgsign=false', 'commit', '-q', '-m', `commit ${i}`, '--date', `${1700000000 + i} +0000`);
  }
}

void describe('delta bundles', { timeout: 120_000 }, () => {
  let root: string;
  let upstream: string;
  let client: string;
  let mirrorA: string;
  let mirrorB: string;
  let base: string;
  let head: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'cachew-bundle-test-'));
    upstream = join(root, 'upstream');
    await git(root, 'init', '-q', '-b', 'main', upstream);
    await addCommits(upstream, 0, 20);
    base = await rev(upstream, 'HEAD');
    // The client is a real clone taken while upstream was at `base`.
    client = join(root, 'client');
    await git(root, 'clone', '-q', upstream, client);
    await addCommits(upstream, 20, 10);
    head = await rev(upstream, 'HEAD');
    // Two independent mirrors, packed differently (one with a bitmap, one with aggressive deltas).
    mirrorA = join(root, 'a.git');
    mirrorB = join(root, 'b.git');
    await git(root, 'clone', '-q', '--mirror', upstream, mirrorA);
    await git(root, 'clone', '-q', '--mirror', upstream, mirrorB);
    await git(mirrorA, 'gc', '-q');
    await git(mirrorB, 'repack', '-adfq', '--window=50', '--depth=5');
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  void test('a bundle base→head fast-forwards a clone at base to head', async () => {
    const out = join(root, 'ff.bundle');
    const made = await createBundle({ gitDir: mirrorA, base, head, headRef: 'refs/heads/main', outPath: out });
    const bytes = await readFile(out);
    assert.equal(made.size, bytes.length);
    assert.equal(made.sha256, createHash('sha256').update(bytes).digest('hex'), 'hashed while writing');
    assert.ok(bytes.subarray(0, 16).toString() === '# v2 git bundle\n');

    assert.match(await git(client, 'bundle', 'verify', out), new RegExp(head));
    assert.equal(await rev(client, 'HEAD'), base);
    await git(client, 'fetch', '-q', out, 'refs/heads/main:refs/remotes/bundle/main');
    await git(client, 'merge', '-q', '--ff-only', 'refs/remotes/bundle/main');
    assert.equal(await rev(client, 'HEAD'), head);
    await git(client, 'fsck', '--no-progress');
    assert.equal((await git(client, 'status', '--porcelain')).trim(), '');
    assert.equal((await git(client, 'rev-list', '--count', 'HEAD')).trim(), '30');
  });

  void test('two independently packed mirrors produce byte-identical bundles', async () => {
    const a = await createBundle({ gitDir: mirrorA, base, head, headRef: 'refs/heads/main', outPath: join(root, 'a.bundle') });
    const b = await createBundle({ gitDir: mirrorB, base, head, headRef: 'refs/heads/main', outPath: join(root, 'b.bundle') });
    assert.equal(a.sha256, b.sha256);
    assert.equal(a.size, b.size);
    // Fixture check: plain `git bundle create` reuses each mirror's deltas, so it differs across these
    // mirrors — which is why createBundle drives pack-objects itself. Git is pinned (SPEC §5); if an
    // upgrade makes plain bundles stable this fails, and createBundle could go back to using it.
    const plain = await Promise.all(
      [mirrorA, mirrorB].map(async (m, i) => {
        const out = join(root, `plain-${i}.bundle`);
        await git(m, 'bundle', 'create', '-q', out, 'refs/heads/main', `^${base}`);
        return createHash('sha256').update(await readFile(out)).digest('hex');
      }),
    );
    assert.notEqual(plain[0], plain[1], 'the mirrors are not packed differently enough to test anything');
  });

  void test('a merge of a side branch forked before base lists every boundary as a prerequisite', async () => {
    const repo = join(root, 'merge-up');
    await git(root, 'init', '-q', '-b', 'main', repo);
    await addCommits(repo, 0, 3);
    await git(repo, 'checkout', '-q', '-b', 'side', 'HEAD~1');
    await writeFile(join(repo, 'side.txt'), 'side\n');
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-q', '-m', 'side');
    await git(repo, 'checkout', '-q', 'main');
    const mergeBase = await rev(repo, 'HEAD');
    const clone = join(root, 'merge-client');
    await git(root, 'clone', '-q', '--single-branch', '-b', 'main', repo, clone);
    await git(repo, 'merge', '-q', '--no-edit', 'side');
    await addCommits(repo, 3, 1);
    const mergeHead = await rev(repo, 'HEAD');
    const out = join(root, 'merge.bundle');
    await createBundle({ gitDir: repo, base: mergeBase, head: mergeHead, headRef: 'refs/heads/main', outPath: out });
    const header = (await readFile(out)).subarray(0, 200).toString('latin1');
    assert.equal(header.split('\n').filter((line) => line.startsWith('-')).length, 2);
    await git(clone, 'fetch', '-q', out, 'refs/heads/main:refs/remotes/bundle/main');
    await git(clone, 'merge', '-q', '--ff-only', 'refs/remotes/bundle/main');
    assert.equal(await rev(clone, 'HEAD'), mergeHead);
    await git(clone, 'fsck', '--no-progress');
  });

  void test('createBundle fails cleanly on an unknown commit and leaves no file', async () => {
    const out = join(root, 'bad.bundle');
    await assert.rejects(
      createBundle({ gitDir: mirrorA, base, head: 'e'.repeat(40), headRef: 'refs/heads/main', outPath: out }),
    );
    await assert.rejects(readFile(out), { code: 'ENOENT' });
    await assert.rejects(
      createBundle({ gitDir: mirrorA, base, head, headRef: 'main; rm -rf', outPath: out }),
      BadRequestError,
    );
  });

  void test('getOrCreateBundle: stores blob and record, single-flight, reuses, replaces a vanished blob', async () => {
    const cache = new MemoryCache({ limitBytes: 64 << 20 });
    try {
      let makes = 0;
      const make = async (outPath: string): Promise<{ sha256: string; size: number }> => {
        makes++;
        return createBundle({ gitDir: mirrorB, base, head, headRef: 'refs/heads/main', outPath });
      };
      const now = (): number => Date.parse('2024-01-01T00:00:00Z');
      const options = { cache, host: '127.0.0.1:9000', repo: 'org/r.git', base, head, ttlMs: 3_600_000, make, now, workDir: join(root, 'work') };
      const [r1, r2, r3] = await Promise.all([getOrCreateBundle(options), getOrCreateBundle(options), getOrCreateBundle(options)]);
      assert.equal(makes, 1, 'concurrent callers share one build');
      assert.deepEqual(r2, r1);
      assert.deepEqual(r3, r1);
      assert.deepEqual(r1, {
        base,
        head,
        digest: r1.digest,
        size: r1.size,
        created: '2024-01-01T00:00:00.000Z',
        expires: '2024-01-01T01:00:00.000Z',
      });
      const recordMeta = await cache.stat(`bundles/127.0.0.1_9000/org/r/${base}..${head}.json`);
      assert.ok(recordMeta?.expiresAt, 'record carries the TTL');
      const blobMeta = await cache.stat(blobKey(r1.digest));
      assert.equal(blobMeta?.size, r1.size);
      assert.ok(blobMeta?.expiresAt, 'blob carries the TTL');

      assert.deepEqual(await getOrCreateBundle(options), r1);
      assert.equal(makes, 1, 'an existing record is reused');

      await cache.delete(blobKey(r1.digest));
      const again = await getOrCreateBundle(options);
      assert.equal(makes, 2, 'a record without blob is rebuilt');
      assert.equal(again.digest, r1.digest);
      assert.ok(await cache.stat(blobKey(r1.digest)));
    } finally {
      await cache.close();
    }
  });

  void test('getOrCreateBundle: the first record wins and the loser drops its blob', async () => {
    const cache = new MemoryCache({ limitBytes: 64 << 20 });
    try {
      const winnerBytes = Buffer.from('a different but complete bundle');
      const winnerDigest = createHash('sha256').update(winnerBytes).digest('hex');
      let ours = '';
      const made = await getOrCreateBundle({
        cache,
        host: 'example.com',
        repo: 'org/r',
        base,
        head,
        ttlMs: 60_000,
        make: async (outPath) => {
          const result = await createBundle({ gitDir: mirrorA, base, head, headRef: 'refs/heads/main', outPath });
          ours = result.sha256;
          // Another replica records its (different) bundle while we were building ours.
          await putBlob(cache, winnerDigest, Readable.from([winnerBytes]));
          await writeJson(cache, bundleKey('example.com', 'org/r', base, head), {
            base,
            head,
            digest: winnerDigest,
            size: winnerBytes.length,
            created: new Date().toISOString(),
          });
          return result;
        },
      });
      assert.equal(made.digest, winnerDigest);
      assert.notEqual(ours, winnerDigest);
      assert.equal(await cache.stat(blobKey(ours)), undefined, "the loser's blob is deleted");
    } finally {
      await cache.close();
    }
  });
});
