/**
 * S3 outage (issue 8, finding 6 and Build 4): S3 stopped under concurrent load (its connections cut
 * while requests are in flight), a replica keeps serving the snapshots its local tiers hold — stable
 * URL, immutable URL, ranges, conditionals — with no failed request; readiness and metrics say "degraded"; error bodies never name internal
 * keys; and when S3 comes back the replica notices by itself (no restart). On today's main every one of
 * those requests got 503 naming a storage key.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestCachew } from './harness/cachew.js';
import { get, sha256, waitFor } from './harness/http.js';
import { metricValue } from './harness/replicas.js';
import { OUTAGE_BUCKET, OUTAGE_PREFIX, OUTAGE_REPO, useOutageFixture } from './harness/s3-outage.js';

const f = useOutageFixture();
let replica: TestCachew;

const repoUrl = (repo: string): string => `${replica.url}/git/${f.upstream.hostName}/${repo}`;

/** Fails the test if a body names a storage key or the bucket layout. */
function assertNoInternalKeys(body: string): void {
  for (const word of ['records/', 'pointers/', 'blobs/', 'leases/', `${OUTAGE_PREFIX}/`, OUTAGE_BUCKET]) {
    assert.ok(!body.includes(word), `error body names internal storage: ${body.trim()}`);
  }
}

test('S3 unreachable: held snapshots keep being served under load; readiness and metrics say degraded; S3 back → healthy', { timeout: 240_000 }, async () => {
  replica = await f.replica();
  const reference = await get(`${repoUrl(OUTAGE_REPO)}/snapshot.tar.zst`);
  assert.equal(reference.status, 200);
  const etag = reference.headers.get('etag')!;
  const commit = reference.headers.get('x-cachew-snapshot-commit')!;
  assert.equal(`"${sha256(reference.body)}"`, etag);
  const size = reference.body.length;
  assert.equal((await get(`${replica.url}/_readiness`)).headers.get('x-cachew-degraded'), null);

  const failures: string[] = [];
  const statuses = new Map<number, number>();
  const requests = [
    async () => {
      const res = await get(`${repoUrl(OUTAGE_REPO)}/snapshot.tar.zst`);
      return { res, ok: res.status === 200 && sha256(res.body) === etag.slice(1, -1) };
    },
    async () => {
      const res = await get(`${repoUrl(OUTAGE_REPO)}/snapshot.tar.zst`, {}, 'HEAD');
      return { res, ok: res.status === 200 && res.headers.get('etag') === etag };
    },
    async (n: number) => {
      const start = (n * 7919) % (size - 1000);
      const res = await get(`${repoUrl(OUTAGE_REPO)}/snapshot/${commit}.tar.zst`, { range: `bytes=${start}-${start + 999}` });
      return { res, ok: res.status === 206 && res.body.equals(reference.body.subarray(start, start + 1000)) };
    },
    async () => {
      const res = await get(`${repoUrl(OUTAGE_REPO)}/snapshot/${commit}.tar.zst`, { 'if-none-match': etag });
      return { res, ok: res.status === 304 };
    },
  ];
  // S3 stops under load: the switch cuts every S3 connection once a quarter of the requests are done,
  // while the other workers' requests are in flight; the rest run against a dead S3.
  const WORKERS = 8;
  const PER_WORKER = 30;
  const STOP_AFTER = (WORKERS * PER_WORKER) / 4;
  let completed = 0;
  let inFlightAtStop = 0;
  let inFlight = 0;
  await Promise.all(
    Array.from({ length: WORKERS }, async (_, worker) => {
      for (let i = 0; i < PER_WORKER; i++) {
        const n = worker * PER_WORKER + i;
        inFlight++;
        const { res, ok } = await requests[n % requests.length](n);
        inFlight--;
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (!ok) failures.push(`${n}: ${res.status} ${res.body.toString().slice(0, 200)}`);
        if (++completed === STOP_AFTER) {
          inFlightAtStop = inFlight;
          f.s3Switch.setDown(true);
        }
      }
    }),
  );
  assert.ok(inFlightAtStop > 0, 'S3 stopped while requests were in flight');
  assert.deepEqual(failures, [], `failed requests around and during the S3 outage (statuses ${JSON.stringify([...statuses])})`);

  const readiness = await get(`${replica.url}/_readiness`);
  assert.equal(readiness.status, 200, 'a degraded replica still serves, so it stays in rotation');
  assert.match(readiness.headers.get('x-cachew-degraded') ?? '', /s3 unreachable/);
  assert.match(readiness.body.toString(), /^ready \(degraded: s3 unreachable since /);
  assert.equal(await metricValue(replica, 'storageDegraded', { tier: 's3' }), 1);
  assert.ok((await metricValue(replica, 'staleReads')) > 0, 'pointer reads were answered locally');

  // Something this replica does not hold cannot be served; the 503 must not reveal storage keys.
  const unknown = await get(`${repoUrl(OUTAGE_REPO)}/snapshot/${'e'.repeat(40)}.tar.zst`);
  assert.equal(unknown.status, 503);
  assert.ok(unknown.headers.get('retry-after'));
  assertNoInternalKeys(unknown.body.toString());

  f.s3Switch.setDown(false);
  await waitFor(async () => ((await get(`${replica.url}/_readiness`)).headers.get('x-cachew-degraded') === null ? true : undefined), 60_000);
  assert.equal(await metricValue(replica, 'storageDegraded', { tier: 's3' }), 0);
  const afterOutage = await get(`${repoUrl(OUTAGE_REPO)}/snapshot/${'e'.repeat(40)}.tar.zst`);
  assert.equal(afterOutage.status, 404, 'with S3 back, an unknown commit is a plain miss again');
});

test('the first failures, before degraded mode starts, do not name storage keys either', { timeout: 120_000 }, async () => {
  // A fresh replica whose S3 is down from the start: its very first S3 calls fail with the SDK's error.
  const other = await f.replica();
  try {
    f.s3Switch.setDown(true);
    const res = await get(`${other.url}/git/${f.upstream.hostName}/${OUTAGE_REPO}/snapshot/${'d'.repeat(40)}.tar.zst`);
    assert.equal(res.status, 503);
    assertNoInternalKeys(res.body.toString());
    assert.match(res.body.toString(), /storage/);
  } finally {
    f.s3Switch.setDown(false);
  }
});
