import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { MemoryCache } from '../cache/memory.js';
import type { Cache } from '../cache/cache.js';
import { blobKey } from '../cache/write.js';
import { BadRequestError, NotFoundError } from '../util/errors.js';
import { SnapshotStore, type PublishFile } from './store.js';
import { SERVED_RECORD_MEMO_MS } from './reader.js';
import { bundleKey, recordKey, storageHost } from './records.js';
import { pointerKey, readPointer } from './pointer.js';

const HOST = '127.0.0.1:9000';
const REPO = 'org/repo';

function commitId(): string {
  return randomBytes(20).toString('hex');
}

async function readAll(stream: Readable | undefined): Promise<Buffer> {
  assert.ok(stream, 'expected a body');
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function keys(cache: Cache, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const meta of cache.list(prefix)) out.push(meta.key);
  return out.sort();
}

void describe('SnapshotStore', () => {
  let dir: string;
  let cache: MemoryCache;
  let clock: number;
  let store: SnapshotStore;

  /** Writes an "archive" with random content and returns publish input for it. */
  async function archive(commit: string, content: Buffer = randomBytes(3000)): Promise<PublishFile> {
    const file = join(dir, `${commit}-${randomBytes(4).toString('hex')}.tar.zst`);
    await writeFile(file, content);
    const sha256 = createHash('sha256').update(content).digest('hex');
    return { host: HOST, repo: REPO, commit, file, sha256, size: content.length };
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cachew-store-'));
    cache = new MemoryCache({ limitBytes: 64 << 20 });
    clock = Date.parse('2024-01-01T00:00:00Z');
    store = new SnapshotStore({ cache, graceMs: 60_000, now: () => clock });
  });

  afterEach(async () => {
    await cache.close();
    await rm(dir, { recursive: true, force: true });
  });

  void test('servedRecord reuses a record for SERVED_RECORD_MEMO_MS, never a miss', async () => {
    const commit = commitId();
    assert.equal(await store.servedRecord(HOST, REPO, commit), undefined);
    const record = await store.publish(await archive(commit));
    assert.deepEqual(await store.servedRecord(HOST, REPO, commit), record, 'a miss was not memoized');
    let opens = 0;
    const countingStat = cache.open.bind(cache);
    cache.open = (...args: Parameters<MemoryCache['open']>) => {
      opens++;
      return countingStat(...args);
    };
    await cache.delete(recordKey(HOST, REPO, commit));
    assert.deepEqual(await store.servedRecord(HOST, REPO, commit), record, 'memo used: no read');
    assert.equal(opens, 0);
    clock += SERVED_RECORD_MEMO_MS;
    assert.equal(await store.servedRecord(HOST, REPO, commit), undefined, 'read again once the memo aged');
    assert.equal(opens, 1);
    assert.equal(await store.record(HOST, REPO, commit), undefined, 'record() itself never uses the memo');
  });

  void test('publish stores blob, record and pointer under the SPEC §6 keys', async () => {
    const commit = commitId();
    const input = await archive(commit);
    const record = await store.publish({ ...input, repo: 'org/repo.git', format: 'v1' });
    assert.deepEqual(record, {
      commit,
      digest: input.sha256,
      size: input.size,
      created: '2024-01-01T00:00:00.000Z',
      format: 'v1',
    });
    assert.deepEqual(await keys(cache, ''), [
      `blobs/sha256/${input.sha256}`,
      `pointers/127.0.0.1_9000/org/repo.json`,
      `records/127.0.0.1_9000/org/repo/${commit}.json`,
    ]);
    assert.equal(recordKey(HOST, 'org/repo.git', commit), `records/127.0.0.1_9000/org/repo/${commit}.json`);
    assert.equal(pointerKey(HOST, REPO), 'pointers/127.0.0.1_9000/org/repo.json');
    assert.equal(bundleKey(HOST, REPO, commit, commit), `bundles/127.0.0.1_9000/org/repo/${commit}..${commit}.json`);
    assert.equal(storageHost('github.com'), 'github.com');

    const current = await store.current(HOST, REPO);
    assert.deepEqual(current?.record, record);
    assert.equal(current?.pointer.commit, commit);
    assert.deepEqual(await store.record(HOST, REPO, commit), record);
    assert.deepEqual(await store.list(HOST, REPO), [{ ...record, current: true }]);

    const opened = await store.open(record, { range: { kind: 'bounded', start: 10, end: 19 } });
    assert.equal(opened?.status, 206);
    const bytes = await readAll(opened?.body);
    assert.equal(bytes.length, 10);
  });

  void test('rejects malformed commits, digests, hosts and repositories', async () => {
    const input = await archive(commitId());
    await assert.rejects(store.publish({ ...input, commit: 'HEAD' }), BadRequestError);
    await assert.rejects(store.publish({ ...input, sha256: 'abc' }), BadRequestError);
    await assert.rejects(store.current('bad host', REPO), BadRequestError);
    await assert.rejects(store.current(HOST, '../etc'), BadRequestError);
    await assert.rejects(store.open({ digest: '0'.repeat(64), created: new Date(clock).toISOString() }), NotFoundError);
  });

  void test('a digest mismatch publishes nothing', async () => {
    const input = await archive(commitId());
    await assert.rejects(store.publish({ ...input, sha256: 'f'.repeat(64) }), /sha256 mismatch/);
    assert.deepEqual(await keys(cache, ''), []);
  });

  void test('first writer wins: the loser serves the winner and drops its own blob', async () => {
    const commit = commitId();
    const replicaB = new SnapshotStore({ cache, graceMs: 60_000, now: () => clock + 5 });
    const a = await archive(commit);
    const b = await archive(commit);
    assert.notEqual(a.sha256, b.sha256);
    const first = await store.publish(a);
    const second = await replicaB.publish(b);
    assert.deepEqual(second, first);
    assert.equal(second.digest, a.sha256);
    assert.equal(await cache.stat(blobKey(b.sha256)), undefined, "the loser's blob is deleted");
    assert.ok(await cache.stat(blobKey(a.sha256)));
    assert.equal((await store.current(HOST, REPO))?.record.digest, a.sha256);
  });

  void test('concurrent replicas publishing one commit agree on a single record', async () => {
    const commit = commitId();
    const inputs = await Promise.all([1, 2, 3, 4].map(() => archive(commit)));
    const records = await Promise.all(
      inputs.map((input, i) => new SnapshotStore({ cache, graceMs: 1, now: () => clock + i }).publish(input)),
    );
    for (const record of records) assert.deepEqual(record, records[0]);
    const blobs = await keys(cache, 'blobs/');
    assert.deepEqual(blobs, [blobKey(records[0].digest)], 'only the winning blob remains');
  });

  void test('identical bytes from two replicas are stored once and both succeed', async () => {
    const commit = commitId();
    const content = randomBytes(5000);
    const [r1, r2] = await Promise.all([store.publish(await archive(commit, content)), store.publish(await archive(commit, content))]);
    assert.equal(r1.digest, r2.digest);
    assert.equal((await keys(cache, 'blobs/')).length, 1);
  });

  void test('the pointer only moves forward; force overrides; superseded entries are kept', async () => {
    const [c1, c2, c3] = [commitId(), commitId(), commitId()];
    const order = [c1, c2, c3];
    const isAncestor = (older: string, newer: string): Promise<boolean> =>
      Promise.resolve(order.indexOf(older) <= order.indexOf(newer));

    await store.publish({ ...(await archive(c1)), isAncestor });
    clock += 1000;
    await store.publish({ ...(await archive(c3)), isAncestor });
    clock += 1000;
    // A stale replica publishes the older c2: its record exists, the pointer stays at c3.
    const r2 = await store.publish({ ...(await archive(c2)), isAncestor });
    assert.equal(r2.commit, c2);
    assert.equal((await store.current(HOST, REPO))?.record.commit, c3);
    let pointer = (await readPointer(cache, HOST, REPO))?.value;
    assert.deepEqual(pointer?.superseded.map((e) => [e.commit, e.at]), [[c1, '2024-01-01T00:00:01.000Z']]);

    const listed = await store.list(HOST, REPO);
    assert.deepEqual(listed.map((r) => [r.commit, r.current]), [[c2, false], [c3, true], [c1, false]]);

    // A force-push publish moves it back and records when c3 stopped being current.
    clock += 1000;
    await store.publish({ host: HOST, repo: REPO, commit: c2, existing: r2, isAncestor, force: true });
    pointer = (await readPointer(cache, HOST, REPO))?.value;
    assert.equal(pointer?.commit, c2);
    assert.deepEqual(pointer?.superseded.map((e) => e.commit), [c1, c3]);
    assert.equal(pointer?.superseded[1].at, '2024-01-01T00:00:03.000Z');
  });

  void test('concurrent publishes of successive commits converge on the newest (CAS retries)', async () => {
    const commits = Array.from({ length: 6 }, () => commitId());
    const isAncestor = (older: string, newer: string): Promise<boolean> =>
      Promise.resolve(commits.indexOf(older) <= commits.indexOf(newer));
    const inputs = await Promise.all(commits.map((c) => archive(c)));
    // Interleave: several stores, shuffled order.
    const shuffled = [3, 0, 5, 1, 4, 2].map((i) => inputs[i]);
    await Promise.all(
      shuffled.map((input, i) => new SnapshotStore({ cache, graceMs: 1, now: () => clock + i }).publish({ ...input, isAncestor })),
    );
    assert.equal((await store.current(HOST, REPO))?.record.commit, commits[5]);
    const pointer = (await readPointer(cache, HOST, REPO))?.value;
    assert.ok(pointer);
    assert.ok(!pointer.superseded.some((e) => e.commit === commits[5]));
  });

  void test('current() is undefined when the pointed record or blob vanished', async () => {
    const commit = commitId();
    const record = await store.publish(await archive(commit));
    await cache.delete(blobKey(record.digest));
    assert.equal(await store.current(HOST, REPO), undefined);
    await assert.rejects(
      store.publish({ host: HOST, repo: REPO, commit, existing: record }),
      NotFoundError,
    );
    // Publishing again heals it: the record without blob is replaced.
    const again = await store.publish(await archive(commit));
    assert.notEqual(again.digest, record.digest);
    assert.equal((await store.current(HOST, REPO))?.record.digest, again.digest);

    await cache.delete(recordKey(HOST, REPO, commit));
    assert.equal(await store.current(HOST, REPO), undefined);
    assert.equal(await store.current(HOST, 'org/other'), undefined);
  });

  void test('nested repositories do not see each other’s records', async () => {
    const parent = await store.publish({ ...(await archive(commitId())), repo: 'group/sub' });
    const child = await store.publish({ ...(await archive(commitId())), repo: 'group/sub/repo' });
    assert.deepEqual((await store.list(HOST, 'group/sub')).map((r) => r.commit), [parent.commit]);
    assert.deepEqual((await store.list(HOST, 'group/sub/repo')).map((r) => r.commit), [child.commit]);
  });
});
