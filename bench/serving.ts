/**
 * Section 2, serving: a 4-way parallel ranged download (16 MiB chunks over keep-alive connections)
 * of the snapshot from cachewd's immutable URL vs nginx serving a byte-identical copy of the same
 * file on loopback. Both are read by the same client code in this process.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { rangedDownload } from './http-get.js';
import { findNginx, startNginx } from './nginx.js';
import { ratio, skippedRow, type Row } from './table.js';
import { Cleanup, MiB, log, median, tempDir } from './util.js';

const SECTION = 'serving';
const PARALLEL = 4;
const CHUNK = 16 * MiB;

export interface ServedSnapshot {
  /** Absolute URL of the immutable snapshot on cachewd. */
  url: string;
  size: number;
  digest: string;
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

const mbps = (bytes: number, ms: number): number => bytes / MiB / (ms / 1000);

export async function benchServing(snapshot: ServedSnapshot, runs: number, cleanup: Cleanup): Promise<Row[]> {
  const metric = `${PARALLEL}-way ranged download throughput`;
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
  try {
    const file = path.join(nginx.docRoot, 'snapshot.tar.zst');
    await saveVerified(snapshot.url, file, snapshot.digest);
    await chmod(file, 0o644);
    const nginxUrl = `${nginx.url}/snapshot.tar.zst`;

    // One unmeasured pass each: page cache, cachewd's memory tier and JIT warm for both sides.
    await rangedDownload(snapshot.url, snapshot.size, PARALLEL, CHUNK);
    await rangedDownload(nginxUrl, snapshot.size, PARALLEL, CHUNK);

    const ours: number[] = [];
    const theirs: number[] = [];
    for (let i = 1; i <= runs; i++) {
      const sides: Array<() => Promise<void>> = [
        async () => {
          const s = await rangedDownload(snapshot.url, snapshot.size, PARALLEL, CHUNK);
          ours.push(mbps(s.bytes, s.ms));
        },
        async () => {
          const s = await rangedDownload(nginxUrl, snapshot.size, PARALLEL, CHUNK);
          theirs.push(mbps(s.bytes, s.ms));
        },
      ];
      if (i % 2 === 0) sides.reverse();
      for (const side of sides) await side();
      log(`serving run ${i}/${runs}: cachewd ${ours[ours.length - 1].toFixed(0)} MiB/s, nginx ${theirs[theirs.length - 1].toFixed(0)} MiB/s`);
    }
    const oursMbps = median(ours);
    const nginxMbps = median(theirs);
    return [
      {
        section: SECTION,
        metric,
        ours: `${oursMbps.toFixed(0)} MiB/s`,
        baseline: `${nginxMbps.toFixed(0)} MiB/s (nginx)`,
        ratio: ratio(oursMbps / nginxMbps),
        aim: '≥ 0.8×',
        met: oursMbps / nginxMbps >= 0.8,
        note: `${CHUNK / MiB} MiB chunks, keep-alive; nginx: sendfile on, worker_processes auto`,
      },
    ];
  } finally {
    await nginx.stop();
  }
}
