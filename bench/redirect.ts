/**
 * Section 5, redirect: `--s3-redirect` with moto_server as S3. A cachewd whose authoritative tier is
 * moto generates the snapshot into it; curl then downloads the immutable URL with `-L` (one stream and
 * 4 ranges), next to the same downloads straight from the presigned URL. What matters is that the bytes
 * no longer pass through cachewd: its snapshot-bytes counter must not move and its CPU per GB served
 * is reported. moto (Python) is far slower than real S3, so the MB/s say little about S3 itself.
 */
import { snapshotsApiPath } from '../src/protocol/routes.js';
import { createBucket, startMoto } from '../test/harness/moto.js';
import { startCachewd } from './cachewd.js';
import { curlMissing, curlParallel, fetchText } from './http-get.js';
import { fmtThroughput, jobsFor, measure, medianThroughput, type Throughput } from './serving.js';
import { ratio, skippedRow, type Row } from './table.js';
import { Cleanup, log, run, tempDir } from './util.js';

const SECTION = 'redirect';
const BUCKET = 'cachew-bench';
const PARALLEL = 4;

export interface RedirectTarget {
  upstreamName: string;
  upstreamUrl: string;
  repo: string;
  head: string;
}

/** Bytes of snapshot bodies cachewd sent itself (from its /metrics). */
async function snapshotBytesServed(cachewdUrl: string): Promise<number> {
  const { body } = await fetchText(`${cachewdUrl}/metrics`, 'GET', 30_000);
  const match = /^cachew_bytes_served_total\{kind="snapshot"\} (\S+)$/m.exec(body);
  return match ? Number(match[1]) : 0;
}

export async function benchRedirect(target: RedirectTarget, runs: number, cleanup: Cleanup): Promise<Row[]> {
  const metric = 'downloads through --s3-redirect (moto as S3)';
  const missing = await curlMissing();
  if (missing) return [skippedRow(SECTION, metric, missing)];
  let moto;
  try {
    moto = await startMoto();
  } catch (err) {
    return [skippedRow(SECTION, metric, `moto_server cannot start (pip install 'moto[server]'): ${(err as Error).message}`)];
  }
  const motoServer = moto;
  cleanup.add('moto', () => motoServer.stop());
  await createBucket(moto, BUCKET);
  // cachewd signs with these; the SDK reads them from its environment.
  process.env.AWS_ACCESS_KEY_ID = moto.credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = moto.credentials.secretAccessKey;
  const state = await tempDir(cleanup, 'redirect-state');
  const cachewd = await startCachewd(
    [
      '--state', state, '--upstream', `${target.upstreamName}=${target.upstreamUrl}`, '--snapshot-interval', '0', '--log-level', 'info',
      '--s3-bucket', BUCKET, '--s3-endpoint', moto.endpoint, '--s3-region', moto.region, '--s3-redirect',
    ],
    cleanup,
  );
  try {
    const api = `${cachewd.url}${snapshotsApiPath(target.upstreamName, target.repo)}`;
    const made = await fetchText(api, 'POST', 3_600_000);
    if (made.status !== 200) throw new Error(`POST ${api}: ${made.status} ${made.body.slice(0, 200)}`);
    const snapshot = JSON.parse(made.body) as { commit: string; size: number; url: string };
    if (snapshot.commit !== target.head) throw new Error(`snapshot of ${snapshot.commit}, expected ${target.head}`);
    const url = new URL(snapshot.url, cachewd.url).toString();
    const [status, location] = (await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', url], { timeoutMs: 60_000 })).split(' ');
    if (status !== '307' || !location) throw new Error(`GET ${url}: HTTP ${status}, expected a 307 to S3`);

    const shapes = [1, PARALLEL];
    const via = new Map<number, Throughput[]>();
    const direct = new Map<number, number[]>();
    const servedBefore = await snapshotBytesServed(cachewd.url);
    for (const shape of shapes) await curlParallel(jobsFor(location, snapshot.size, shape).map((job) => ({ ...job, repeat: 1 })));
    for (let i = 1; i <= runs; i++) {
      for (const shape of shapes) {
        const through = await measure(cachewd, jobsFor(url, snapshot.size, shape, true));
        via.set(shape, [...(via.get(shape) ?? []), through]);
        const straight = await curlParallel(jobsFor(location, snapshot.size, shape));
        const mbps = straight.bytes / 1e6 / (straight.ms / 1000);
        direct.set(shape, [...(direct.get(shape) ?? []), mbps]);
        log(`redirect run ${i}/${runs}, ${shape === 1 ? '1 stream' : `${shape} ranges`}: via cachewd ${fmtThroughput(through)}, moto direct ${mbps.toFixed(0)} MB/s`);
      }
    }
    const servedByCachewd = (await snapshotBytesServed(cachewd.url)) - servedBefore;
    return shapes.map((shape) => {
      const ours = medianThroughput(via.get(shape) ?? []);
      const theirs = medianThroughput((direct.get(shape) ?? []).map((mbps) => ({ mbps, cpuPerGb: 0 })));
      return {
        section: SECTION,
        metric: `curl -L via cachewd's 307, ${shape === 1 ? '1 stream' : `${shape} parallel ranges`}`,
        ours: `${ours.mbps.toFixed(0)} MB/s; cachewd ${ours.cpuPerGb.toFixed(3)} CPU s/GB`,
        baseline: `${theirs.mbps.toFixed(0)} MB/s (presigned URL, no redirect)`,
        ratio: ratio(ours.mbps / theirs.mbps),
        aim: 'bytes not via cachewd',
        met: servedByCachewd === 0,
        note: `snapshot bytes cachewd served itself during all redirect runs: ${servedByCachewd}; one 307 per transfer; moto_server is the S3 (slow, single process), so MB/s measure moto`,
      };
    });
  } finally {
    await cachewd.stop();
    await motoServer.stop();
  }
}
