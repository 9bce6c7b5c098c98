import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRepoPath, splitRawUrl } from './paths.js';
import { BadRequestError } from '../util/errors.js';

const parse = (path: string) => parseRepoPath(splitRawUrl(path).segments.slice(1));

test('splits repo and action', () => {
  assert.deepEqual(parse('/git/github.com/org/repo/info/refs?service=git-upload-pack'), {
    host: 'github.com', repo: 'org/repo', canonicalRepo: 'org/repo', action: 'info/refs',
  });
  assert.equal(parse('/git/h/a/b/c.git/git-upload-pack')?.repo, 'a/b/c.git');
  assert.equal(parse('/git/h/a/b/c.git/git-upload-pack')?.canonicalRepo, 'a/b/c');
  assert.equal(parse('/git/127.0.0.1:9000/org/r.git/snapshot.tar.zst')?.action, 'snapshot.tar.zst');
  assert.equal(parse(`/git/h/org/r/snapshot/${'a'.repeat(40)}.tar.zst`)?.action, `snapshot/${'a'.repeat(40)}.tar.zst`);
  assert.equal(parse('/git/h/org/r.git/info/lfs/objects/batch')?.action, 'info/lfs/objects/batch');
  assert.equal(parse('/git/h/org/r/snapshot.bundle?base=x')?.action, 'snapshot.bundle');
  assert.equal(parse('/git/h/org/r'), undefined);
});

test('hostile paths are 400', () => {
  const hostile = [
    '/git/h/org/../etc/info/refs',
    '/git/h/org/%2e%2e/info/refs',
    '/git/h/org/.hidden/info/refs',
    '/git/h/org//r/info/refs',
    `/git/h/${Array.from({ length: 9 }, () => 'a').join('/')}/info/refs`,
    `/git/h/${'a'.repeat(257)}/info/refs`,
    '/git/h/org/r%00/info/refs',
    '/git/h/org/r;x/info/refs',
  ];
  for (const path of hostile) {
    assert.throws(() => parse(path), BadRequestError, path);
  }
  assert.throws(() => splitRawUrl('/git/h/a\0b/info/refs'), BadRequestError);
  assert.throws(() => splitRawUrl('http://evil/x'), BadRequestError);
});
