import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryCache } from '../cache/memory.js';
import { writeStream } from '../cache/write.js';
import { BadRequestError } from '../util/errors.js';
import {
  CorruptRecordError,
  bundlePrefix,
  commitFromRecordKey,
  parseBundleRecord,
  parseSnapshotRecord,
  rangeFromBundleKey,
  readJson,
  readSnapshotRecord,
  recordKey,
  recordPrefix,
  storageHost,
} from './records.js';
import { parsePointer, pointerKey } from './pointer.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(64);

void test('keys are canonical, validated and injective for host:port', () => {
  assert.equal(storageHost('127.0.0.1:9000'), '127.0.0.1_9000');
  assert.throws(() => storageHost('a_b'), BadRequestError);
  assert.throws(() => storageHost('.evil'), BadRequestError);
  assert.equal(recordKey('h.example', 'g/s/r.git', A), `records/h.example/g/s/r/${A}.json`);
  assert.equal(pointerKey('h.example', 'g/r'), 'pointers/h.example/g/r.json');
  assert.throws(() => recordKey('h', 'g/../r', A), BadRequestError);
  assert.throws(() => recordKey('h', '.git', A), BadRequestError);
  assert.throws(() => recordKey('h', 'g/r', 'A'.repeat(40)), BadRequestError);
});

void test('listed keys map back to commits and ranges; nested repositories are ignored', () => {
  const prefix = recordPrefix('h', 'g/r');
  assert.equal(commitFromRecordKey(prefix, `${prefix}${A}.json`), A);
  assert.equal(commitFromRecordKey(prefix, `${prefix}${B}.json`), B);
  assert.equal(commitFromRecordKey(prefix, `${prefix}sub/${A}.json`), undefined);
  assert.equal(commitFromRecordKey(prefix, `${prefix}${A}.txt`), undefined);
  const bundles = bundlePrefix('h', 'g/r');
  assert.deepEqual(rangeFromBundleKey(bundles, `${bundles}${A}..${B}.json`), { base: A, head: B });
  assert.equal(rangeFromBundleKey(bundles, `${bundles}${A}..${B}..${A}.json`), undefined);
  assert.equal(rangeFromBundleKey(bundles, `${bundles}x/${A}..${B}.json`), undefined);
});

void test('corrupt records are reported as such, never half-parsed', async () => {
  const cache = new MemoryCache({ limitBytes: 8 << 20 });
  try {
    const key = recordKey('h', 'g/r', A);
    await writeStream(cache, key, ['not json']);
    await assert.rejects(readSnapshotRecord(cache, 'h', 'g/r', A), CorruptRecordError);
    await cache.delete(key);
    await writeStream(cache, key, [JSON.stringify({ commit: A, digest: 'x', size: 1, created: 'now' })]);
    await assert.rejects(readSnapshotRecord(cache, 'h', 'g/r', A), /bad field "digest"/);
    await cache.delete(key);
    await writeStream(cache, key, [Buffer.alloc(2 << 20, 32)]);
    await assert.rejects(readJson(cache, key, () => 1), /larger than/);
    assert.equal(await readSnapshotRecord(cache, 'h', 'g/r', B), undefined);
    assert.throws(() => parsePointer({ commit: A, digest: B, updated: 'x' }, 'k'), CorruptRecordError);
    assert.deepEqual(parsePointer({ commit: A, digest: B, updated: '2024-01-01T00:00:00Z' }, 'k').superseded, []);
  } finally {
    await cache.close();
  }
});

void test('record parsers keep the described fields, leave absent optional ones out and name a bad one', () => {
  const created = '2024-01-01T00:00:00Z';
  const frame = { offset: 0, length: 9, size: 512, sha256: B };
  assert.deepEqual(parseSnapshotRecord({ commit: A, digest: B, size: 9, created, frames: [{ ...frame, extra: 1 }], extra: true }, 'k'), {
    commit: A,
    digest: B,
    size: 9,
    created,
    frames: [frame],
  });
  assert.throws(() => parseSnapshotRecord({ commit: A, digest: B, size: 9, created, format: 5 }, 'k'), /bad field "format"/);
  assert.throws(() => parseSnapshotRecord({ commit: A, digest: B, size: 9, created, frames: [{ ...frame, size: -1 }] }, 'k'), /bad field "size"/);
  assert.throws(() => parseSnapshotRecord({ commit: A, digest: B, size: 9, created, frames: {} }, 'k'), /bad field "frames"/);
  assert.deepEqual(parseBundleRecord({ base: A, head: A, digest: B, size: 1, created, expires: created }, 'k').expires, created);
  assert.throws(() => parseBundleRecord({ base: A, head: 'HEAD', digest: B, size: 1, created }, 'k'), /bad field "head"/);
  assert.throws(() => parseBundleRecord([A], 'k'), /not a JSON object/);
});
