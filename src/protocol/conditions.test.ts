import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evaluateConditions, formatConditions, formatHttpDate, parseConditions, type Conditions } from './conditions.js';

const etag = 'a'.repeat(64);
const other = 'b'.repeat(64);
const lastModified = new Date('2026-01-02T03:04:05.678Z');
const validators = { etag, lastModified, size: 1000 };
const range = { kind: 'bounded', start: 0, end: 9 } as const;
const strong = (tag: string) => [{ tag, weak: false }];
const before = new Date(lastModified.getTime() - 60_000);
const after = new Date(lastModified.getTime() + 60_000);

void test('parseConditions reads every header; formatConditions writes them back', () => {
  const conditions: Conditions = {
    ifMatch: strong(etag),
    ifUnmodifiedSince: new Date('2026-01-02T03:04:05Z'),
    ifNoneMatch: [{ tag: other, weak: true }],
    ifModifiedSince: new Date('2026-01-01T00:00:00Z'),
    ifRange: { tag: etag, weak: false },
    range: { kind: 'open', start: 5 },
  };
  const headers = formatConditions(conditions);
  assert.deepEqual(headers, {
    'if-match': `"${etag}"`,
    'if-unmodified-since': 'Fri, 02 Jan 2026 03:04:05 GMT',
    'if-none-match': `W/"${other}"`,
    'if-modified-since': 'Thu, 01 Jan 2026 00:00:00 GMT',
    'if-range': `"${etag}"`,
    range: 'bytes=5-',
  });
  assert.deepEqual(parseConditions(headers, 'GET'), conditions);
  assert.deepEqual(parseConditions({ 'if-match': '*', 'if-none-match': '*' }), { ifMatch: '*', ifNoneMatch: '*' });
  const dateRange = parseConditions({ 'if-range': formatHttpDate(lastModified), range: 'bytes=0-1' });
  assert.ok(dateRange.ifRange instanceof Date);
});

void test('parseConditions ignores what the RFC says to ignore', () => {
  assert.deepEqual(parseConditions({ range: 'bytes=0-9', 'if-modified-since': formatHttpDate(before) }, 'HEAD'), {
    ifModifiedSince: new Date(Math.floor(before.getTime() / 1000) * 1000),
  });
  assert.deepEqual(parseConditions({ range: 'bytes=0-9', 'if-modified-since': formatHttpDate(before) }, 'PUT'), {}, 'no Range or If-Modified-Since on PUT');
  assert.deepEqual(parseConditions({ 'if-modified-since': 'yesterday', 'if-unmodified-since': 'soon' }), {}, 'invalid dates');
  assert.deepEqual(parseConditions({ 'if-range': 'garbage' }).ifRange, { tag: '', weak: true }, 'an unusable If-Range never matches');
});

void test('RFC 9110 §13.2.2: If-Match, then If-Unmodified-Since', () => {
  assert.deepEqual(evaluateConditions(validators, { ifMatch: strong(other), range }), { status: 412, failed: 'If-Match' });
  assert.deepEqual(evaluateConditions(validators, { ifMatch: [{ tag: etag, weak: true }] }), { status: 412, failed: 'If-Match' });
  assert.deepEqual(evaluateConditions(validators, { ifMatch: '*', range }), { status: 206, range: { start: 0, end: 9 } });
  assert.deepEqual(evaluateConditions(validators, { ifUnmodifiedSince: before }), { status: 412, failed: 'If-Unmodified-Since' });
  assert.deepEqual(evaluateConditions(validators, { ifUnmodifiedSince: after }), { status: 200 });
  // The same second as Last-Modified (HTTP dates have no milliseconds) is not "modified since".
  assert.deepEqual(evaluateConditions(validators, { ifUnmodifiedSince: new Date('2026-01-02T03:04:05Z') }), { status: 200 });
  assert.deepEqual(evaluateConditions(validators, { ifMatch: strong(etag), ifUnmodifiedSince: before }), { status: 200 }, 'If-Match present: If-Unmodified-Since is ignored');
  assert.deepEqual(evaluateConditions({ etag, size: 1000 }, { ifUnmodifiedSince: before }), { status: 200 }, 'no Last-Modified: no date check');
  // 412 comes before 416.
  assert.equal(evaluateConditions(validators, { ifMatch: strong(other), range: { kind: 'open', start: 5000 } }).status, 412);
});

void test('RFC 9110 §13.2.2: If-None-Match, then If-Modified-Since', () => {
  assert.deepEqual(evaluateConditions(validators, { ifNoneMatch: strong(etag), range }), { status: 304 });
  assert.deepEqual(evaluateConditions(validators, { ifNoneMatch: [{ tag: etag, weak: true }] }), { status: 304 }, 'weak comparison');
  assert.deepEqual(evaluateConditions(validators, { ifNoneMatch: strong(other) }), { status: 200 });
  assert.deepEqual(evaluateConditions(validators, { ifModifiedSince: new Date('2026-01-02T03:04:05Z') }), { status: 304 });
  assert.deepEqual(evaluateConditions(validators, { ifModifiedSince: after }), { status: 304 });
  assert.deepEqual(evaluateConditions(validators, { ifModifiedSince: before, range }), { status: 206, range: { start: 0, end: 9 } });
  assert.deepEqual(evaluateConditions(validators, { ifNoneMatch: strong(other), ifModifiedSince: after }), { status: 200 }, 'If-None-Match present: If-Modified-Since is ignored');
  assert.deepEqual(evaluateConditions(validators, { ifUnmodifiedSince: before, ifNoneMatch: strong(etag) }).status, 412, '412 before 304');
});

void test('RFC 9110 §13.2.2: If-Range decides whether the Range applies', () => {
  assert.deepEqual(evaluateConditions(validators, { ifRange: { tag: etag, weak: false }, range }), { status: 206, range: { start: 0, end: 9 } });
  assert.deepEqual(evaluateConditions(validators, { ifRange: { tag: other, weak: false }, range }), { status: 200 });
  assert.deepEqual(evaluateConditions(validators, { ifRange: { tag: etag, weak: true }, range }), { status: 200 }, 'weak tags never match');
  assert.deepEqual(evaluateConditions(validators, { ifRange: lastModified, range }), { status: 200 }, 'dates never match');
  assert.deepEqual(evaluateConditions(validators, { ifRange: { tag: other, weak: false }, range: { kind: 'open', start: 5000 } }), { status: 200 }, 'no 416 when the Range is dropped');
  assert.deepEqual(evaluateConditions(validators, { range: { kind: 'open', start: 5000 } }), { status: 416 });
  assert.deepEqual(evaluateConditions(validators, { ifRange: { tag: other, weak: false } }), { status: 200 }, 'If-Range without Range');
});
