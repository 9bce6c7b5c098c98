/**
 * Degraded publishing: with the shared tier down, a snapshot is stored locally, served, and kept in the
 * backlog; publishPending() later publishes it the normal way (first record wins, pointer forward).
 */
import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryCache } from '../cache/memory.js';
import { TieredCache } from '../cache/tiered.js';
import { GuardedCache } from '../cache/guarded.js';
import { FaultyCache } from '../cache/testing/faulty.js';
import { AuthoritativeReadView } from '../cache/authoritative-view.js';
import { blobKey, writeStream } from '../cache/write.js';
import { NotFoundError, UnavailableError } from '../util/errors.js';
import { SnapshotStore, staleReadLimits, type PublishFile } from './store.js';
import { readSnapshotRecord, recordKey, writeJson } from './records.js';
import { readPointer } from './pointer.js';
import { PublishBacklog } from './backlog.js';

const HOST = '127.0.0.1:9000';
const REPO = 'org/repo';
const always = async (): Promise<boolean> => true;

function commitId(): string {
  return randomBytes(20).toString('hex');
}

void describe('degraded publishing', () => {
  let dir: string;
  let local: MemoryCache;
  let sharedInner: MemoryCache;
  let shared: FaultyCache;
  let guard: GuardedCache;
  let backlog: PublishBacklog;
  let store: SnapshotStore;

  async function archive(commit: string, content: Buffer = randomBytes(3000)): Promise<PublishFile> {
    const file = join(dir, `${commit}.tar.zst`);
    await writeFile(file, content);
    const sha256 = createHash('sha256').update(content).digest('hex');
    return { host: HOST, repo: REPO, commit, file, sha256, size: content.length, isAncestor: always };
  }

  function down(): void {
    const outage = new UnavailableError('s3 down');
    shared.faults = { stat: outage, open: outage, create: outage, delete: outage, list: outage };
  }

  async function up(): Promise<void> {
    shared.faults = {};
    assert.equal(await guard.probe(), true);
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cachew-backlog-'));
    local = new MemoryCache({ limitBytes: 64 << 20 });
    sharedInner = new MemoryCache({ limitBytes: 64 << 20 });
    shared = new FaultyCache(sharedInner, {}, 's3');
    guard = new GuardedCache(shared, { failureThreshold: 1, probeIntervalMs: 0 });
    const tiered = new TieredCache([local, guard]);
    backlog = new PublishBacklog({ dir: join(dir, 'backlog') });
    store = new SnapshotStore({
      cache: tiered,
      metadataCache: new AuthoritativeReadView(tiered, { staleLimitMs: staleReadLimits(60_000) }),
      graceMs: 60_000,
      degraded: { local: tiered.local!, shared: guard, backlog },
    });
  });

  afterEach(async () => {
    await guard.close();
    await local.close();
    await rm(dir, { recursive: true, force: true });
  });

  void test('a snapshot made while S3 is down is served locally and published once S3 is back', async () => {
    const first = commitId();
    await store.publish(await archive(first));
    down();
    const second = commitId();
    const input = await archive(second);
    const record = await store.publish(input);
    assert.equal(record.digest, input.sha256);
    assert.equal(backlog.size, 1);
    assert.equal((await store.current(HOST, REPO))?.record.commit, second, 'served from the local tiers');
    assert.equal(await sharedInner.stat(recordKey(HOST, REPO, second)), undefined);

    await up();
    const [entry] = await backlog.list();
    const published = await store.publishPending(entry, always);
    await backlog.remove(entry);
    assert.deepEqual(published, { ...record, created: published.created });
    assert.equal((await readSnapshotRecord(sharedInner, HOST, REPO, second))?.digest, input.sha256);
    assert.ok(await sharedInner.stat(blobKey(input.sha256)));
    const pointer = (await readPointer(sharedInner, HOST, REPO))?.value;
    assert.equal(pointer?.commit, second);
    assert.deepEqual(pointer?.superseded.map((s) => s.commit), [first]);
    assert.equal(backlog.size, 0);
  });

  void test('another replica that recorded the commit first wins when the backlog is published', async () => {
    down();
    const commit = commitId();
    const ours = await archive(commit);
    await store.publish(ours);
    // Meanwhile another replica (which could reach S3) recorded the same commit with other bytes.
    const theirs = randomBytes(2000);
    const theirDigest = createHash('sha256').update(theirs).digest('hex');
    await writeStream(sharedInner, blobKey(theirDigest), [theirs], { expectedSha256: theirDigest });
    const winner = { commit, digest: theirDigest, size: theirs.length, created: new Date().toISOString() };
    await writeJson(sharedInner, recordKey(HOST, REPO, commit), winner);

    await up();
    const [entry] = await backlog.list();
    const published = await store.publishPending(entry, always);
    assert.equal(published.digest, winner.digest, 'the first record wins');
    assert.equal(await sharedInner.stat(blobKey(ours.sha256)), undefined, 'our unreferenced blob is not left in S3');
    assert.equal((await readPointer(sharedInner, HOST, REPO))?.value.digest, winner.digest);
  });

  void test('an entry whose local blob was evicted is reported as NotFound (the service regenerates it)', async () => {
    down();
    const commit = commitId();
    const input = await archive(commit);
    await store.publish(input);
    await local.delete(blobKey(input.sha256));
    await up();
    const [entry] = await backlog.list();
    await assert.rejects(store.publishPending(entry, always), NotFoundError);
  });

  void test('without degraded publishing configured an outage still fails the publish', async () => {
    const tiered = new TieredCache([local, guard]);
    const strict = new SnapshotStore({ cache: tiered, metadataCache: new AuthoritativeReadView(tiered), graceMs: 60_000 });
    down();
    await assert.rejects(strict.publish(await archive(commitId())), UnavailableError);
  });

  void test('the backlog is durable: entries survive a new instance, crashed temp files are removed, garbage is skipped', async () => {
    down();
    await store.publish(await archive(commitId()));
    const backlogDir = join(dir, 'backlog');
    await writeFile(join(backlogDir, '.tmp-crashed'), '{"host":');
    await writeFile(join(backlogDir, 'garbage.json'), 'not json');
    const reopened = new PublishBacklog({ dir: backlogDir });
    assert.equal((await reopened.list()).length, 1);
    assert.ok(!(await readdir(backlogDir)).includes('.tmp-crashed'));
  });
});
