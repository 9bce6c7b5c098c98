/**
 * End to end: two cachewd replicas sharing S3 (moto) share layer packs. Replica 1 snapshots a
 * repository at first-parent depth 66 (layers (0, 64], (64, 65], (65, 66]) and publishes the layers;
 * replica 2, whose mirror and local layer cache are new, snapshots the next commit with the big
 * layer fetched from S3 (its log says so), and its archive is byte-identical to one made from scratch
 * without any cache.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { runGit } from '../src/git/command.js';
import { startServer } from '../src/server/server.js';
import { generateSnapshot } from '../src/git/snapshot/archive.js';
import { verifyFrameTable } from '../src/git/snapshot/frames.js';
import { buildLongHistory } from '../src/git/snapshot/testing/long-history.js';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { testConfig } from './harness/cachew.js';
import { createBucket, startMoto, type MotoServer } from './harness/moto.js';

interface Replica {
  url: string;
  /** Every log line, parsed. */
  lines: Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

let upstream: Upstream;
let moto: MotoServer;
let scratch: string;
const replicas: Replica[] = [];

before(async () => {
  upstream = await startUpstream();
  moto = await startMoto();
  await createBucket(moto, 'shared');
  process.env.AWS_ACCESS_KEY_ID = moto.credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = moto.credentials.secretAccessKey;
  scratch = await mkdtemp(join(tmpdir(), 'cachew-shared-e2e-'));
});
after(async () => {
  for (const r of replicas) await r.stop();
  await upstream?.stop();
  await moto?.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function startReplica(): Promise<Replica> {
  const stateDir = await mkdtemp(join(tmpdir(), 'cachew-state-'));
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  const s3 = { bucket: 'shared', endpoint: moto.endpoint, region: moto.region, prefix: 'cachew' };
  const server = await startServer(testConfig(stateDir, [upstream], { s3 }), { logger: pino({ level: 'debug' }, sink) });
  const replica: Replica = {
    url: server.url,
    lines,
    async stop() {
      await server.close();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
  replicas.push(replica);
  return replica;
}

async function snapshotNow(replica: Replica): Promise<{ commit: string; digest: string }> {
  const res = await fetch(`${replica.url}/api/v1/git/${upstream.hostName}/org/long/snapshots`, { method: 'POST' });
  assert.equal(res.status, 200);
  return (await res.json()) as { commit: string; digest: string };
}

/** Depth of the big first layer of both snapshots. */
const K = 64;

/** Where each generation of `replica` got the layer (from, to] (in log order). */
function layerSources(replica: Replica, from: number, to: number): unknown[] {
  return replica.lines.filter((l) => l.msg === 'layer ready' && l.layer === `${from}..${to}`).map((l) => l.source);
}

test('a second replica takes the layers from S3 instead of building them', { timeout: 170_000 }, async () => {
  const source = join(scratch, 'source.git');
  const mainline = await buildLongHistory(source, K + 3);
  const bare = join(upstream.root, 'org/long.git');
  await runGit(['init', '-q', '--bare', '--initial-branch=main', bare]);
  await runGit(['push', '-q', bare, `${mainline[K + 1]}:refs/heads/main`], { cwd: source });

  const r1 = await startReplica();
  const first = await snapshotNow(r1);
  assert.equal(first.commit, mainline[K + 1]);
  assert.deepEqual(layerSources(r1, 0, K), ['built']);

  // Upstream moves on; a new replica (empty state) snapshots the new head.
  await runGit(['push', '-q', bare, `${mainline[K + 2]}:refs/heads/main`], { cwd: source });
  const r2 = await startReplica();
  const second = await snapshotNow(r2);
  assert.equal(second.commit, mainline[K + 2]);
  assert.deepEqual(layerSources(r2, 0, K), ['shared'], 'fetched from S3, not rebuilt');
  assert.deepEqual(layerSources(r2, K + 2, K + 3), ['built'], 'only the new commit is packed');

  // The bytes are those of a snapshot made from scratch (no caches at all) from upstream's repository.
  const out = join(scratch, 'reference.tar.zst');
  const reference = await generateSnapshot({ gitDir: bare, commit: second.commit, upstreamUrl: `${upstream.url}/org/long`, defaultBranch: 'main' }, out);
  assert.equal(second.digest, reference.sha256);
  assert.deepEqual(await verifyFrameTable(out), reference.frames);
  const res = await fetch(`${r2.url}/git/${upstream.hostName}/org/long/snapshot/${second.commit}.tar.zst`, { method: 'HEAD' });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('etag'), `"${reference.sha256}"`);
});
