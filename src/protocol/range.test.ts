import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatContentRange, formatRange, parseContentRange, parseRange, rangeLength, resolveRange, type ByteRangeRequest } from './range.js';

void test('Range: parse and format are inverse for the three single-range forms', () => {
  const forms: Array<[string, ByteRangeRequest]> = [
    ['bytes=10-99', { kind: 'bounded', start: 10, end: 99 }],
    ['bytes=5-', { kind: 'open', start: 5 }],
    ['bytes=-7', { kind: 'suffix', length: 7 }],
  ];
  for (const [header, request] of forms) {
    assert.deepEqual(parseRange(header), request, header);
    assert.equal(formatRange(request), header);
  }
});

void test('Range: multi-range, malformed, reversed and huge ranges are ignored', () => {
  for (const header of [undefined, '', 'bytes=0-1,5-6', 'bytes=abc', 'bytes=-', 'items=0-1', 'bytes=9-3', `bytes=0-${'9'.repeat(20)}`]) {
    assert.equal(parseRange(header), undefined, String(header));
  }
});

void test('resolveRange follows RFC 9110 §14.1.2 arithmetic', () => {
  assert.deepEqual(resolveRange({ kind: 'bounded', start: 10, end: 99 }, 1000), { start: 10, end: 99 });
  assert.deepEqual(resolveRange({ kind: 'bounded', start: 990, end: 5000 }, 1000), { start: 990, end: 999 }, 'end clamped');
  assert.equal(resolveRange({ kind: 'bounded', start: 1000, end: 1000 }, 1000), undefined);
  assert.deepEqual(resolveRange({ kind: 'open', start: 999 }, 1000), { start: 999, end: 999 });
  assert.equal(resolveRange({ kind: 'open', start: 1000 }, 1000), undefined);
  assert.deepEqual(resolveRange({ kind: 'suffix', length: 7 }, 1000), { start: 993, end: 999 });
  assert.deepEqual(resolveRange({ kind: 'suffix', length: 5000 }, 1000), { start: 0, end: 999 }, 'a long suffix selects everything');
  assert.equal(resolveRange({ kind: 'suffix', length: 0 }, 1000), undefined);
  assert.equal(resolveRange({ kind: 'open', start: 0 }, 0), undefined, 'nothing in an empty object is satisfiable');
  assert.equal(resolveRange({ kind: 'suffix', length: 3 }, 0), undefined);
});

void test('Content-Range: format and parse', () => {
  assert.equal(formatContentRange({ start: 10, end: 99 }, 1000), 'bytes 10-99/1000');
  assert.equal(formatContentRange(undefined, 1000), 'bytes */1000');
  assert.deepEqual(parseContentRange('bytes 10-99/1000'), { start: 10, end: 99, size: 1000 });
  for (const value of [undefined, 'bytes */1000', 'bytes 99-10/1000', 'bytes 0-1000/1000', 'bytes 0-1/x', 'items 0-1/2']) {
    assert.equal(parseContentRange(value), undefined, String(value));
  }
  assert.equal(rangeLength({ start: 10, end: 99 }), 90);
});
