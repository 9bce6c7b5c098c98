/**
 * End-to-end determinism and first-writer-wins across replicas: independent servers with independent,
 * differently packed mirrors produce byte-identical snapshots; a server regenerating after losing its
 * storage produces the same bytes; replicas sharing S3 agree on one record.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { ManualClock } from '../src/util/testing/manual-clock.js';
import { createBucket, startMoto, type MotoServer } from './harness/moto.js';
import { get } from './harness/http.js';

let upstream: Upstream;
const servers: TestCachew[] = [];
let moto: MotoServer | undefined;

before(async () => {
  upstream = await startUpstream();
  await upstream.createRepo('org/det', { 'a.txt': 'a\n', 'b/c.txt': 'c\n', 'run.sh': { content: 'echo\n', mode: '100755' } });
  for (let i = 0; i < 5; i++) await upstream.commit('org/det', { [`f${i}.txt`]: `${i}\n`.repeat(100 * (i + 1)) });
});
after(async () => {
  for (const s of servers) await s.stop();
  await upstream?.stop();
  await moto?.stop();
});

async function etagOf(s: TestCachew): Promise<string> {
  const res = await get(`${s.url}/git/${upstream.hostName}/org/det/snapshot.tar.zst`, {}, 'HEAD');
  assert.equal(res.status, 200);
  return res.headers.get('etag')!;
}

test('independent replicas with differently packed mirrors produce identical snapshots', { timeout: 180_000 }, async () => {
  const a = await startCachew([upstream]);
  const b = await startCachew([upstream]);
  servers.push(a, b);
  // Make B clone its mirror, then repack it very differently before it generates anything.
  assert.equal((await get(`${b.url}/git/${upstream.hostName}/org/det/info/refs?service=git-upload-pack`)).status, 200);
  const mirrorB = join(b.stateDir, 'mirrors', upstream.hostName, 'org/det.git');
  execFileSync('git', ['-C', mirrorB, 'repack', '-adf', '--window=250', '--depth=5', '--threads=2'], { stdio: 'ignore' });
  const etagA = await etagOf(a);
  const etagB = await etagOf(b);
  assert.equal(etagA, etagB);

  // The same replica after losing its stored snapshot regenerates the same bytes.
  const stateDir = a.stateDir;
  await a.server.close();
  await rm(join(stateDir, 'cache'), { recursive: true, force: true });
  const a2 = await startCachew([upstream], {}, { stateDir });
  servers.push(a2);
  assert.equal(await etagOf(a2), etagA);
});

test('replicas sharing S3: concurrent snapshot requests agree on one record', { timeout: 180_000 }, async () => {
  moto = await startMoto();
  await createBucket(moto, 'shared');
  process.env.AWS_ACCESS_KEY_ID = moto.credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = moto.credentials.secretAccessKey;
  const s3 = { bucket: 'shared', endpoint: moto.endpoint, region: moto.region, prefix: 'cachew' };
  const clock1 = new ManualClock();
  const r1 = await startCachew([upstream], { s3 }, { clock: clock1 });
  const r2 = await startCachew([upstream], { s3 });
  servers.push(r1, r2);
  const post = (s: TestCachew) =>
    fetch(`${s.url}/api/v1/git/${upstream.hostName}/org/det/snapshots`, { method: 'POST' }).then(async (r) => {
      assert.equal(r.status, 200);
      return (await r.json()) as { commit: string; digest: string };
    });
  const [x, y] = await Promise.all([post(r1), post(r2)]);
  assert.equal(x.commit, y.commit);
  assert.equal(x.digest, y.digest);
  assert.equal(await etagOf(r1), await etagOf(r2));
  const keys: string[] = [];
  for await (const meta of r1.server.cache.list('records/')) keys.push(meta.key);
  assert.equal(keys.length, 1);
  // A range served by replica 2 equals the same range from replica 1.
  const url = (s: TestCachew) => `${s.url}/git/${upstream.hostName}/org/det/snapshot/${x.commit}.tar.zst`;
  const p1 = await get(url(r1), { range: 'bytes=100-1099' });
  const p2 = await get(url(r2), { range: 'bytes=100-1099' });
  assert.equal(p1.status, 206);
  assert.deepEqual(p1.body, p2.body);

  // Replica 2 moves the shared pointer forward; replica 1 (which cached the old pointer locally when it
  // wrote it) must see the new snapshot at once, not its stale local copy.
  const next = await upstream.commit('org/det', { 'later.txt': 'later\n' });
  const z = await post(r2);
  assert.equal(z.commit, next);
  await clock1.advance(1000); // past replica 1's ref-check interval
  const seen = await get(`${r1.url}/git/${upstream.hostName}/org/det/snapshot.tar.zst`, {}, 'HEAD');
  assert.equal(seen.headers.get('x-cachew-snapshot-commit'), next);
  assert.equal(seen.headers.get('etag'), `"${z.digest}"`);
});
