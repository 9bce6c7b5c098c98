/**
 * Limits under misbehaving clients (issue 8, finding 3): idle and slow connections are closed by the
 * header timeout, the connection cap evicts idle connections so health checks still get in while
 * 1,000 idle connections are held, and body limits answer 413 (the hostile-request barrage is
 * test/hostile-requests.test.ts). Timeouts are configured short (1 s) so every wait is bounded;
 * each wait is for an event (a close), never a sleep.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { TIGHT_HTTP_LIMITS, startCachew, type TestCachew } from './harness/cachew.js';
import { allClosed, drip, openIdle } from './harness/raw-http.js';

let upstream: Upstream;
let cachew: TestCachew;
const MiB = 1024 * 1024;

before(async () => {
  upstream = await startUpstream();
  await upstream.createRepo('org/app', { 'a.txt': 'a\n' });
  cachew = await startCachew([upstream], {
    http: TIGHT_HTTP_LIMITS,
  });
});
after(async () => {
  await cachew?.stop();
  await upstream?.stop();
});

const health = async (): Promise<number[]> => [(await fetch(`${cachew.url}/_liveness`)).status, (await fetch(`${cachew.url}/_readiness`)).status];

test('1,000 idle connections: health answers at once, and the server closes them all', { timeout: 120_000 }, async () => {
  const idle = await openIdle(cachew.url, 1000);
  try {
    assert.deepEqual(await health(), [200, 200], 'liveness and readiness answer while the idle connections are held');
    // Every one of them is closed by the server: evicted for newer ones at the cap of 200, or cut by
    // the 1 s header timeout. Waiting for the close events is bounded by the test timeout.
    await allClosed(idle);
  } finally {
    for (const s of idle) s.destroy();
  }
  const slow = await Promise.all(Array.from({ length: 20 }, () => drip(cachew.url, 200, 15_000)));
  for (const reply of slow) {
    assert.ok(reply.closedByServer, 'a header dribbled byte by byte is cut by the header timeout');
    assert.ok(reply.status === undefined || reply.status === 408, `status ${reply.status}`);
  }
  assert.deepEqual(await health(), [200, 200]);
});

test('body limits on every route: 413, declared or streamed', { timeout: 60_000 }, async () => {
  const api = await fetch(`${cachew.url}/api/v1/git/${upstream.hostName}/org/app/snapshots`, { method: 'POST', body: new Uint8Array(128 * 1024) });
  assert.equal(api.status, 413);
  await api.arrayBuffer();
  const base = `${cachew.url}/git/${upstream.hostName}/org/app`;
  const declared = await fetch(`${base}/git-upload-pack`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-git-upload-pack-request' },
    body: new Uint8Array(2 * MiB),
  });
  assert.equal(declared.status, 413);
  await declared.arrayBuffer();
  // A small gzip body that inflates past the limit is counted after inflating.
  const bomb = gzipSync(Buffer.alloc(4 * MiB, 0x30));
  const inflated = await fetch(`${base}/git-upload-pack`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-git-upload-pack-request', 'content-encoding': 'gzip' },
    body: new Uint8Array(bomb),
  });
  assert.equal(inflated.status, 413);
  await inflated.arrayBuffer();
});
