/**
 * Soak test of the local cache backends (opt-in: `SOAK=1`). Concurrent writers and readers on memory,
 * disk and tiered(memory+disk) check every byte they read; a 1 GiB object streams through disk and
 * tiered while RSS is sampled to prove that nothing buffers it. Tunables: SOAK_SECONDS (default 20),
 * SOAK_BIG_MB (default 1024), SOAK_RSS_LIMIT_MB (default 150).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { Cache, OpenResult } from '../src/cache/cache.js';
import { DiskCache } from '../src/cache/disk.js';
import { MemoryCache } from '../src/cache/memory.js';
import { TieredCache } from '../src/cache/tiered.js';
import { generatedStream, hashStream, pseudoRandomBytes, readAll, sha256 } from '../src/cache/testing/conformance.js';
import { writeStream } from '../src/cache/write.js';
import { AlreadyExistsError, RangeNotSatisfiableError } from '../src/util/errors.js';

const enabled = process.env.SOAK === '1';
const SECONDS = Number(process.env.SOAK_SECONDS ?? 20);
const BIG_BYTES = Number(process.env.SOAK_BIG_MB ?? 1024) * 1024 * 1024;
const RSS_LIMIT = Number(process.env.SOAK_RSS_LIMIT_MB ?? 150) * 1024 * 1024;
const MB = 1024 * 1024;

interface Target {
  cache: Cache;
  cleanup(): Promise<void>;
}

async function makeTarget(kind: 'memory' | 'disk' | 'tiered'): Promise<Target> {
  if (kind === 'memory') {
    const cache = new MemoryCache({ limitBytes: 64 * MB });
    return { cache, cleanup: () => cache.close() };
  }
  const root = await mkdtemp(join(tmpdir(), `cachew-soak-${kind}-`));
  const disk = await DiskCache.open({ root, limitBytes: 4 * 1024 * MB });
  const cache = kind === 'disk' ? disk : new TieredCache([new MemoryCache({ limitBytes: 64 * MB }), disk]);
  return {
    cache,
    async cleanup() {
      await cache.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Content is a pure function of (seed, size), recorded in metadata, so any reader can check any range. */
function content(seed: number, size: number): Buffer {
  return pseudoRandomBytes(size, seed);
}

async function churn(cache: Cache, seconds: number): Promise<{ writes: number; reads: number; ranged: number }> {
  const deadline = Date.now() + seconds * 1000;
  const stats = { writes: 0, reads: 0, ranged: 0 };
  let seedCounter = 1;
  const keyOf = (): string => `soak/k${Math.floor(Math.random() * 40)}`;
  // Memory-only work never leaves the microtask queue, so every worker yields to the event loop once
  // per iteration; otherwise writers on MemoryCache would starve the readers completely.
  const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  const writer = async (): Promise<void> => {
    while (Date.now() < deadline) {
      await yieldToLoop();
      const seed = seedCounter++;
      const size = Math.random() < 0.1 ? Math.floor(Math.random() * 4 * MB) : Math.floor(Math.random() * 64 * 1024);
      const data = content(seed, size);
      const options = { metadata: { seed: String(seed) }, ifNoneMatch: Math.random() < 0.3 ? ('*' as const) : undefined };
      try {
        const meta = await writeStream(cache, keyOf(), [data.subarray(0, size >> 1), data.subarray(size >> 1)], options);
        assert.equal(meta.etag, sha256(data));
        stats.writes++;
      } catch (err) {
        if (!(err instanceof AlreadyExistsError)) throw err;
      }
    }
  };
  const reader = async (): Promise<void> => {
    while (Date.now() < deadline) {
      await yieldToLoop();
      const key = keyOf();
      const meta = await cache.stat(key);
      if (!meta) continue;
      if (Math.random() < 0.5) {
        const result = await cache.open(key);
        if (!result) continue;
        const got = await hashStream(result.body);
        assert.equal(got.sha256, result.meta.etag, `full read of ${key}`);
        assert.equal(got.sha256, sha256(content(Number(result.meta.metadata.seed), result.meta.size)));
        stats.reads++;
      } else if (meta.size > 0) {
        const start = Math.floor(Math.random() * meta.size);
        let result: OpenResult | undefined;
        try {
          result = await cache.open(key, { range: { kind: 'open', start } });
        } catch (err) {
          // Replaced by a shorter version between stat and open: a correct 416.
          if (err instanceof RangeNotSatisfiableError) continue;
          throw err;
        }
        if (!result?.range) {
          result?.body?.destroy();
          continue;
        }
        const expected = content(Number(result.meta.metadata.seed), result.meta.size).subarray(result.range.start, result.range.end + 1);
        assert.ok((await readAll(result.body)).equals(expected), `ranged read of ${key}`);
        stats.ranged++;
      }
    }
  };
  // allSettled: every worker must have stopped before the caller removes the cache's directory.
  const outcomes = await Promise.allSettled([...Array.from({ length: 6 }, writer), ...Array.from({ length: 10 }, reader)]);
  for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;
  return stats;
}

/** Streams `BIG_BYTES` in and out of `cache`, sampling RSS; returns the peak growth over the baseline. */
async function bigObject(cache: Cache): Promise<number> {
  global.gc?.();
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  try {
    const source = generatedStream(BIG_BYTES, 7);
    const meta = await writeStream(cache, 'soak/big', source);
    assert.equal(meta.etag, source.digest());
    for (let i = 0; i < 2; i++) {
      // The second read is served by the nearest tier holding it (tiered: memory is too small for it).
      const result = await cache.open('soak/big');
      assert.deepEqual(await hashStream(result?.body), { sha256: meta.etag, size: BIG_BYTES });
    }
  } finally {
    clearInterval(sampler);
  }
  const growth = peak - baseline;
  console.log(`  ${cache.name}: ${BIG_BYTES / MB} MiB object, rss baseline ${(baseline / MB).toFixed(0)} MiB, peak growth ${(growth / MB).toFixed(1)} MiB`);
  return growth;
}

void describe('cache soak (SOAK=1)', { skip: !enabled && 'set SOAK=1 to run' }, () => {
  for (const kind of ['disk', 'tiered'] as const) {
    void test(`${kind}: a ${BIG_BYTES / MB} MiB object streams through with bounded memory`, { timeout: 900_000 }, async () => {
      const target = await makeTarget(kind);
      try {
        const growth = await bigObject(target.cache);
        assert.ok(growth < RSS_LIMIT, `rss grew by ${(growth / MB).toFixed(1)} MiB (limit ${RSS_LIMIT / MB} MiB)`);
      } finally {
        await target.cleanup();
      }
    });
  }
  for (const kind of ['memory', 'disk', 'tiered'] as const) {
    void test(`${kind}: concurrent writers and readers, every byte checked`, { timeout: (SECONDS + 120) * 1000 }, async () => {
      const target = await makeTarget(kind);
      try {
        const stats = await churn(target.cache, SECONDS);
        console.log(`  ${kind}: ${stats.writes} writes, ${stats.reads} full reads, ${stats.ranged} ranged reads in ${SECONDS}s`);
        assert.ok(stats.writes > 0 && stats.reads > 0 && stats.ranged > 0);
      } finally {
        await target.cleanup();
      }
    });
  }
});
