import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Cache, CacheWriter, CreateOptions } from './cache.js';
import { DiskCache } from './disk.js';
import { MemoryCache } from './memory.js';
import { TieredCache } from './tiered.js';
import { FaultyCache } from './testing/faulty.js';
import { hashStream, pseudoRandomBytes, put, readAll, runCacheConformance, sha256 } from './testing/conformance.js';
import { AlreadyExistsError } from '../util/errors.js';
import { ManualClock } from '../util/testing/manual-clock.js';

interface Fixture {
  clock: ManualClock;
  memory: MemoryCache;
  disk: DiskCache;
  root: string;
  cleanup(): Promise<void>;
}

async function fixture(): Promise<Fixture> {
  const root = await mkdtemp(join(tmpdir(), 'cachew-tiered-'));
  const clock = new ManualClock();
  const memory = new MemoryCache({ limitBytes: 256 * 1024 * 1024, clock });
  const disk = await DiskCache.open({ root, limitBytes: 1024 * 1024 * 1024, clock });
  return {
    clock,
    memory,
    disk,
    root,
    async cleanup() {
      await memory.close();
      await disk.close();
      assert.deepEqual(await readdir(join(root, '.tmp')), [], 'no temp files left behind');
      await rm(root, { recursive: true, force: true });
    },
  };
}

runCacheConformance('TieredCache(memory+disk) conformance', async () => {
  const f = await fixture();
  const cache = new TieredCache([f.memory, f.disk], { clock: f.clock });
  return { cache, clock: f.clock, cleanup: () => f.cleanup() };
});

function withFixture(title: string, body: (f: Fixture) => Promise<void>): void {
  void test(title, { timeout: 60_000 }, async () => {
    const f = await fixture();
    try {
      await body(f);
    } finally {
      await f.cleanup();
    }
  });
}

withFixture('a full read from a farther tier backfills the nearer tier', async ({ clock, memory, disk }) => {
  const events: string[] = [];
  const tiered = new TieredCache([memory, disk], {
    clock,
    observer: { hit: (tier, bytes) => events.push(`hit:${tier}:${bytes}`), miss: (tier) => events.push(`miss:${tier}`) },
  });
  const data = pseudoRandomBytes(3 * 1024 * 1024, 1);
  await put(disk, 'obj', data, { metadata: { type: 'x' }, ttlMs: 60_000 });
  const diskMeta = await disk.stat('obj');
  const result = await tiered.open('obj');
  assert.equal(result?.source, 'disk');
  assert.equal((await hashStream(result.body)).sha256, sha256(data));
  await tiered.whenIdle();
  assert.equal((await memory.stat('obj'))?.etag, sha256(data));
  const copied = await memory.stat('obj');
  assert.deepEqual(copied?.metadata, { type: 'x' });
  assert.ok(copied?.expiresAt && diskMeta?.expiresAt);
  assert.equal(copied.expiresAt.getTime(), diskMeta.expiresAt.getTime(), 'the copy keeps the remaining TTL');
  const again = await tiered.open('obj');
  assert.equal(again?.source, 'memory');
  assert.ok((await readAll(again.body)).equals(data));
  assert.deepEqual(events, [`miss:memory`, `hit:disk:${data.length}`, `hit:memory:${data.length}`]);
});

void test('a full read of an object too big for the memory tier does not try to backfill it', { timeout: 60_000 }, async () => {
  const f = await fixture();
  const small = new MemoryCache({ limitBytes: 256 * 1024 * 1024, maxObjectBytes: 1024 * 1024, clock: f.clock });
  let creates = 0;
  // Counts the writes the tiered cache starts on the memory tier: none for the big object.
  const counting = Object.assign(Object.create(small) as MemoryCache, {
    create: (...args: Parameters<MemoryCache['create']>) => {
      creates++;
      return small.create(...args);
    },
  });
  try {
    const tiered = new TieredCache([counting, f.disk], { clock: f.clock });
    const big = pseudoRandomBytes(2 * 1024 * 1024, 11);
    await put(f.disk, 'big', big);
    const read = await tiered.open('big');
    assert.equal((await hashStream(read!.body!)).sha256, sha256(big));
    await tiered.whenIdle();
    assert.equal(creates, 0, 'no backfill write for an object the tier would drop');
    const little = pseudoRandomBytes(1000, 12);
    await put(f.disk, 'little', little);
    await readAll((await tiered.open('little'))!.body!);
    await tiered.whenIdle();
    assert.equal(creates, 1);
    assert.ok(await small.stat('little'), 'small objects are still backfilled');
  } finally {
    await small.close();
    await f.cleanup();
  }
});

withFixture('ranged, HEAD and 304 reads do not backfill', async ({ memory, disk }) => {
  const tiered = new TieredCache([memory, disk]);
  const { etag } = await put(disk, 'obj', pseudoRandomBytes(100_000, 2));
  const ranged = await tiered.open('obj', { range: { kind: 'bounded', start: 0, end: 99 } });
  assert.equal(ranged?.status, 206);
  assert.equal((await readAll(ranged.body)).length, 100);
  assert.equal((await tiered.open('obj', { headOnly: true }))?.body, undefined);
  assert.equal((await tiered.open('obj', { ifNoneMatch: [{ tag: etag, weak: false }] }))?.status, 304);
  await tiered.whenIdle();
  assert.equal(await memory.stat('obj'), undefined);
});

withFixture('an abandoned or failed read does not backfill', async ({ memory, disk }) => {
  const data = pseudoRandomBytes(4 * 1024 * 1024, 3);
  await put(disk, 'obj', data);
  const tiered = new TieredCache([memory, disk]);
  const result = await tiered.open('obj');
  assert.ok(result?.body);
  const iterator = result.body[Symbol.asyncIterator]();
  await iterator.next();
  result.body.destroy();
  await tiered.whenIdle();
  assert.equal(await memory.stat('obj'), undefined);

  const breaking = new TieredCache([memory, new FaultyCache(disk, { readBreakAfter: 1024 * 1024 })]);
  const broken = await breaking.open('obj');
  await assert.rejects(hashStream(broken?.body), /injected read failure/);
  await breaking.whenIdle();
  assert.equal(await memory.stat('obj'), undefined);
});

withFixture('a failing tier is an error, never a miss', async ({ memory, disk }) => {
  const failure = new Error('memory tier is broken');
  const faulty = new FaultyCache(memory, { stat: failure, open: failure });
  const tiered = new TieredCache([faulty, disk]);
  await put(disk, 'obj', 'present in the farther tier');
  await assert.rejects(tiered.open('obj'), /memory tier is broken/);
  await assert.rejects(tiered.stat('obj'), /memory tier is broken/);
  await assert.rejects(tiered.open('absent'), /memory tier is broken/);
  const authFailure = new FaultyCache(disk, { open: new Error('authoritative down') });
  await assert.rejects(new TieredCache([memory, authFailure]).open('obj'), /authoritative down/);
});

withFixture('writes go to every tier; the authoritative tier decides preconditions', async ({ memory, disk }) => {
  const tiered = new TieredCache([memory, disk]);
  const v1 = await put(tiered, 'k', 'v1');
  assert.equal((await memory.stat('k'))?.etag, v1.etag);
  assert.equal((await disk.stat('k'))?.etag, v1.etag);
  // The memory tier alone would accept this write; the authoritative disk tier refuses it.
  await memory.delete('k');
  await assert.rejects(put(tiered, 'k', 'loser', { ifNoneMatch: '*' }), AlreadyExistsError);
  assert.equal(await memory.stat('k'), undefined, 'a losing write leaves nothing in the local tier');
  const v2 = await put(tiered, 'k', 'v2', { ifMatch: v1.etag });
  assert.equal((await memory.stat('k'))?.etag, v2.etag);
  assert.equal((await disk.stat('k'))?.etag, v2.etag);
  assert.equal(await tiered.delete('k'), true);
  assert.equal(await memory.stat('k'), undefined);
  assert.equal(await disk.stat('k'), undefined);
});

withFixture('a local tier that cannot take a write loses its stale copy', async ({ memory, disk }) => {
  const faulty = new FaultyCache(memory);
  const tiered = new TieredCache([faulty, disk]);
  const v1 = await put(tiered, 'k', pseudoRandomBytes(50_000, 4));
  assert.equal((await memory.stat('k'))?.etag, v1.etag);

  faulty.faults = { create: new Error('memory create failed') };
  const v2 = await put(tiered, 'k', pseudoRandomBytes(50_000, 5), { ifMatch: v1.etag });
  assert.equal(await memory.stat('k'), undefined, 'old copy removed');
  assert.equal((await disk.stat('k'))?.etag, v2.etag);

  faulty.faults = {};
  await put(tiered, 'k', pseudoRandomBytes(50_000, 6)); // both tiers hold v3
  faulty.faults = { writeBreakAfter: 10_000 };
  const v4 = await put(tiered, 'k', pseudoRandomBytes(50_000, 7));
  assert.equal(await memory.stat('k'), undefined, 'copy broken mid-write removed');
  assert.equal((await tiered.stat('k'))?.etag, v4.etag);
});

withFixture('a broken authoritative write publishes nothing anywhere', async ({ memory, disk }) => {
  const tiered = new TieredCache([memory, new FaultyCache(disk, { writeBreakAfter: 1000 })]);
  await assert.rejects(put(tiered, 'k', pseudoRandomBytes(5000, 8)), /injected write failure/);
  assert.equal(await memory.stat('k'), undefined);
  assert.equal(await disk.stat('k'), undefined);
});

withFixture('a backfill that raced with a write is dropped', async ({ memory, disk }) => {
  const tiered = new TieredCache([memory, disk]);
  const old = pseudoRandomBytes(4 * 1024 * 1024, 9);
  await put(disk, 'k', old);
  const reading = await tiered.open('k');
  assert.equal(reading?.source, 'disk');
  const iterator = reading.body![Symbol.asyncIterator]();
  const first = await iterator.next();
  const fresh = await put(tiered, 'k', 'the new version');
  const rest = [Buffer.from(first.value as Uint8Array)];
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) rest.push(Buffer.from(next.value as Uint8Array));
  assert.equal(sha256(Buffer.concat(rest)), sha256(old), 'the reader still gets one whole version');
  await tiered.whenIdle();
  assert.equal((await memory.stat('k'))?.etag, fresh.etag, 'the old bytes never reach the local tier');
});

void test('TieredCache with three tiers backfills every nearer tier', { timeout: 60_000 }, async () => {
  const near = new MemoryCache({ limitBytes: 1e8 });
  const middle = new MemoryCache({ limitBytes: 1e8 });
  const far = new MemoryCache({ limitBytes: 1e8 });
  const tiers: Cache[] = [near, new FaultyCache(middle, {}, 'middle'), new FaultyCache(far, {}, 'far')];
  const tiered = new TieredCache(tiers);
  const data = pseudoRandomBytes(200_000, 10);
  await put(far, 'k', data);
  assert.ok((await readAll((await tiered.open('k'))?.body)).equals(data));
  await tiered.whenIdle();
  assert.equal((await near.stat('k'))?.etag, sha256(data));
  assert.equal((await middle.stat('k'))?.etag, sha256(data));
  await tiered.close();
});

/** A near tier that records whether anything was committed into it after it was closed. */
class ClosingProbe extends FaultyCache {
  closed = false;
  commits = 0;
  commitsAfterClose = 0;
  override async create(key: string, options?: CreateOptions): Promise<CacheWriter> {
    const writer = await super.create(key, options);
    const commit = writer.commit.bind(writer);
    writer.commit = async () => {
      const meta = await commit();
      this.commits++;
      if (this.closed) this.commitsAfterClose++;
      return meta;
    };
    return writer;
  }
  override async close(): Promise<void> {
    this.closed = true;
    await super.close();
  }
}

void test('close() waits for a backfill of a body read to the end, and drops one never read', { timeout: 60_000 }, async () => {
  const far = new MemoryCache({ limitBytes: 1e8 });
  const near = new ClosingProbe(new MemoryCache({ limitBytes: 1e8 }));
  const data = pseudoRandomBytes(2 * 1024 * 1024, 11);
  await put(far, 'read', data);
  await put(far, 'unread', data);
  const tiered = new TieredCache([near, far]);
  const read = await tiered.open('read');
  assert.ok((await readAll(read?.body)).equals(data));
  const unread = await tiered.open('unread');
  assert.ok(unread?.body);
  await tiered.close();
  assert.equal(near.commits, 1, 'the finished read was backfilled before close() returned');
  assert.equal(near.commitsAfterClose, 0);
  unread.body.destroy();
});
