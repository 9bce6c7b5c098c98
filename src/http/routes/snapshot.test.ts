/**
 * The snapshot routes without a socket: a real SnapshotStore on a memory cache behind the handler,
 * a stand-in for the service's mirror work, and a recorded response (http/testing/fake-exchange.ts).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryCache } from '../../cache/memory.js';
import { SnapshotStore } from '../../storage/store.js';
import type { SnapshotRecord } from '../../storage/records.js';
import { callRepoHandler } from '../testing/fake-exchange.js';
import { createSnapshotRoutes } from './snapshot.js';

const HOST = 'example.com';
const BASE = `/git/${HOST}/org/repo`;
const COMMIT = 'c'.repeat(40);
const HEAD_COMMIT = 'd'.repeat(40);
const CREATED = Date.parse('2024-01-02T03:04:05Z');

void describe('snapshot routes (socket-free)', () => {
  let dir: string;
  let cache: MemoryCache;
  let bytes: Buffer;
  let record: SnapshotRecord;
  let aheadHead: string | undefined;
  let handler: ReturnType<typeof createSnapshotRoutes>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cachew-snapshot-route-'));
    cache = new MemoryCache({ limitBytes: 16 << 20 });
    const store = new SnapshotStore({ cache, graceMs: 60_000, now: () => CREATED });
    bytes = randomBytes(3000);
    const file = join(dir, 'snap.tar.zst');
    await writeFile(file, bytes);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    record = await store.publish({ host: HOST, repo: 'org/repo', commit: COMMIT, file, sha256, size: bytes.length });
    const service = {
      current: () => Promise.resolve({ record, aheadHead }),
      bundle: () => Promise.resolve(undefined),
    };
    handler = createSnapshotRoutes({ service, reader: store });
  });

  after(async () => {
    await cache.close();
    await rm(dir, { recursive: true, force: true });
  });

  const immutable = `${BASE}/snapshot/${COMMIT}.tar.zst`;

  void test('the immutable URL: the whole archive with the SPEC §4 headers', async () => {
    const res = await callRepoHandler(handler, { url: immutable });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.body, bytes);
    const h = res.headers;
    assert.equal(h.etag, `"${record.digest}"`);
    assert.equal(h['repr-digest'], `sha-256=:${Buffer.from(record.digest, 'hex').toString('base64')}:`);
    assert.equal(h['x-cachew-snapshot-commit'], COMMIT);
    assert.equal(h['content-type'], 'application/zstd');
    assert.equal(h['content-length'], '3000');
    assert.equal(h['last-modified'], new Date(CREATED).toUTCString());
    assert.equal(h['accept-ranges'], 'bytes');
    assert.equal(h['cache-control'], 'public, max-age=31536000, immutable');
  });

  void test('Range, If-None-Match, If-Match, If-Modified-Since and HEAD', async () => {
    const ranged = await callRepoHandler(handler, { url: immutable, headers: { range: 'bytes=10-19' } });
    assert.equal(ranged.statusCode, 206);
    assert.equal(ranged.headers['content-range'], 'bytes 10-19/3000');
    assert.deepEqual(ranged.body, bytes.subarray(10, 20));

    const notModified = await callRepoHandler(handler, { url: immutable, headers: { 'if-none-match': `"${record.digest}"` } });
    assert.equal(notModified.statusCode, 304);
    assert.equal(notModified.body.length, 0);
    assert.equal(notModified.headers.etag, `"${record.digest}"`);

    const since = await callRepoHandler(handler, { url: immutable, headers: { 'if-modified-since': new Date(CREATED).toUTCString() } });
    assert.equal(since.statusCode, 304, 'dates compare with the record, not the cache entry');

    const failed = await callRepoHandler(handler, { url: immutable, headers: { 'if-match': '"other"', range: 'bytes=0-1' } });
    assert.equal(failed.statusCode, 412, 'If-Match is checked before Range');
    assert.equal(failed.headers.etag, `"${record.digest}"`, 'a 412 still names the object');

    const head = await callRepoHandler(handler, { method: 'HEAD', url: immutable });
    assert.equal(head.statusCode, 200);
    assert.equal(head.headers['content-length'], '3000');
    assert.equal(head.body.length, 0);
  });

  void test('unsatisfiable range 416, unknown commit 404, other methods 405', async () => {
    const unsatisfiable = await callRepoHandler(handler, { url: immutable, headers: { range: 'bytes=5000-' } });
    assert.equal(unsatisfiable.statusCode, 416);
    assert.equal(unsatisfiable.headers['content-range'], 'bytes */3000');
    assert.equal(unsatisfiable.headers.etag, `"${record.digest}"`);
    const unknown = await callRepoHandler(handler, { url: `${BASE}/snapshot/${'e'.repeat(40)}.tar.zst` });
    assert.equal(unknown.statusCode, 404);
    const post = await callRepoHandler(handler, { method: 'POST', url: immutable });
    assert.equal(post.statusCode, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
  });

  void test('the stable URL names the immutable one, and the bundle when the mirror is ahead', async () => {
    aheadHead = undefined;
    const current = await callRepoHandler(handler, { url: `${BASE}.git/snapshot.tar.zst` });
    assert.equal(current.statusCode, 200);
    assert.deepEqual(current.body, bytes);
    assert.equal(current.headers['content-location'], `/git/${HOST}/org/repo.git/snapshot/${COMMIT}.tar.zst`);
    assert.equal(current.headers['cache-control'], 'no-cache');
    assert.equal(current.headers['x-cachew-bundle-url'], undefined);

    aheadHead = HEAD_COMMIT;
    const lagging = await callRepoHandler(handler, { url: `${BASE}/snapshot.tar.zst` });
    assert.equal(lagging.headers['x-cachew-bundle-url'], `/git/${HOST}/org/repo/snapshot.bundle?base=${COMMIT}`);

    const already = await callRepoHandler(handler, { url: `${BASE}/snapshot.bundle?base=${COMMIT}` });
    assert.equal(already.statusCode, 204, 'no bundle: already current');
  });
});
