/**
 * Many replicas on one bucket (issue 8, Build 5): replicas asked at once for the snapshot of the same
 * commit generate it once (the generation lease), store one record and one blob, and serve the same
 * bytes; a new replica with an empty disk serves the existing snapshot at once, before its mirror
 * clone finished, and builds the mirror in the background.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { s3ClientFor, startMoto, createBucket, type MotoServer } from './harness/moto.js';
import { get, sha256, waitFor } from './harness/http.js';
import { bucketKeys, generations, metricValue, snapshotBlobs, startGate, type Gate } from './harness/replicas.js';
import type { S3Client } from '@aws-sdk/client-s3';

const BUCKET = 'replicas';
const PREFIX = 'cachew';
let upstream: Upstream;
let moto: MotoServer;
let client: S3Client;
const replicas: TestCachew[] = [];
const gates: Gate[] = [];

/** Enough content that generating takes a while, so concurrent requests really overlap. */
function bulkyFiles(seed: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (let i = 0; i < 80; i++) files[`${seed}/f${i}.txt`] = randomBytes(8_000).toString('hex');
  return files;
}

before(async () => {
  upstream = await startUpstream();
  moto = await startMoto();
  await createBucket(moto, BUCKET);
  client = s3ClientFor(moto);
  process.env.AWS_ACCESS_KEY_ID = moto.credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = moto.credentials.secretAccessKey;
  for (const repo of ['org/two', 'org/three']) {
    await upstream.createRepo(repo, bulkyFiles('a'));
    await upstream.commit(repo, bulkyFiles('b'));
  }
});

after(async () => {
  for (const gate of gates) await gate.stop();
  for (const replica of replicas) await replica.stop();
  client?.destroy();
  await upstream?.stop();
  await moto?.stop();
});

async function replica(overrides: Parameters<typeof startCachew>[1] = {}): Promise<TestCachew> {
  const started = await startCachew([upstream], {
    s3: { bucket: BUCKET, endpoint: moto.endpoint, region: moto.region, prefix: PREFIX },
    ...overrides,
  });
  replicas.push(started);
  return started;
}

const stableUrl = (r: TestCachew, repo: string): string => `${r.url}/git/${upstream.hostName}/${repo}/snapshot.tar.zst`;

async function concurrentFirstRequests(group: TestCachew[], repo: string): Promise<void> {
  const before = await generations(group);
  const answers = await Promise.all(group.map((r) => get(stableUrl(r, repo))));
  for (const answer of answers) assert.equal(answer.status, 200, answer.body.toString());
  const etags = new Set(answers.map((a) => a.headers.get('etag')));
  assert.equal(etags.size, 1, 'every replica serves the same snapshot');
  assert.equal(`"${sha256(answers[0].body)}"`, answers[0].headers.get('etag'));

  assert.equal((await generations(group)) - before, 1, 'exactly one replica generated');
  const records = await bucketKeys(client, BUCKET, `${PREFIX}/records/${upstream.hostName.replace(':', '_')}/${repo}/`);
  assert.equal(records.length, 1, 'one record');
  const digest = [...etags][0]!.slice(1, -1);
  const blobs = (await snapshotBlobs(client, BUCKET, PREFIX)).filter((key) => key.endsWith(digest));
  assert.equal(blobs.length, 1, 'one blob');
  let waited = 0;
  for (const r of group) waited += await metricValue(r, 'generationLeases', { outcome: 'waited' });
  for (const r of group) waited += await metricValue(r, 'generationLeases', { outcome: 'taken' });
  assert.ok(waited >= group.length, 'every replica went through the lease');
}

test('two replicas asked at once for one commit: one generation, one record, one blob', { timeout: 240_000 }, async () => {
  const group = [await replica(), await replica()];
  await concurrentFirstRequests(group, 'org/two');
});

test('three replicas asked at once for one commit: one generation, one record, one blob', { timeout: 240_000 }, async () => {
  // The two replicas of the first test (which never saw this repository) and a third one.
  const group = [replicas[0] ?? (await replica()), replicas[1] ?? (await replica()), await replica()];
  await concurrentFirstRequests(group, 'org/three');
});

test('a new replica with an empty disk serves the stored snapshot at once and clones in the background', { timeout: 240_000 }, async () => {
  const seed = replicas[0] ?? (await replica());
  const reference = await get(stableUrl(seed, 'org/two'));
  assert.equal(reference.status, 200);
  const commit = reference.headers.get('x-cachew-snapshot-commit')!;

  // The new replica's upstream answers nothing until the gate opens: a clone that has not finished.
  const gate = await startGate(upstream.url);
  gates.push(gate);
  const fresh = await replica({ upstreams: [{ name: upstream.hostName, baseUrl: gate.url }] });
  const stable = await get(stableUrl(fresh, 'org/two'));
  assert.equal(stable.status, 200, stable.body.toString());
  assert.equal(stable.headers.get('etag'), reference.headers.get('etag'));
  assert.deepEqual(stable.body, reference.body);
  const immutable = `${fresh.url}/git/${upstream.hostName}/org/two/snapshot/${commit}.tar.zst`;
  const range = await get(immutable, { range: 'bytes=1000-4999' });
  assert.equal(range.status, 206);
  assert.deepEqual(range.body, reference.body.subarray(1000, 5000));
  assert.ok(gate.seen > 0, 'the clone started');
  assert.equal(await generations([fresh]), 0, 'nothing was generated');

  gate.open();
  // The clone finishes in the background; then the replica serves from its own mirror (git too).
  await waitFor(async () => {
    const refs = await get(`${fresh.url}/git/${upstream.hostName}/org/two/info/refs?service=git-upload-pack`);
    return refs.status === 200 ? true : undefined;
  }, 60_000);
  const after = await get(stableUrl(fresh, 'org/two'), {}, 'HEAD');
  assert.equal(after.headers.get('etag'), reference.headers.get('etag'));
});
