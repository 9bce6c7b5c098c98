/**
 * Section 2, serving: how fast cachewd hands out a snapshot's bytes, with curl as the client (faster
 * than any server here), next to nginx (sendfile) and the Node ceiling (bench/node-file-server.ts)
 * serving a byte-identical copy on loopback. Two shapes: one stream (the whole object, repeated on one
 * connection) and 4 parallel ranges (4 curl processes, a quarter each). Each measurement moves at least
 * MIN_BYTES. Reported: MB/s (1 MB = 10^6 bytes) and the server's CPU seconds per GB served, which
 * stays meaningful on a busy machine where throughput does not.
 *
 * Called once per cachewd tier (memory, disk); the baselines are measured again beside each, in the
 * same interleaved runs.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { curlMissing, curlParallel, splitIntoRanges, type CurlJob } from './http-get.js';
import { findNginx, startNginx } from './nginx.js';
import { startNodeFileServer } from './node-file-server.js';
import { treeCpuSeconds } from './proc-cpu.js';
import { ratio, skippedRow, type Row } from './table.js';
import { Cleanup, log, median, tempDir } from './util.js';

const SECTION = 'serving';
const PARALLEL = 4;
const MIN_BYTES = 1024 * 1024 * 1024;
const AIM = 0.9;

export interface ServedSnapshot {
  /** Absolute URL of the immutable snapshot on cachewd. */
  url: string;
  size: number;
  digest: string;
}

/** A running server to measure: where, and whose CPU time to count. */
export interface Measured {
  label: string;
  url: string;
  pid: number;
}

export interface Throughput {
  mbps: number;
  cpuPerGb: number;
}

/** Saves `url` to `file`, checking the sha256 on the way. */
async function saveVerified(url: string, file: string, digest: string): Promise<void> {
  const hash = createHash('sha256');
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(url, resolve).on('error', reject));
  if (res.statusCode !== 200) {
    res.resume();
    throw new Error(`GET ${url}: status ${res.statusCode}`);
  }
  const hasher = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  await pipeline(res, hasher, createWriteStream(file));
  const got = hash.digest('hex');
  if (got !== digest) throw new Error(`snapshot copy has sha256 ${got}, expected ${digest}`);
}

/** Runs `jobs` against a server and reports its throughput and CPU per GB. */
export async function measure(server: Pick<Measured, 'pid'>, jobs: CurlJob[]): Promise<Throughput> {
  const cpuBefore = await treeCpuSeconds(server.pid);
  const { bytes, ms } = await curlParallel(jobs);
  const cpu = (await treeCpuSeconds(server.pid)) - cpuBefore;
  return { mbps: bytes / 1e6 / (ms / 1000), cpuPerGb: cpu / (bytes / 1e9) };
}

/** Curl jobs of one shape: `1 stream` or `4 ranges`. */
export function jobsFor(url: string, size: number, parallel: number, follow = false): CurlJob[] {
  const repeat = Math.max(1, Math.ceil(MIN_BYTES / size));
  if (parallel === 1) return [{ url, repeat, bytes: size, follow }];
  return splitIntoRanges(url, size, parallel, repeat, follow);
}

export const fmtThroughput = (t: Throughput): string => `${t.mbps.toFixed(0)} MB/s, ${t.cpuPerGb.toFixed(2)} CPU s/GB`;

export function medianThroughput(samples: Throughput[]): Throughput {
  return { mbps: median(samples.map((s) => s.mbps)), cpuPerGb: median(samples.map((s) => s.cpuPerGb)) };
}

/** Measures `cachewd` (one tier) against nginx and the Node ceiling, single stream and 4 ranges. */
export async function benchServing(snapshot: ServedSnapshot, cachewd: Measured, runs: number, cleanup: Cleanup): Promise<Row[]> {
  const metric = `${cachewd.label}: 1 stream and ${PARALLEL} ranges (curl)`;
  const missing = await curlMissing();
  if (missing) return [skippedRow(SECTION, metric, missing)];
  const binary = await findNginx();
  if (binary === undefined) {
    return [skippedRow(SECTION, metric, 'nginx is not installed (apt-get install -y nginx-light), so there is no baseline')];
  }
  const base = await tempDir(cleanup, 'nginx');
  let nginx;
  try {
    nginx = await startNginx(binary, base, cleanup);
  } catch (err) {
    return [skippedRow(SECTION, metric, (err as Error).message)];
  }
  const file = path.join(nginx.docRoot, 'snapshot.tar.zst');
  await saveVerified(snapshot.url, file, snapshot.digest);
  await chmod(file, 0o644);
  const ceiling = await startNodeFileServer(file, cleanup);
  try {
    const servers: Measured[] = [
      cachewd,
      { label: 'nginx', url: `${nginx.url}/snapshot.tar.zst`, pid: nginx.pid },
      { label: 'Node ceiling', url: `${ceiling.url}/`, pid: ceiling.pid },
    ];
    const shapes = [1, PARALLEL];
    const samples = new Map<string, Throughput[]>();
    // One unmeasured pass each: page cache, cachewd's memory tier and JIT warm for all.
    for (const server of servers) await curlParallel(jobsFor(server.url, snapshot.size, 1).map((job) => ({ ...job, repeat: 1 })));
    for (let i = 1; i <= runs; i++) {
      for (const shape of shapes) {
        // Rotate who goes first so a burst of load elsewhere does not always hit the same server.
        const order = servers.map((_, k) => servers[(k + i + shape) % servers.length]);
        for (const server of order) {
          const result = await measure(server, jobsFor(server.url, snapshot.size, shape));
          const key = `${server.label}/${shape}`;
          samples.set(key, [...(samples.get(key) ?? []), result]);
          log(`serving run ${i}/${runs}, ${shape === 1 ? '1 stream' : `${shape} ranges`}: ${server.label} ${fmtThroughput(result)}`);
        }
      }
    }
    return shapes.map((shape) => {
      const [ours, theirs, node] = servers.map((s) => medianThroughput(samples.get(`${s.label}/${shape}`) ?? []));
      const vsNginx = ours.mbps / theirs.mbps;
      return {
        section: SECTION,
        metric: `${cachewd.label}, ${shape === 1 ? '1 stream' : `${shape} parallel ranges`}`,
        ours: fmtThroughput(ours),
        baseline: `nginx ${fmtThroughput(theirs)}; Node ceiling ${fmtThroughput(node)}`,
        ratio: `${ratio(vsNginx)} nginx, ${ratio(ours.mbps / node.mbps)} ceiling`,
        aim: `≥ ${AIM}× nginx`,
        met: vsNginx >= AIM,
        note: `curl over loopback, ≥ ${MIN_BYTES / 2 ** 30} GiB per measurement; the Node ceiling is a minimal Node file server (4 MiB reads piped to the socket), nginx uses sendfile; CPU = server process (+ nginx workers) user+system time`,
      };
    });
  } finally {
    await ceiling.stop();
    await nginx.stop();
  }
}
