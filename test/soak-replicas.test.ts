/**
 * Soak of replicas sharing one bucket (opt-in: `SOAK=1`; prints a report).
 *
 * 1. Parallel-range restores alternating replicas during continuous regeneration: SOAK_REPLICAS
 *    (default 3) replicas on one moto bucket; upstream keeps getting commits and the replicas take turns snapshotting them while
 *    restorers resolve the stable URL on one replica and fetch the immutable URL's ranges in parallel
 *    from all of them. Every restore's bytes must hash to the ETag it resolved (SOAK_RESTORES, default 200).
 * 2. kill -9 at random points: a real cachewd on the bucket is killed with SIGKILL at a random moment
 *    while it generates and serves (SOAK_KILLS, default 20), then restarted on the same state directory.
 *    After each restart the stable URL resolves and serves bytes matching its ETag, every record's blob
 *    exists, every blob in the bucket hashes to its name, and the state's temp space is back to its
 *    baseline.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { createBucket, s3ClientFor, startMoto, type MotoServer } from './harness/moto.js';
import { get, sha256 } from './harness/http.js';
import { bucketJson, bucketKeys } from './harness/replicas.js';

const enabled = process.env.SOAK === '1';
const RESTORES = Number(process.env.SOAK_RESTORES ?? 200);
const KILLS = Number(process.env.SOAK_KILLS ?? 20);
const REPLICAS = Number(process.env.SOAK_REPLICAS ?? 3);
const BUCKET = 'soak-replicas';

let upstream: Upstream;
let moto: MotoServer;
let client: S3Client;

function files(tag: string, count: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < count; i++) out[`${tag}/f${i}.txt`] = randomBytes(4_000).toString('hex');
  return out;
}

void describe('replicas soak (SOAK=1)', { skip: !enabled && 'set SOAK=1 to run' }, () => {
  before(async () => {
    upstream = await startUpstream();
    moto = await startMoto();
    await createBucket(moto, BUCKET);
    client = s3ClientFor(moto);
    process.env.AWS_ACCESS_KEY_ID = moto.credentials.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = moto.credentials.secretAccessKey;
  });
  after(async () => {
    client?.destroy();
    await upstream?.stop();
    await moto?.stop();
  });

  void test('parallel-range restores alternating replicas during continuous regeneration', { timeout: 1_800_000 }, async () => {
    await upstream.createRepo('soak/regen', files('base', 200));
    const s3 = { bucket: BUCKET, endpoint: moto.endpoint, region: moto.region, prefix: 'regen' };
    const replicas: TestCachew[] = [];
    for (let i = 0; i < REPLICAS; i++) replicas.push(await startCachew([upstream], { s3 }));
    const path = `/git/${upstream.hostName}/soak/regen`;
    const stats = { restores: 0, digestFailures: 0, httpFailures: 0, regenerations: 0, ranges: 0, commitsSeen: new Set<string>() };
    const failures: string[] = [];
    let stop = false;
    try {
      assert.equal((await get(`${replicas[0].url}${path}/snapshot.tar.zst`, {}, 'HEAD')).status, 200);
      const regenerate = async (): Promise<void> => {
        for (let i = 0; !stop; i++) {
          await upstream.commit('soak/regen', files(`c${i}`, 5));
          const res = await fetch(`${replicas[i % REPLICAS].url}/api/v1${path}/snapshots`, { method: 'POST' });
          await res.arrayBuffer();
          if (res.status === 200) stats.regenerations++;
          else failures.push(`regeneration ${i}: ${res.status}`);
        }
      };
      const restorer = async (worker: number): Promise<void> => {
        while (stats.restores < RESTORES) {
          const n = stats.restores++;
          const resolver = replicas[(n + worker) % REPLICAS];
          const head = await get(`${resolver.url}${path}/snapshot.tar.zst`, {}, 'HEAD');
          if (head.status !== 200) {
            stats.httpFailures++;
            failures.push(`restore ${n}: stable HEAD ${head.status}`);
            continue;
          }
          const etag = head.headers.get('etag')!.slice(1, -1);
          const location = head.headers.get('content-location')!;
          stats.commitsSeen.add(head.headers.get('x-cachew-snapshot-commit')!);
          const size = Number(head.headers.get('content-length'));
          const parts = 4;
          const step = Math.ceil(size / parts);
          const bodies = await Promise.all(
            Array.from({ length: parts }, async (_, p) => {
              const start = p * step;
              const end = Math.min(size, start + step) - 1;
              const res = await get(`${replicas[(n + p) % REPLICAS].url}${location}`, { range: `bytes=${start}-${end}` });
              stats.ranges++;
              if (res.status !== 206) throw new Error(`range ${start}-${end}: ${res.status}`);
              return res.body;
            }),
          ).catch((err: Error) => {
            stats.httpFailures++;
            failures.push(`restore ${n}: ${err.message}`);
            return undefined;
          });
          if (!bodies) continue;
          const hash = createHash('sha256');
          for (const body of bodies) hash.update(body);
          if (hash.digest('hex') !== etag) {
            stats.digestFailures++;
            failures.push(`restore ${n}: digest mismatch for ${etag}`);
          }
        }
      };
      const started = Date.now();
      const regenerating = regenerate();
      await Promise.all(Array.from({ length: 4 }, (_, w) => restorer(w)));
      stop = true;
      await regenerating;
      const seconds = (Date.now() - started) / 1000;
      console.log(
        `  soak report (restores): ${stats.restores} restores (${stats.ranges} ranged GETs, alternating ${REPLICAS} replicas) in ` +
          `${seconds.toFixed(1)} s during ${stats.regenerations} regenerations; ${stats.commitsSeen.size} distinct snapshots served; ` +
          `digest failures ${stats.digestFailures}, HTTP failures ${stats.httpFailures}`,
      );
      assert.deepEqual(failures, []);
      assert.ok(stats.restores >= RESTORES && stats.regenerations > 1 && stats.commitsSeen.size > 1);
    } finally {
      stop = true;
      for (const r of replicas) await r.stop();
    }
  });

  void test('kill -9 at random points: nothing partial, every blob verifies, the pointer resolves, temp space returns', { timeout: 3_600_000 }, async () => {
    await upstream.createRepo('soak/kill', files('base', 300));
    const state = await mkdtemp(join(tmpdir(), 'cachew-soak-kill-'));
    const prefix = 'kill';
    const path = `/git/${upstream.hostName}/soak/kill`;
    const report = {
      kills: 0,
      killedWhile: new Map<string, number>(),
      blobsVerified: 0,
      tempBytesAfterRestart: [] as number[],
      /** Temp bytes a kill left behind (measured before the restart that must remove them). */
      tempBytesAfterKill: [] as number[],
    };
    let child: ChildProcess | undefined;
    const start = async (): Promise<string> => {
      child = spawn(
        process.execPath,
        [
          '--import', 'tsx', 'src/cli/cachewd.ts',
          '--bind', '127.0.0.1:0', '--state', state, '--log-level', 'info',
          '--upstream', `${upstream.hostName}=${upstream.url}`,
          '--s3-bucket', BUCKET, '--s3-endpoint', moto.endpoint, '--s3-region', moto.region, '--s3-prefix', prefix,
          '--ref-check-interval', '1s',
        ],
        { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env } },
      );
      return listeningUrl(child);
    };
    try {
      const baseline = await tempBytes(state);
      for (let i = 0; i < KILLS; i++) {
        const url = await start();
        report.tempBytesAfterRestart.push(await tempBytes(state));
        await verify(url, path, prefix, report);
        // Work in flight at the kill: a new commit being snapshotted, a download, a ranged read.
        await upstream.commit('soak/kill', files(`k${i}`, 20));
        const inFlight = [
          fetch(`${url}/api/v1${path}/snapshots`, { method: 'POST' }).then((r) => r.arrayBuffer()),
          fetch(`${url}${path}/snapshot.tar.zst`).then((r) => r.arrayBuffer()),
        ].map((p) => p.catch(() => undefined));
        const delay = Math.floor(Math.random() * 1500);
        await new Promise((r) => setTimeout(r, delay));
        const phase = delay < 300 ? 'early' : delay < 900 ? 'generating' : 'late';
        report.killedWhile.set(phase, (report.killedWhile.get(phase) ?? 0) + 1);
        child!.kill('SIGKILL');
        await new Promise((r) => child!.once('exit', r));
        report.kills++;
        await Promise.all(inFlight);
        report.tempBytesAfterKill.push(await tempBytes(state));
      }
      const url = await start();
      const finalTemp = await tempBytes(state);
      report.tempBytesAfterRestart.push(finalTemp);
      await verify(url, path, prefix, report);
      const records = (await bucketKeys(client, BUCKET, `${prefix}/records/`)).length;
      const leftovers = report.tempBytesAfterKill.filter((b) => b > baseline);
      console.log(
        `  soak report (kill -9): ${report.kills} kills (${[...report.killedWhile].map(([k, v]) => `${k} ${v}`).join(', ')}); ` +
          `${records} snapshot records at the end, ${report.blobsVerified} blob checks (all verified); ` +
          `temp bytes baseline ${baseline}; left by the kill in ${leftovers.length} of ${report.kills} kills (max ${Math.max(0, ...leftovers)} bytes); ` +
          `after each restart max ${Math.max(...report.tempBytesAfterRestart)}, final ${finalTemp}`,
      );
      assert.equal(finalTemp, baseline, 'temp space back to its baseline after restart');
    } finally {
      child?.kill('SIGKILL');
      await rm(state, { recursive: true, force: true });
    }
  });
});

async function verify(url: string, path: string, prefix: string, report: { blobsVerified: number }): Promise<void> {
  const stable = await get(`${url}${path}/snapshot.tar.zst`);
  assert.equal(stable.status, 200, `stable URL after restart: ${stable.body.toString().slice(0, 200)}`);
  assert.equal(`"${sha256(stable.body)}"`, stable.headers.get('etag'), 'stable URL serves whole, matching bytes');
  const blobs = new Set(await bucketKeys(client, BUCKET, `${prefix}/blobs/`));
  for (const key of blobs) {
    const response = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    const hash = createHash('sha256');
    for await (const chunk of response.Body as AsyncIterable<Buffer>) hash.update(chunk);
    assert.equal(hash.digest('hex'), key.slice(key.lastIndexOf('/') + 1), `blob ${key} verifies`);
    report.blobsVerified++;
  }
  for (const key of await bucketKeys(client, BUCKET, `${prefix}/records/`)) {
    const record = (await bucketJson(client, BUCKET, key)) as { digest: string; commit: string };
    assert.ok(blobs.has(`${prefix}/blobs/sha256/${record.digest}`), `record ${key} names a stored blob`);
    const served = await get(`${url}${path}/snapshot/${record.commit}.tar.zst`);
    assert.equal(served.status, 200);
    assert.equal(sha256(served.body), record.digest);
  }
}

/** Bytes under the state's temp locations (generation scratch and crashed-writer leftovers). */
async function tempBytes(state: string): Promise<number> {
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const full = join(dir, name);
      const info = await stat(full).catch(() => undefined);
      if (!info) continue;
      if (info.isDirectory()) await walk(full);
      else total += info.size;
    }
  };
  await walk(join(state, 'tmp'));
  await walk(join(state, 'cache', '.tmp'));
  await walk(join(state, 'mirrors', '.tmp'));
  return total;
}

function listeningUrl(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error('cachewd did not start within 60 s')), 60_000);
    const onData = (c: Buffer): void => {
      buffered += c.toString();
      const line = buffered.split('\n').find((l) => l.includes('cachewd listening'));
      if (!line) return;
      clearTimeout(timer);
      // Keep draining the log so the child never blocks on a full pipe, without keeping it.
      child.stdout!.off('data', onData);
      child.stdout!.resume();
      resolve((JSON.parse(line) as { url: string }).url);
    };
    child.stdout!.on('data', onData);
    child.once('exit', () => reject(new Error('cachewd exited before listening')));
  });
}
