import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FLUSH_PKT, pktLine } from './pkt-line.js';
import { RefAnswerCache, isLsRefsRequest, type RefAnswerKey } from './ref-answers.js';

const key = (overrides: Partial<RefAnswerKey> = {}): RefAnswerKey => ({
  mirror: 'm1',
  refsVersion: 3,
  kind: 'advertise',
  gitProtocol: undefined,
  request: Buffer.alloc(0),
  ...overrides,
});

void test('an answer is found only under exactly its mirror, version, kind, protocol and request', () => {
  const cache = new RefAnswerCache();
  cache.set(key(), Buffer.from('answer'));
  assert.deepEqual(cache.get(key()), Buffer.from('answer'));
  for (const other of [
    key({ mirror: 'm2' }),
    key({ refsVersion: 4 }),
    key({ kind: 'ls-refs' }),
    key({ gitProtocol: 'version=2' }),
    key({ request: Buffer.from('x') }),
  ]) {
    assert.equal(cache.get(other), undefined, JSON.stringify({ ...other, request: other.request.toString() }));
  }
});

void test('answers over the entry limit are not kept; the least recently used go beyond the total', () => {
  const cache = new RefAnswerCache(10, 25);
  cache.set(key({ refsVersion: 1 }), Buffer.alloc(11));
  assert.equal(cache.size, 0);
  cache.set(key({ refsVersion: 1 }), Buffer.alloc(10));
  cache.set(key({ refsVersion: 2 }), Buffer.alloc(10));
  assert.ok(cache.get(key({ refsVersion: 1 })), 'touched: now the most recent');
  cache.set(key({ refsVersion: 3 }), Buffer.alloc(10));
  assert.equal(cache.size, 2);
  assert.equal(cache.get(key({ refsVersion: 2 })), undefined, 'the least recently used went');
  assert.ok(cache.get(key({ refsVersion: 1 })));
  assert.ok(cache.get(key({ refsVersion: 3 })));
});

void test('only a v2 ls-refs command counts as one', () => {
  assert.equal(isLsRefsRequest(Buffer.concat([pktLine('command=ls-refs\n'), pktLine('agent=git/2.39\n'), FLUSH_PKT])), true);
  assert.equal(isLsRefsRequest(Buffer.concat([pktLine('command=ls-refs'), FLUSH_PKT])), true);
  assert.equal(isLsRefsRequest(Buffer.concat([pktLine('command=fetch\n'), FLUSH_PKT])), false);
  assert.equal(isLsRefsRequest(Buffer.concat([pktLine('command=ls-refsX\n'), FLUSH_PKT])), false);
  assert.equal(isLsRefsRequest(Buffer.from('0032want 0000000000000000000000000000000000000000\n')), false);
  assert.equal(isLsRefsRequest(Buffer.from('zzzzcommand=ls-refs\n')), false);
  assert.equal(isLsRefsRequest(Buffer.from('00ff')), false, 'a length past the end');
  assert.equal(isLsRefsRequest(Buffer.alloc(0)), false);
});
