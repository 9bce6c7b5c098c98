import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isObjectId, isObjectIdPrefix, isSha1ObjectId, isSha256Hex, objectIdAtStart } from './object-id.js';

const sha1 = 'a'.repeat(40);
const sha256 = 'b'.repeat(64);

void test('object ids: full SHA-1 or SHA-256, lowercase only', () => {
  assert.ok(isObjectId(sha1));
  assert.ok(isObjectId(sha256));
  for (const bad of ['A'.repeat(40), 'a'.repeat(39), 'a'.repeat(41), 'a'.repeat(63), `${sha1}\n`, 'g'.repeat(40), '', 42, undefined]) {
    assert.equal(isObjectId(bad), false, String(bad));
  }
  assert.ok(isSha1ObjectId(sha1));
  assert.equal(isSha1ObjectId(sha256), false);
});

void test('digests and abbreviations', () => {
  assert.ok(isSha256Hex(sha256));
  assert.equal(isSha256Hex(sha1), false);
  assert.ok(isObjectIdPrefix('abcd'));
  assert.equal(isObjectIdPrefix('abc'), false);
  assert.equal(isObjectIdPrefix('--all'), false);
});

void test('objectIdAtStart takes the longest id a line starts with', () => {
  assert.equal(objectIdAtStart(`${sha256} rest`), sha256);
  assert.equal(objectIdAtStart(`${sha1} HEAD`), sha1);
  assert.equal(objectIdAtStart('want nothing'), undefined);
});
