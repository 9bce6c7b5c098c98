/**
 * Soak test of the S3 backend against moto_server (opt-in: `SOAK=1`). A large generated object streams
 * through S3Cache and through tiered(memory+disk+s3) while this process's RSS is sampled, proving that
 * neither the multipart writer nor the parallel ranged reader buffers the object; then concurrent
 * writers and readers on a few keys check every byte they read. moto keeps objects in its own (Python)
 * memory, so only our process is measured. Tunables: SOAK_S3_MB (default 1024), SOAK_S3_SECONDS
 * (default 10), SOAK_S3_RSS_LIMIT_MB (default 200: S3Cache buffers ~2 parts of 8 MiB per write and
 * a large read fetches 4 chunks of 8 MiB at a time, plus the SDK's and Node's socket buffers).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DeleteObjectsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { ByteRangeRequest } from '../src/protocol/range.js';
import type { Cache, ObjectMeta, OpenResult } from '../src/cache/cache.js';
import { DiskCache } from '../src/cache/disk.js';
import { MemoryCache } from '../src/cache/memory.js';
import { S3Cache } from '../src/cache/s3.js';
import { TieredCache } from '../src/cache/tiered.js';
import { generatedStream, hashStream, pseudoRandomBytes } from '../src/cache/testing/data.js';
import { writeStream } from '../src/cache/write.js';
import { AlreadyExistsError, PreconditionFailedError, RangeNotSatisfiableError } from '../src/util/errors.js';
import { createBucket, s3ClientFor, startMoto, type MotoServer } from './harness/moto.js';

const enabled = process.env.SOAK === '1';
const MB = 1024 * 1024;
const BIG_BYTES = Number(process.env.SOAK_S3_MB ?? 1024) * MB;
const SECONDS = Number(process.env.SOAK_S3_SECONDS ?? 10);
const RSS_LIMIT = Number(process.env.SOAK_S3_RSS_LIMIT_MB ?? 200) * MB;
/** generatedStream's default chunk size; expected digests of ranges regenerate exactly these chunks. */
const GEN_CHUNK = MB;
const BUCKET = 'cachew-soak';
const BIG_SEED = 11;

let moto: MotoServer | undefined;
let client: S3Client | undefined;

function s3(prefix: string): S3Cache {
  assert.ok(client, 'moto not started');
  return new S3Cache({ client, bucket: BUCKET, prefix });
}

/** Deletes every object under `prefix/` so moto's memory does not accumulate across tests. */
async function removeAll(prefix: string): Promise<void> {
  if (!client) return;
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}/`, ContinuationToken: token }));
    const Objects = (page.Contents ?? []).flatMap((entry) => (entry.Key ? [{ Key: entry.Key }] : []));
    if (Objects.length > 0) await client.send(new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects } }));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
}

/** sha256 of bytes [start, end] of generatedStream(total, seed), regenerated one chunk at a time. */
function expectedDigest(seed: number, total: number, start: number, end: number): string {
  const hash = createHash('sha256');
  for (let index = Math.floor(start / GEN_CHUNK); index * GEN_CHUNK <= end; index++) {
    const chunkStart = index * GEN_CHUNK;
    const chunk = pseudoRandomBytes(Math.min(GEN_CHUNK, total - chunkStart), seed + index * 7919);
    hash.update(chunk.subarray(Math.max(0, start - chunkStart), Math.min(chunk.length, end - chunkStart + 1)));
  }
  return hash.digest('hex');
}

/** Samples this process's RSS every 100 ms between start() and stop(). */
class RssSampler {
  readonly baseline: number;
  peak: number;
  private timer: NodeJS.Timeout | undefined;

  constructor() {
    global.gc?.();
    this.baseline = process.memoryUsage().rss;
    this.peak = this.baseline;
  }

  async phase<T>(fn: () => Promise<T>): Promise<{ value: T; peak: number }> {
    let phasePeak = process.memoryUsage().rss;
    const sample = (): void => {
      const rss = process.memoryUsage().rss;
      phasePeak = Math.max(phasePeak, rss);
      this.peak = Math.max(this.peak, rss);
    };
    this.timer = setInterval(sample, 100);
    try {
      const value = await fn();
      sample();
      return { value, peak: phasePeak };
    } finally {
      clearInterval(this.timer);
    }
  }

  describe(label: string, peak: number): string {
    return `${label} peak ${(peak / MB).toFixed(0)} MiB (+${((peak - this.baseline) / MB).toFixed(1)})`;
  }
}

/** Large ranges (as fractions of the object) crossing generator chunks and S3 chunks at odd offsets. */
function bigRanges(size: number): ByteRangeRequest[] {
  return [
    { kind: 'bounded', start: 3, end: Math.floor(size * 0.2) },
    { kind: 'bounded', start: Math.floor(size * 0.5) - 777, end: Math.floor(size * 0.6) + 12_345 },
    { kind: 'suffix', length: Math.floor(size * 0.15) + 5 },
    // Below the 16 MiB parallel threshold: one streamed GET.
    { kind: 'open', start: size - Math.min(10 * MB, Math.floor(size / 4)) - 1 },
  ];
}

/** Reads `key` from `cache` in full and through bigRanges, checking every byte; returns the sources. */
async function verifyBig(cache: Cache, key: string, meta: ObjectMeta): Promise<string[]> {
  const sources: string[] = [];
  const full = await cache.open(key);
  assert.ok(full, `${key} missing from ${cache.name}`);
  assert.deepEqual(await hashStream(full.body), { sha256: meta.etag, size: BIG_BYTES });
  sources.push(`full:${full.source}`);
  for (const range of bigRanges(BIG_BYTES)) {
    const result = await cache.open(key, { range });
    assert.ok(result?.range, `range ${JSON.stringify(range)} of ${key} not served as 206`);
    const { start, end } = result.range;
    const got = await hashStream(result.body);
    assert.equal(got.size, end - start + 1, `length of ${start}-${end}`);
    assert.equal(got.sha256, expectedDigest(BIG_SEED, BIG_BYTES, start, end), `bytes ${start}-${end} of ${key}`);
    sources.push(`${start}-${end}:${result.source}`);
  }
  return sources;
}

/** Writes the big object through `cache` and verifies it, all under `rss`; logs the numbers. */
async function bigRoundTrip(label: string, cache: Cache, rss: RssSampler, key: string): Promise<void> {
  const started = Date.now();
  const write = await rss.phase(async () => {
    const source = generatedStream(BIG_BYTES, BIG_SEED);
    const meta = await writeStream(cache, key, source);
    assert.equal(meta.etag, source.digest());
    assert.equal(meta.size, BIG_BYTES);
    return meta;
  });
  const writeSeconds = (Date.now() - started) / 1000;
  const read = await rss.phase(() => verifyBig(cache, key, write.value));
  const readSeconds = (Date.now() - started) / 1000 - writeSeconds;
  console.log(
    `  ${label}: ${BIG_BYTES / MB} MiB, write ${writeSeconds.toFixed(0)}s, read full+${bigRanges(BIG_BYTES).length} ranges ` +
      `${readSeconds.toFixed(0)}s; rss baseline ${(rss.baseline / MB).toFixed(0)} MiB, ` +
      `${rss.describe('write', write.peak)}, ${rss.describe('read', read.peak)}; served by ${read.value.join(' ')}`,
  );
}

function assertBounded(rss: RssSampler): void {
  const growth = rss.peak - rss.baseline;
  console.log(`  rss: baseline ${(rss.baseline / MB).toFixed(0)} MiB, peak ${(rss.peak / MB).toFixed(0)} MiB, growth ${(growth / MB).toFixed(1)} MiB (limit ${RSS_LIMIT / MB})`);
  assert.ok(growth < RSS_LIMIT, `rss grew by ${(growth / MB).toFixed(1)} MiB (limit ${RSS_LIMIT / MB} MiB)`);
}

interface ChurnStats {
  writes: number;
  conflicts: number;
  reads: number;
  ranged: number;
  replacedMidRead: number;
  bytesRead: number;
}

/** Writers and readers on a few keys of `cache` for `seconds`; every byte read is checked. */
async function churn(cache: Cache, seconds: number): Promise<ChurnStats> {
  const deadline = Date.now() + seconds * 1000;
  const stats: ChurnStats = { writes: 0, conflicts: 0, reads: 0, ranged: 0, replacedMidRead: 0, bytesRead: 0 };
  let seedCounter = 1000;
  const keyOf = (): string => `k${Math.floor(Math.random() * 4)}`;
  // Half small, half up to 20 MiB so both the single-GET and the parallel-chunk read paths run.
  const sizeOf = (): number => Math.floor(Math.random() * (Math.random() < 0.5 ? MB : 20 * MB));
  const writer = async (): Promise<void> => {
    while (Date.now() < deadline) {
      const seed = seedCounter++;
      const source = generatedStream(sizeOf(), seed);
      const ifNoneMatch = Math.random() < 0.2 ? ('*' as const) : undefined;
      try {
        const meta = await writeStream(cache, keyOf(), source, { metadata: { seed: String(seed) }, ifNoneMatch });
        assert.equal(meta.etag, source.digest());
        stats.writes++;
      } catch (err) {
        if (!(err instanceof AlreadyExistsError)) throw err;
        stats.conflicts++;
      }
    }
  };
  /** Checks one read; a key replaced while being read must fail the read, never mix versions. */
  const check = async (result: OpenResult): Promise<void> => {
    const start = result.range?.start ?? 0;
    const end = result.range?.end ?? result.meta.size - 1;
    let got: { sha256: string; size: number };
    try {
      got = await hashStream(result.body);
    } catch (err) {
      if (!(err instanceof PreconditionFailedError)) throw err;
      stats.replacedMidRead++;
      return;
    }
    assert.equal(got.size, end - start + 1);
    const seed = Number(result.meta.metadata.seed);
    if (!result.range) assert.equal(got.sha256, result.meta.etag, `full read of ${result.meta.key}`);
    assert.equal(got.sha256, expectedDigest(seed, result.meta.size, start, end), `bytes ${start}-${end} of ${result.meta.key}`);
    stats.bytesRead += got.size;
    if (result.range) stats.ranged++;
    else stats.reads++;
  };
  const reader = async (): Promise<void> => {
    while (Date.now() < deadline) {
      const key = keyOf();
      const meta = await cache.stat(key);
      if (!meta) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        continue;
      }
      let result: OpenResult | undefined;
      try {
        if (Math.random() < 0.5 || meta.size === 0) {
          result = await cache.open(key);
        } else {
          const start = Math.floor(Math.random() * meta.size);
          const end = start + Math.floor(Math.random() * (meta.size - start));
          result = await cache.open(key, { range: { kind: 'bounded', start, end } });
        }
      } catch (err) {
        // Replaced by a shorter version between stat and open (416), or kept changing under open().
        if (err instanceof RangeNotSatisfiableError || err instanceof PreconditionFailedError) continue;
        throw err;
      }
      if (result) await check(result);
    }
  };
  // allSettled: every worker must have stopped before the caller removes the objects.
  const outcomes = await Promise.allSettled([...Array.from({ length: 3 }, writer), ...Array.from({ length: 4 }, reader)]);
  for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;
  return stats;
}

void describe('s3 cache soak (SOAK=1)', { skip: !enabled && 'set SOAK=1 to run' }, () => {
  before(async () => {
    if (!enabled) return;
    moto = await startMoto();
    client = s3ClientFor(moto);
    await createBucket(moto, BUCKET);
  });

  after(async () => {
    client?.destroy();
    await moto?.stop();
  });

  void test(`s3: a ${BIG_BYTES / MB} MiB object streams in and out with bounded memory`, { timeout: 1_200_000 }, async () => {
    const cache = s3('big');
    try {
      const rss = new RssSampler();
      await bigRoundTrip('s3', cache, rss, 'soak/big');
      assertBounded(rss);
    } finally {
      await cache.close();
      await removeAll('big');
    }
  });

  void test(`tiered(memory+disk+s3): a ${BIG_BYTES / MB} MiB object streams through with bounded memory`, { timeout: 1_200_000 }, async () => {
    const roots = [await mkdtemp(join(tmpdir(), 'cachew-soak-s3-')), await mkdtemp(join(tmpdir(), 'cachew-soak-s3-'))];
    const remote = s3('tiered');
    const caches: Cache[] = [];
    const tiered = async (root: string): Promise<TieredCache> => {
      const cache = new TieredCache([new MemoryCache({ limitBytes: 64 * MB }), await DiskCache.open({ root, limitBytes: 4 * 1024 * MB }), remote]);
      caches.push(cache);
      return cache;
    };
    try {
      const rss = new RssSampler();
      const first = await tiered(roots[0]!);
      await bigRoundTrip('tiered', first, rss, 'soak/big');
      // A second node with empty local tiers: the full read comes from S3 and is backfilled into disk.
      const secondDisk = await DiskCache.open({ root: roots[1]!, limitBytes: 4 * 1024 * MB });
      const second = new TieredCache([new MemoryCache({ limitBytes: 64 * MB }), secondDisk, remote]);
      caches.push(second);
      const meta = await remote.stat('soak/big');
      assert.ok(meta);
      const cold = await rss.phase(() => verifyBig(second, 'soak/big', meta));
      assert.equal(cold.value[0], 'full:s3', 'the cold node reads from s3');
      assert.equal((await secondDisk.stat('soak/big'))?.etag, meta.etag, 'the cold read was backfilled into disk');
      console.log(`  tiered cold node: ${rss.describe('read', cold.peak)}; served by ${cold.value.join(' ')}`);
      assertBounded(rss);
    } finally {
      for (const cache of caches) await cache.close();
      await removeAll('tiered');
      for (const root of roots) await rm(root, { recursive: true, force: true });
    }
  });

  void test(`s3: concurrent writers and readers for ${SECONDS}s, every byte checked`, { timeout: (SECONDS + 300) * 1000 }, async () => {
    const cache = s3('churn');
    try {
      const rss = new RssSampler();
      const { value: stats, peak } = await rss.phase(() => churn(cache, SECONDS));
      console.log(
        `  s3 churn: ${stats.writes} writes (${stats.conflicts} if-none-match conflicts), ${stats.reads} full reads, ` +
          `${stats.ranged} ranged reads, ${stats.replacedMidRead} reads failed cleanly on a concurrent replace, ` +
          `${(stats.bytesRead / MB).toFixed(0)} MiB checked; ${rss.describe('rss', peak)}`,
      );
      assert.ok(stats.writes > 0 && stats.reads > 0 && stats.ranged > 0);
    } finally {
      await cache.close();
      await removeAll('churn');
    }
  });
});
