/**
 * End-to-end `--s3-redirect` against moto_server: GETs of immutable snapshot URLs answer 307 to a
 * presigned S3 URL of the blob while HEAD, conditionals and the stable URL stay with cachewd; the
 * restore client follows the redirect for its ranged GETs without our ETag preconditions, verifies
 * the digest, and asks cachewd again when S3 refuses an expired URL.
 *
 * moto does not check presigned URLs' expiry, so S3 traffic goes through a gate that does
 * (harness/s3-expiry-gate.ts). cachewd's signing clock and the gate's clock are one test clock, so
 * "time passes" by moving it, never by sleeping.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { createBucket, startMoto, type MotoServer } from './harness/moto.js';
import { startS3ExpiryGate, type S3ExpiryGate } from './harness/s3-expiry-gate.js';
import { startFaultProxy, type FaultProxy } from './harness/fault-proxy.js';
import { restore } from '../src/client/restore.js';

const BUCKET = 'redirects';
const TTL_MS = 5 * 60_000;

let upstream: Upstream;
let moto: MotoServer;
let gate: S3ExpiryGate;
let cachew: TestCachew;
let tmp: string;
let repoUrl: string;
let immutablePath: string;
let digest: string;
let size: number;
/** How far the test clock is ahead of the real one (cachewd's signing clock and the gate's). */
let skewMs = 0;
/** Signing times handed out next, before the clock's own (to sign already-expired URLs). */
const signingOverrides: number[] = [];
const clock = (): number => Date.now() + skewMs;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cachew-s3-redirect-'));
  upstream = await startUpstream();
  const files: Record<string, string> = {};
  // Incompressible enough that the archive spans many 32 KiB ranges.
  for (let i = 0; i < 8; i++) files[`data/f${i}.txt`] = randomBytes(48 * 1024).toString('base64');
  repoUrl = (await upstream.createRepo('org/big', files)).replace(/\.git$/, '');
  moto = await startMoto();
  await createBucket(moto, BUCKET);
  gate = await startS3ExpiryGate(moto.endpoint, clock);
  process.env.AWS_ACCESS_KEY_ID = moto.credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = moto.credentials.secretAccessKey;
  cachew = await startCachew(
    [upstream],
    { s3: { bucket: BUCKET, endpoint: gate.url, region: moto.region, prefix: 'cachew' }, s3Redirect: true, s3RedirectTtlMs: TTL_MS },
    { presignClock: () => signingOverrides.shift() ?? clock() },
  );
  const made = await fetch(`${cachew.url}/api/v1/git/${upstream.hostName}/org/big/snapshots`, { method: 'POST' });
  assert.equal(made.status, 200, await made.clone().text());
  const body = (await made.json()) as { url: string; digest: string; size: number };
  immutablePath = body.url;
  digest = body.digest;
  size = body.size;
  assert.ok(size > 8 * 32 * 1024, `archive of ${size} bytes is too small for this test`);
});

after(async () => {
  await cachew?.stop();
  await gate?.stop();
  await moto?.stop();
  await upstream?.stop();
  await rm(tmp, { recursive: true, force: true });
});

const blobGets = (): typeof gate.requests => gate.requests.filter((r) => r.presigned && r.method === 'GET');

test('GET of an immutable URL is a 307 to S3; HEAD, conditionals and the stable URL stay with cachewd', { timeout: 120_000 }, async () => {
  const url = `${cachew.url}${immutablePath}`;
  const redirect = await fetch(url, { redirect: 'manual', headers: { range: 'bytes=0-99' } });
  assert.equal(redirect.status, 307);
  assert.equal(redirect.headers.get('cache-control'), 'no-store');
  assert.equal(redirect.headers.get('etag'), `"${digest}"`);
  const location = new URL(redirect.headers.get('location')!);
  assert.equal(location.origin, gate.url);
  assert.match(location.pathname, new RegExp(`/${BUCKET}/cachew/blobs/sha256/${digest}$`));
  assert.equal(location.searchParams.get('X-Amz-Expires'), String(TTL_MS / 1000));

  // The location serves the blob's bytes, ranges included.
  const ranged = await fetch(location, { headers: { range: 'bytes=10-19' } });
  assert.equal(ranged.status, 206);
  assert.equal(ranged.headers.get('content-range'), `bytes 10-19/${size}`);
  const direct = await fetch(url, { method: 'HEAD' });
  assert.equal(direct.status, 200);
  assert.equal(direct.headers.get('etag'), `"${digest}"`);
  assert.equal(direct.headers.get('content-length'), String(size));
  assert.equal(direct.headers.get('cache-control'), 'public, max-age=31536000, immutable');
  assert.ok(direct.headers.get('x-cachew-snapshot-commit'));

  // Preconditions are still cachewd's to answer.
  assert.equal((await fetch(url, { redirect: 'manual', headers: { 'if-none-match': `"${digest}"` } })).status, 304);
  assert.equal((await fetch(url, { redirect: 'manual', headers: { 'if-match': '"0000"' } })).status, 412);

  // The stable URL is served by cachewd itself, with its headers.
  const stable = await fetch(`${cachew.url}/git/${upstream.hostName}/org/big/snapshot.tar.zst`, { headers: { range: 'bytes=0-9' } });
  assert.equal(stable.status, 206);
  assert.equal(stable.headers.get('etag'), `"${digest}"`);
  assert.equal(stable.headers.get('content-location'), immutablePath);
  await stable.arrayBuffer();
});

test('restore follows the redirect for every ranged GET, sends S3 no ETag preconditions, verifies the digest', { timeout: 180_000 }, async () => {
  const proxy: FaultProxy = await startFaultProxy(cachew.url, () => undefined);
  const before = blobGets().length;
  try {
    const result = await restore({ repoUrl, dir: join(tmp, 'one'), serverUrl: proxy.url, chunkSize: 32 * 1024, concurrency: 4 });
    assert.equal(result.digest, digest);
    const toS3 = blobGets().slice(before);
    // Everything after the first chunk (which the stable URL answers) came from S3, in ranges.
    const covered = toS3.reduce((sum, r) => {
      const [, a, b] = /^bytes=(\d+)-(\d+)$/.exec(r.range ?? '') ?? [];
      assert.ok(a !== undefined, `S3 request without a bounded Range: ${r.range}`);
      return sum + Number(b) - Number(a) + 1;
    }, 0);
    assert.equal(covered, size - 32 * 1024);
    assert.ok(toS3.length >= 8, `${toS3.length} ranged GETs to S3`);
    for (const r of toS3) {
      assert.equal(r.ifMatch, undefined);
      assert.equal(r.ifRange, undefined);
      assert.equal(r.status, 206);
    }
    // cachewd was asked for the location, not for the bytes: at most one 307 per range.
    const immutableGets = proxy.requests.filter((r) => r.path === immutablePath);
    assert.ok(immutableGets.length >= 1 && immutableGets.length <= toS3.length, `${immutableGets.length} GETs of the immutable URL`);
    assert.ok((result.stats.redirects ?? 0) >= 1);
    assert.equal(result.stats.expiredRedirects ?? 0, 0);
  } finally {
    await proxy.stop();
  }
});

test('an expired presigned URL is refused by S3 and re-resolved through cachewd', { timeout: 180_000 }, async () => {
  // Time passes (cachewd would reuse a URL signed less than half a TTL ago), and the next location
  // cachewd hands out was signed an hour before: expired on arrival.
  skewMs += TTL_MS;
  signingOverrides.push(clock() - 60 * 60_000);
  const before = blobGets().length;
  const result = await restore({ repoUrl, dir: join(tmp, 'expired-at-once'), serverUrl: cachew.url, chunkSize: 32 * 1024, concurrency: 1 });
  assert.equal(result.digest, digest);
  const toS3 = blobGets().slice(before);
  assert.equal(toS3[0].status, 403, 'the first S3 request used the expired URL');
  assert.ok(toS3.slice(1).every((r) => r.status === 206));
  assert.equal(result.stats.expiredRedirects, 1);
  assert.equal(result.stats.redirects, 2);
});

test('a URL that expires in the middle of a download is re-resolved; no byte is lost or repeated', { timeout: 180_000 }, async () => {
  const before = blobGets().length;
  let moved = false;
  const dir = join(tmp, 'expires-midway');
  const result = await restore({
    repoUrl,
    dir,
    serverUrl: cachew.url,
    chunkSize: 32 * 1024,
    concurrency: 2,
    onProgress: (progress) => {
      // Once a few ranges arrived, the TTL passes: every URL handed out so far is now expired.
      if (!moved && progress.bytes > 4 * 32 * 1024) {
        moved = true;
        skewMs += TTL_MS + 60_000;
      }
    },
  });
  assert.equal(result.digest, digest);
  assert.ok(moved);
  const toS3 = blobGets().slice(before);
  assert.ok(toS3.some((r) => r.status === 403), 'some range met the expired URL');
  assert.ok((result.stats.expiredRedirects ?? 0) >= 1);
  assert.ok((result.stats.redirects ?? 0) >= 2);
});
