/** End-to-end: superseded snapshots stay for the grace period, then go with their blobs. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { get } from './harness/http.js';
import { ManualClock } from '../src/util/testing/manual-clock.js';

let upstream: Upstream;
let cachew: TestCachew;
// Time moves only when the test says so: a slow generation cannot age a snapshot out early.
const clock = new ManualClock();

before(async () => {
  upstream = await startUpstream();
  await upstream.createRepo('org/ret', { 'a.txt': 'one\n' });
  cachew = await startCachew([upstream], { snapshotGraceMs: 1500 }, { clock });
});
after(async () => {
  await cachew?.stop();
  await upstream?.stop();
});

async function snapshotNow(): Promise<{ commit: string; digest: string }> {
  const res = await fetch(`${cachew.url}/api/v1/git/${upstream.hostName}/org/ret/snapshots`, { method: 'POST' });
  assert.equal(res.status, 200);
  return (await res.json()) as { commit: string; digest: string };
}

test('storage per repository in steady state is one snapshot', { timeout: 120_000 }, async () => {
  const base = `${cachew.url}/git/${upstream.hostName}/org/ret`;
  const made: Array<{ commit: string; digest: string }> = [await snapshotNow()];
  for (let i = 2; i <= 4; i++) {
    await upstream.commit('org/ret', { 'a.txt': `${i}\n` });
    made.push(await snapshotNow());
  }
  assert.equal(new Set(made.map((m) => m.commit)).size, 4);
  // Within the grace period every superseded snapshot still serves.
  for (const m of made) assert.equal((await get(`${base}/snapshot/${m.commit}.tar.zst`, {}, 'HEAD')).status, 200, m.commit);

  await clock.advance(1499);
  await cachew.server.scheduler.runRetention();
  for (const m of made) assert.equal((await get(`${base}/snapshot/${m.commit}.tar.zst`, {}, 'HEAD')).status, 200, `${m.commit} within grace`);
  await clock.advance(1);
  await cachew.server.scheduler.runRetention();

  const current = made[made.length - 1];
  for (const m of made.slice(0, -1)) {
    assert.equal((await get(`${base}/snapshot/${m.commit}.tar.zst`, {}, 'HEAD')).status, 404, `${m.commit} aged out`);
    assert.equal(await cachew.server.cache.stat(`blobs/sha256/${m.digest}`), undefined, 'its blob is deleted');
  }
  assert.equal((await get(`${base}/snapshot/${current.commit}.tar.zst`, {}, 'HEAD')).status, 200);
  assert.ok(await cachew.server.cache.stat(`blobs/sha256/${current.digest}`));
  const records = [];
  for await (const meta of cachew.server.cache.list('records/')) records.push(meta.key);
  assert.equal(records.length, 1, `one record left: ${records.join(', ')}`);
  const blobs = [];
  for await (const meta of cachew.server.cache.list('blobs/')) blobs.push(meta.key);
  assert.deepEqual(blobs, [`blobs/sha256/${current.digest}`]);
});
