import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LruIndex, isExpired } from './lru-index.js';
import type { ObjectMeta } from './cache.js';

test('keeps recency order and a byte total through set, touch, replace and delete', () => {
  const meta: ObjectMeta = { key: 'k', size: 0, etag: 'e', lastModified: new Date(0), metadata: {} };
  const index = new LruIndex<{ size: number }>({ sizeOf: (e) => e.size, metaOf: () => meta, onExpired: () => {}, now: () => 0 });
  index.set('a', { size: 10 });
  index.set('b', { size: 20 });
  index.set('c', { size: 30 });
  assert.equal(index.totalBytes, 60);
  assert.equal(index.oldest()?.[0], 'a');
  index.touch('a');
  assert.equal(index.oldest()?.[0], 'b');
  index.set('b', { size: 5 }); // replace: new size, most recent
  assert.equal(index.totalBytes, 45);
  assert.deepEqual(index.snapshot().map(([k]) => k), ['c', 'a', 'b']);
  assert.equal(index.delete('c')?.size, 30);
  assert.equal(index.delete('c'), undefined);
  assert.equal(index.totalBytes, 15);
  assert.equal(index.size, 2);
  index.clear();
  assert.equal(index.totalBytes, 0);
  assert.equal(index.oldest(), undefined);
});

test('isExpired compares expiresAt with now', () => {
  const meta = (expiresAt?: Date): ObjectMeta => ({ key: 'k', size: 0, etag: 'e', lastModified: new Date(0), expiresAt, metadata: {} });
  assert.equal(isExpired(meta(), 0), false);
  assert.equal(isExpired(meta(new Date(1000)), 999), false);
  assert.equal(isExpired(meta(new Date(1000)), 1000), true);
});

test('live() hands expired entries to onExpired; use() also refreshes recency', () => {
  const expired: string[] = [];
  type E = { meta: ObjectMeta };
  const entry = (expiresAt?: Date): E => ({ meta: { key: 'k', size: 1, etag: 'e', lastModified: new Date(0), expiresAt, metadata: {} } });
  const index: LruIndex<E> = new LruIndex<E>({ sizeOf: () => 1, metaOf: (e) => e.meta, onExpired: (key) => { expired.push(key); index.delete(key); }, now: () => 5000 });
  index.set('old', entry(new Date(4999)));
  index.set('a', entry());
  index.set('b', entry());
  assert.equal(index.live('old'), undefined);
  assert.deepEqual(expired, ['old']);
  assert.equal(index.size, 2);
  assert.ok(index.use('a'));
  assert.equal(index.oldest()?.[0], 'b');
  assert.ok(index.live('b'));
  assert.equal(index.oldest()?.[0], 'b', 'live() does not refresh recency');
});
