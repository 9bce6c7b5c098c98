import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bundlePath, formatRoute, immutableSnapshotPath, isRoute, parseRoute, stableSnapshotPath, type Route } from './routes.js';

const commit = 'a'.repeat(40);
const target = { host: '127.0.0.1:9000', repo: 'org/r.git' };

void test('every route formats to a URL that parses back to it', () => {
  const routes: Route[] = [
    { kind: 'liveness' },
    { kind: 'readiness' },
    { kind: 'metrics' },
    { kind: 'git.info-refs', target },
    { kind: 'git.upload-pack', target },
    { kind: 'git.receive-pack', target },
    { kind: 'git.forward', target, path: 'info/lfs/objects/batch' },
    { kind: 'git.forward', target: { host: 'h', repo: 'org/r' }, path: 'HEAD' },
    { kind: 'snapshot.stable', target },
    { kind: 'snapshot.immutable', target, commit },
    { kind: 'snapshot.immutable', target: { host: 'h', repo: 'a/b/c' }, commit: 'b'.repeat(64) },
    { kind: 'snapshot.bundle', target, base: commit },
    { kind: 'api.snapshots', target: { host: 'github.com', repo: 'a/b/c' } },
  ];
  for (const route of routes) assert.deepEqual(parseRoute(formatRoute(route)), route, formatRoute(route));
  assert.equal(stableSnapshotPath('h', 'org/r'), '/git/h/org/r/snapshot.tar.zst');
  assert.equal(immutableSnapshotPath('h', 'org/r', commit), `/git/h/org/r/snapshot/${commit}.tar.zst`);
  assert.equal(bundlePath('h', 'org/r', commit), `/git/h/org/r/snapshot.bundle?base=${commit}`);
});

void test('splits repo and action the way the router always did', () => {
  assert.deepEqual(parseRoute('/git/github.com/org/repo/info/refs?service=git-upload-pack'), {
    kind: 'git.info-refs',
    target: { host: 'github.com', repo: 'org/repo' },
  });
  assert.deepEqual(parseRoute('/git/h/a/b/c.git/git-upload-pack'), { kind: 'git.upload-pack', target: { host: 'h', repo: 'a/b/c.git' } });
  assert.deepEqual(parseRoute('/git/h/org/r.git/objects/info/packs'), { kind: 'git.forward', target: { host: 'h', repo: 'org/r.git' }, path: 'objects/info/packs' });
  assert.deepEqual(parseRoute('/git/h/org/r/info/lfs/x'), { kind: 'git.forward', target: { host: 'h', repo: 'org/r' }, path: 'info/lfs/x' });
  for (const url of ['/git/h/org/r', '/nope', '/api/v1/git/h/org/r/other', '/api/v1/git/h/snapshots', '/_liveness/x']) {
    const parsed = parseRoute(url);
    assert.ok(!isRoute(parsed) && parsed.problem === 'not_found', url);
  }
});

void test('hostile or malformed paths are bad requests', () => {
  const hostile = [
    '/git/h/org/../etc/info/refs',
    '/git/h/org/%2e%2e/info/refs',
    '/git/h/org/.hidden/info/refs',
    '/git/h/org//r/info/refs',
    `/git/h/${Array.from({ length: 9 }, () => 'a').join('/')}/info/refs`,
    `/git/h/${'a'.repeat(257)}/info/refs`,
    '/git/h/org/r%00/info/refs',
    '/git/h/org/r;x/info/refs',
    '/git/h/a\0b/info/refs',
    'http://evil/x',
    '/git/bad host/org/r/info/refs',
    '/git/h/org/r/snapshot/XYZ.tar.zst',
    `/git/h/org/r/snapshot/${'A'.repeat(40)}.tar.zst`,
    '/git/h/org/r/snapshot.bundle',
    '/git/h/org/r/snapshot.bundle?base=nope',
  ];
  for (const url of hostile) {
    const parsed = parseRoute(url);
    assert.ok(!isRoute(parsed) && parsed.problem === 'bad_request', url);
  }
});
