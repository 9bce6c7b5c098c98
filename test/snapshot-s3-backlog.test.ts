/**
 * Degraded publishing (issue 8, Build 4): while S3 is unreachable a replica keeps generating from its
 * mirror, serves the new snapshot at once from its local tiers and keeps it in the publish backlog;
 * the backlog survives a restart of the replica, and when S3 answers again it is published the normal
 * way, so other replicas serve it without generating anything.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { get, sha256, waitFor } from './harness/http.js';
import { bucketJson, bucketKeys, generations, metricValue } from './harness/replicas.js';
import { OUTAGE_BUCKET, OUTAGE_PREFIX, OUTAGE_REPO, useOutageFixture } from './harness/s3-outage.js';

const f = useOutageFixture();
const BUCKET = OUTAGE_BUCKET;
const PREFIX = OUTAGE_PREFIX;

test('generation continues during the outage; the backlog survives a restart and is published when S3 returns', { timeout: 300_000 }, async () => {
  let replica = await f.replica();
  const { client, upstream } = f;
  const hostKey = upstream.hostName.replace(':', '_');
  const stable = `${f.repoUrl(replica)}/snapshot.tar.zst`;
  const before = await get(stable, {}, 'HEAD');
  assert.equal(before.status, 200);

  f.s3Switch.setDown(true);
  const next = await upstream.commit(OUTAGE_REPO, { 'src/new.txt': 'written during the outage\n' });
  // The mirror sees the new commit (upstream is fine); the snapshot is generated and kept locally.
  const generated = await waitFor(async () => {
    const res = await get(stable, {}, 'HEAD');
    assert.equal(res.status, 200, 'the stable URL never fails while S3 is down');
    return res.headers.get('x-cachew-snapshot-commit') === next ? res : undefined;
  }, 120_000, 250);
  const etag = generated.headers.get('etag')!;
  assert.equal(await metricValue(replica, 'publishBacklog'), 1);
  assert.equal((await readdir(join(replica.stateDir, 'backlog'))).filter((n) => n.endsWith('.json')).length, 1);
  assert.equal((await bucketKeys(client, BUCKET, `${PREFIX}/records/${hostKey}/${OUTAGE_REPO}/${next}`)).length, 0, 'not in S3 yet');

  // Restart while S3 is still down: the backlog and the local snapshot survive.
  const stateDir = replica.stateDir;
  f.keepStateDir(stateDir);
  await replica.server.close();
  replica = await f.replica({ stateDir });
  const restarted = await get(`${f.repoUrl(replica)}/snapshot.tar.zst`);
  assert.equal(restarted.status, 200);
  assert.equal(restarted.headers.get('etag'), etag);
  assert.equal(`"${sha256(restarted.body)}"`, etag);
  assert.equal(await metricValue(replica, 'publishBacklog'), 1);

  f.s3Switch.setDown(false);
  await waitFor(async () => ((await metricValue(replica, 'publishBacklog')) === 0 ? true : undefined), 120_000);
  const record = (await bucketJson(client, BUCKET, `${PREFIX}/records/${hostKey}/${OUTAGE_REPO}/${next}.json`)) as { digest: string };
  assert.equal(`"${record.digest}"`, etag, 'the record published is the snapshot served during the outage');
  const pointer = (await bucketJson(client, BUCKET, `${PREFIX}/pointers/${hostKey}/${OUTAGE_REPO}.json`)) as { commit: string; digest: string };
  assert.equal(pointer.commit, next);
  assert.deepEqual(await bucketKeys(client, BUCKET, `${PREFIX}/blobs/sha256/${record.digest}`), [`${PREFIX}/blobs/sha256/${record.digest}`]);
  assert.deepEqual((await readdir(join(stateDir, 'backlog'))).filter((n) => n.endsWith('.json')), []);

  // Another replica (straight on S3) now serves it without generating anything.
  const peer = await f.replica({ direct: true });
  const seen = await get(`${f.repoUrl(peer)}/snapshot.tar.zst`, {}, 'HEAD');
  assert.equal(seen.headers.get('etag'), etag);
  assert.equal(await generations([peer]), 0);
});
