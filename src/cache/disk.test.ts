import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DiskCache } from './disk.js';
import { pseudoRandomBytes, put, readAll, runCacheConformance, sha256 } from './testing/conformance.js';
import { BadRequestError } from '../util/errors.js';
import { ManualClock } from '../util/testing/manual-clock.js';

async function tempRoot(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'cachew-disk-'));
}

runCacheConformance('DiskCache conformance', async () => {
  const root = await tempRoot();
  const clock = new ManualClock();
  const cache = await DiskCache.open({ root, limitBytes: 1024 * 1024 * 1024, clock });
  return {
    cache,
    clock,
    async cleanup() {
      await cache.close();
      // Every write, committed or not, must have left the temp directory empty.
      assert.deepEqual(await readdir(join(root, '.tmp')), []);
      await rm(root, { recursive: true, force: true });
    },
  };
});

void test('DiskCache keeps objects at human-readable paths and rebuilds its index at open', async () => {
  const root = await tempRoot();
  try {
    const data = pseudoRandomBytes(10_000, 1);
    const hex = sha256(data);
    const clock = new ManualClock();
    const first = await DiskCache.open({ root, limitBytes: 1e9, clock });
    await put(first, `blobs/sha256/${hex}`, data, { metadata: { kind: 'blob' } });
    await put(first, 'pointers/example.com/org/repo.json', '{"commit":"abc"}');
    await put(first, 'ttl/gone', 'soon', { ttlMs: 50 });
    await first.close();

    // The body is the head of the file at <root>/<key>.
    const onDisk = await readFile(join(root, 'blobs', 'sha256', hex));
    assert.ok(onDisk.subarray(0, data.length).equals(data));
    assert.equal(first.pathOf(`blobs/sha256/${hex}`), join(root, 'blobs', 'sha256', hex));

    await clock.advance(100);
    await writeFile(join(root, 'stray.txt'), 'an operator note, not a cache object');
    const second = await DiskCache.open({ root, limitBytes: 1e9, clock });
    try {
      const meta = await second.stat(`blobs/sha256/${hex}`);
      assert.equal(meta?.etag, hex);
      assert.deepEqual(meta?.metadata, { kind: 'blob' });
      const result = await second.open('pointers/example.com/org/repo.json');
      assert.equal((await readAll(result?.body)).toString(), '{"commit":"abc"}');
      assert.equal(await second.stat('ttl/gone'), undefined);
      await assert.rejects(stat(join(root, 'ttl', 'gone')), /ENOENT/); // expired files are removed at open
      assert.equal(await second.stat('stray.txt'), undefined);
      assert.equal(await readFile(join(root, 'stray.txt'), 'utf8'), 'an operator note, not a cache object');
    } finally {
      await second.close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

void test('DiskCache removes leftover temp files at open', async () => {
  const root = await tempRoot();
  try {
    await mkdir(join(root, '.tmp'), { recursive: true });
    await writeFile(join(root, '.tmp', 'crashed-write.part'), pseudoRandomBytes(1000, 2));
    const cache = await DiskCache.open({ root, limitBytes: 1e9 });
    try {
      assert.deepEqual(await readdir(join(root, '.tmp')), []);
      const listed = [];
      for await (const meta of cache.list('')) listed.push(meta);
      assert.equal(listed.length, 0);
    } finally {
      await cache.close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

void test('DiskCache evicts least recently used objects to its byte limit, across restarts too', async () => {
  const root = await tempRoot();
  try {
    const cache = await DiskCache.open({ root, limitBytes: 3500 });
    try {
      await put(cache, 'lru/a', pseudoRandomBytes(1000, 3));
      await put(cache, 'lru/b', pseudoRandomBytes(1000, 4));
      await put(cache, 'lru/c', pseudoRandomBytes(1000, 5));
      assert.ok(await cache.stat('lru/a')); // b is now the least recently used
      await put(cache, 'lru/d', pseudoRandomBytes(1000, 6));
      assert.equal(await cache.stat('lru/b'), undefined);
      await assert.rejects(stat(join(root, 'lru', 'b')), /ENOENT/);
      for (const key of ['lru/a', 'lru/c', 'lru/d']) assert.ok(await cache.stat(key), key);
      assert.ok(cache.usedBytes <= 3500);
    } finally {
      await cache.close();
    }
    const smaller = await DiskCache.open({ root, limitBytes: 2500 });
    try {
      const left: string[] = [];
      for await (const meta of smaller.list('lru/')) left.push(meta.key);
      assert.equal(left.length, 2);
      assert.ok(smaller.usedBytes <= 2500);
    } finally {
      await smaller.close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

void test('DiskCache sweeps expired objects in the background', async () => {
  const root = await tempRoot();
  try {
    const clock = new ManualClock();
    const cache = await DiskCache.open({ root, limitBytes: 1e9, sweepIntervalMs: 50, clock });
    try {
      await put(cache, 'sweep/x', 'bye', { ttlMs: 30 });
      await clock.advance(49);
      await stat(join(root, 'sweep', 'x')); // expired, but the sweep has not run yet
      await clock.advance(1);
      await assert.rejects(stat(join(root, 'sweep', 'x')), /ENOENT/);
      assert.equal(cache.usedBytes, 0);
    } finally {
      await cache.close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

void test('DiskCache rejects reserved and conflicting keys', async () => {
  const root = await tempRoot();
  try {
    const cache = await DiskCache.open({ root, limitBytes: 1e9 });
    try {
      await assert.rejects(cache.create('.tmp/x'), BadRequestError);
      await assert.rejects(cache.stat('../escape'), BadRequestError);
      await put(cache, 'conflict/file', 'x');
      await assert.rejects(put(cache, 'conflict/file/child', 'y'), BadRequestError);
      await put(cache, 'conflict/dir/child', 'z');
      await assert.rejects(put(cache, 'conflict/dir', 'w'), BadRequestError);
      assert.deepEqual(await readdir(join(root, '.tmp')), []);
    } finally {
      await cache.close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

void test('DiskCache reads a trailer longer than its first tail read, and objects smaller than that read', async () => {
  const root = await tempRoot();
  try {
    const cache = await DiskCache.open({ root, limitBytes: 1e9, clock: new ManualClock() });
    const metadata = { note: 'n'.repeat(10_000) };
    await put(cache, 'big/trailer', 'body', { metadata });
    await put(cache, 'tiny/object', 'x');
    const big = await cache.open('big/trailer');
    assert.deepEqual(big?.meta.metadata, metadata);
    assert.equal((await readAll(big!.body!)).toString(), 'body');
    const tiny = await cache.open('tiny/object');
    assert.equal((await readAll(tiny!.body!)).toString(), 'x');
    await cache.close();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
