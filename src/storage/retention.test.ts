import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryCache } from '../cache/memory.js';
import type { Cache } from '../cache/cache.js';
import { blobKey, putBlob } from '../cache/write.js';
import { Readable } from 'node:stream';
import { SnapshotStore, type PublishFile } from './store.js';
import { bundleKey, recordKey, writeJson, type BundleRecord } from './records.js';
import { readPointer } from './pointer.js';
import { collectGarbage } from './retention.js';

const HOST = 'example.com';
const REPO = 'org/repo';
const GRACE = 60 * 60_000;

function commitId(): string {
  return randomBytes(20).toString('hex');
}

async function keys(cache: Cache, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const meta of cache.list(prefix)) out.push(meta.key);
  return out.sort();
}

void describe('snapshot retention', () => {
  let dir: string;
  let cache: MemoryCache;
  let clock: number;
  let store: SnapshotStore;
  const commits: string[] = [];
  const isAncestor = (older: string, newer: string): Promise<boolean> =>
    Promise.resolve(commits.indexOf(older) <= commits.indexOf(newer));

  async function archive(commit: string): Promise<PublishFile> {
    const content = randomBytes(2000);
    const file = join(dir, `${commit}.tar.zst`);
    await writeFile(file, content);
    const sha256 = createHash('sha256').update(content).digest('hex');
    return { host: HOST, repo: REPO, commit, file, sha256, size: content.length, isAncestor };
  }

  /** Publishes `n` successive commits one minute apart; returns their records. */
  async function publishSuccessive(n: number): Promise<string[]> {
    const digests: string[] = [];
    for (let i = 0; i < n; i++) {
      const commit = commitId();
      commits.push(commit);
      digests.push((await store.publish(await archive(commit))).digest);
      clock += 60_000;
    }
    return digests;
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cachew-retention-'));
    cache = new MemoryCache({ limitBytes: 64 << 20 });
    clock = Date.parse('2024-01-01T00:00:00Z');
    store = new SnapshotStore({ cache, graceMs: GRACE, now: () => clock });
    commits.length = 0;
  });

  afterEach(async () => {
    await cache.close();
    await rm(dir, { recursive: true, force: true });
  });

  void test('steady state: after 5 commits and the grace period only the current record and blob remain', async () => {
    const digests = await publishSuccessive(5);
    const current = commits[4];

    // Within the grace period nothing is deleted: in-flight downloads of old snapshots still work.
    const early = await store.collectGarbage(HOST, REPO);
    assert.deepEqual(early, { records: [], bundles: [], blobs: [] });
    assert.equal((await keys(cache, 'records/')).length, 5);
    assert.equal((await keys(cache, 'blobs/')).length, 5);

    clock += GRACE + 1;
    const report = await store.collectGarbage(HOST, REPO);
    assert.equal(report.records.length, 4);
    assert.deepEqual(report.blobs.sort(), digests.slice(0, 4).sort());
    assert.deepEqual(await keys(cache), [
      blobKey(digests[4]),
      `pointers/${HOST}/${REPO}.json`,
      recordKey(HOST, REPO, current),
    ]);
    const pointer = (await readPointer(cache, HOST, REPO))?.value;
    assert.equal(pointer?.commit, current);
    assert.deepEqual(pointer?.superseded, [], 'superseded list pruned');
    assert.equal((await store.current(HOST, REPO))?.record.commit, current);

    // Idempotent.
    assert.deepEqual(await store.collectGarbage(HOST, REPO), { records: [], bundles: [], blobs: [] });
  });

  void test('grace counts from when a snapshot stopped being current, not from when it was created', async () => {
    await publishSuccessive(1);
    clock += 2 * GRACE; // c0 is old but still current
    await publishSuccessive(1); // c0 superseded now
    clock += GRACE / 2;
    assert.deepEqual((await store.collectGarbage(HOST, REPO)).records, []);
    clock += GRACE / 2 + 1;
    assert.deepEqual((await store.collectGarbage(HOST, REPO)).records, [recordKey(HOST, REPO, commits[0])]);
  });

  void test('the current snapshot is never deleted, however old', async () => {
    await publishSuccessive(1);
    clock += 100 * GRACE;
    const report = await collectGarbage(cache, { host: HOST, repo: REPO, now: clock, graceMs: GRACE });
    assert.deepEqual(report, { records: [], bundles: [], blobs: [] });
    assert.ok(await store.current(HOST, REPO));
  });

  void test('a record that never became current ages from its creation', async () => {
    await publishSuccessive(2);
    // A stale replica records an older commit; the pointer stays.
    const stale = commitId();
    commits.unshift(stale);
    await store.publish(await archive(stale));
    assert.notEqual((await store.current(HOST, REPO))?.record.commit, stale);
    clock += GRACE + 1;
    const report = await store.collectGarbage(HOST, REPO);
    assert.ok(report.records.includes(recordKey(HOST, REPO, stale)));
    assert.deepEqual((await store.list(HOST, REPO)).map((r) => r.commit), [commits[2]]);
  });

  void test('concurrent runs on two replicas are safe', async () => {
    await publishSuccessive(5);
    clock += GRACE + 1;
    const other = new SnapshotStore({ cache, graceMs: GRACE, now: () => clock });
    const [a, b] = await Promise.all([store.collectGarbage(HOST, REPO), other.collectGarbage(HOST, REPO)]);
    assert.ok(a.records.length + b.records.length >= 4);
    assert.equal((await keys(cache, 'records/')).length, 1);
    assert.equal((await keys(cache, 'blobs/')).length, 1);
    assert.ok(await store.current(HOST, REPO));
  });

  void test('a blob still referenced by a remaining record is kept', async () => {
    const [d0] = await publishSuccessive(2);
    // Another retained record (e.g. the same archive republished under a second commit) shares d0.
    const twin = commitId();
    commits.push(twin);
    clock += GRACE + 1;
    await writeJson(cache, recordKey(HOST, REPO, twin), {
      commit: twin,
      digest: d0,
      size: 2000,
      created: new Date(clock).toISOString(),
    });
    const report = await store.collectGarbage(HOST, REPO);
    assert.ok(report.records.includes(recordKey(HOST, REPO, commits[0])));
    assert.ok(!report.blobs.includes(d0));
    assert.ok(await cache.stat(blobKey(d0)));
  });

  void test('expired bundle records and their blobs are removed; live ones kept', async () => {
    await publishSuccessive(1);
    const [base1, base2, head] = [commitId(), commitId(), commitId()];
    const put = async (base: string, expires: number): Promise<BundleRecord> => {
      const bytes = randomBytes(100);
      const digest = createHash('sha256').update(bytes).digest('hex');
      await putBlob(cache, digest, Readable.from([bytes]));
      const record: BundleRecord = {
        base,
        head,
        digest,
        size: 100,
        created: new Date(clock).toISOString(),
        expires: new Date(expires).toISOString(),
      };
      await writeJson(cache, bundleKey(HOST, REPO, base, head), record);
      return record;
    };
    const old = await put(base1, clock + 1000);
    const fresh = await put(base2, clock + 10 * GRACE);
    clock += 2000;
    const report = await store.collectGarbage(HOST, REPO);
    assert.deepEqual(report.bundles, [bundleKey(HOST, REPO, base1, head)]);
    assert.deepEqual(report.blobs, [old.digest]);
    assert.ok(await cache.stat(blobKey(fresh.digest)));
    assert.ok(await cache.stat(bundleKey(HOST, REPO, base2, head)));
  });
});
