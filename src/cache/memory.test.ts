import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryCache } from './memory.js';
import { pseudoRandomBytes, put, readAll, runCacheConformance, sha256 } from './testing/conformance.js';
import { BadRequestError } from '../util/errors.js';
import { ManualClock } from '../util/testing/manual-clock.js';

runCacheConformance('MemoryCache conformance', () => {
  const clock = new ManualClock();
  const cache = new MemoryCache({ limitBytes: 256 * 1024 * 1024, clock });
  return Promise.resolve({ cache, clock, cleanup: () => cache.close() });
});

void test('MemoryCache evicts the least recently used objects to stay under its limit', async () => {
  const cache = new MemoryCache({ limitBytes: 3000 });
  try {
    await put(cache, 'a', pseudoRandomBytes(1000, 1));
    await put(cache, 'b', pseudoRandomBytes(1000, 2));
    await put(cache, 'c', pseudoRandomBytes(1000, 3));
    assert.ok(await cache.stat('a')); // touching a makes b the least recently used
    await put(cache, 'd', pseudoRandomBytes(1000, 4));
    assert.equal(await cache.stat('b'), undefined);
    for (const key of ['a', 'c', 'd']) assert.ok(await cache.stat(key), key);
    assert.equal(cache.usedBytes, 3000);
  } finally {
    await cache.close();
  }
});

void test('MemoryCache drops an object larger than its limit but still removes the old version', async () => {
  const cache = new MemoryCache({ limitBytes: 1000 });
  try {
    await put(cache, 'big', 'small old version');
    const data = pseudoRandomBytes(5000, 5);
    const meta = await put(cache, 'big', data);
    assert.equal(meta.etag, sha256(data));
    assert.equal(await cache.stat('big'), undefined);
    assert.equal(cache.usedBytes, 0);
  } finally {
    await cache.close();
  }
});

void test('MemoryCache holds objects up to maxObjectBytes, below its limit', async () => {
  const cache = new MemoryCache({ limitBytes: 10_000, maxObjectBytes: 2000 });
  try {
    await put(cache, 'small', pseudoRandomBytes(2000, 6));
    const big = pseudoRandomBytes(2001, 7);
    const meta = await put(cache, 'big', big);
    assert.equal(meta.etag, sha256(big), 'the write of a too-big object still succeeds');
    assert.ok(await cache.stat('small'));
    assert.equal(await cache.stat('big'), undefined);
    assert.equal(cache.usedBytes, 2000);
    assert.equal(new MemoryCache({ limitBytes: 500, maxObjectBytes: 2000 }).maxObjectBytes, 500, 'never above the limit');
  } finally {
    await cache.close();
  }
});

void test('MemoryCache copies bytes so later changes to the caller buffer do not leak in', async () => {
  const cache = new MemoryCache({ limitBytes: 10_000 });
  try {
    const data = Buffer.from('original');
    const writer = await cache.create('copy');
    writer.stream.end(data);
    await writer.commit();
    data.write('MUTATED!');
    const result = await cache.open('copy');
    assert.equal((await readAll(result?.body)).toString(), 'original');
  } finally {
    await cache.close();
  }
});

void test('MemoryCache rejects keys outside the contract grammar', async () => {
  const cache = new MemoryCache({ limitBytes: 1000 });
  try {
    for (const key of ['', '../x', 'a//b', 'a/./b', 'sp ace', '/abs']) {
      await assert.rejects(cache.create(key), BadRequestError, key);
      await assert.rejects(cache.stat(key), BadRequestError, key);
    }
  } finally {
    await cache.close();
  }
});
