/**
 * Delta bundle records (SPEC §3 `snapshot.bundle?base=`): a bundle's bytes are a content-addressed
 * blob and `bundles/<host>/<repo>/<base>..<head>.json` names it, both with the cache's TTL. The
 * bundle itself is made by the caller (git/bundle.ts against the mirror); this module only stores it:
 * first writer wins, one build per key in this process, a record whose blob vanished is rebuilt.
 */
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cache } from '../cache/cache.js';
import { blobKey, putBlob } from '../cache/write.js';
import { isSha256Hex } from '../protocol/etag.js';
import { AlreadyExistsError, BadRequestError, UnavailableError } from '../util/errors.js';
import { SingleFlight } from '../util/single-flight.js';
import { BLOB_METADATA, bundleKey, parseBundleRecord, readJson, writeJson, type BundleRecord } from './records.js';

export interface GetOrCreateBundleOptions {
  cache: Cache;
  host: string;
  repo: string;
  base: string;
  head: string;
  /** Lifetime of both the record and the blob. */
  ttlMs: number;
  /** Writes the bundle to `outPath` (normally createBundle against the mirror). */
  make: (outPath: string) => Promise<{ sha256: string; size: number }>;
  /** Scratch directory for the bundle file being built (default: the OS temp dir). */
  workDir?: string;
  now?: () => number;
  signal?: AbortSignal;
}

/** One build per bundle key and cache (tests run several caches in one process). */
const flights = new WeakMap<Cache, SingleFlight<BundleRecord>>();
const MAX_BUNDLE_ATTEMPTS = 3;

/**
 * The bundle record for base..head, creating bundle and record on a miss. First writer wins
 * (create-if-absent), concurrent callers in this process share one build, and a record whose blob has
 * expired or vanished is replaced. Callers check `base` against the mirror first.
 */
export async function getOrCreateBundle(options: GetOrCreateBundleOptions): Promise<BundleRecord> {
  const key = bundleKey(options.host, options.repo, options.base, options.head);
  let flight = flights.get(options.cache);
  if (!flight) {
    flight = new SingleFlight();
    flights.set(options.cache, flight);
  }
  return flight.run(key, () => buildBundle(key, options));
}

async function buildBundle(key: string, options: GetOrCreateBundleOptions): Promise<BundleRecord> {
  const { cache, base, head, ttlMs, signal } = options;
  const now = options.now ?? Date.now;
  for (let attempt = 0; attempt < MAX_BUNDLE_ATTEMPTS; attempt++) {
    const existing = (await readJson(cache, key, parseBundleRecord, signal))?.value;
    if (existing) {
      if (await cache.stat(blobKey(existing.digest), signal)) return existing;
      await cache.delete(key, signal);
    }
    const parent = options.workDir ?? tmpdir();
    await mkdir(parent, { recursive: true });
    const dir = await mkdtemp(join(parent, 'cachew-bundle-'));
    try {
      const outPath = join(dir, 'delta.bundle');
      const made = await options.make(outPath);
      if (!isSha256Hex(made.sha256)) throw new BadRequestError(`bundle maker returned a bad digest: ${made.sha256}`);
      const blob = await putBlob(cache, made.sha256, () => createReadStream(outPath), { ttlMs, signal, metadata: BLOB_METADATA });
      const created = now();
      const record: BundleRecord = {
        base,
        head,
        digest: made.sha256,
        size: blob.meta.size,
        created: new Date(created).toISOString(),
        expires: new Date(created + ttlMs).toISOString(),
      };
      try {
        await writeJson(cache, key, record, { ifNoneMatch: '*', ttlMs, signal });
        return record;
      } catch (err) {
        if (!(err instanceof AlreadyExistsError)) throw err;
        const winner = (await readJson(cache, key, parseBundleRecord, signal))?.value;
        // Only a blob this call created can be unreferenced; an existing one may serve another record.
        if (blob.created && winner?.digest !== made.sha256) await cache.delete(blobKey(made.sha256), signal);
        if (winner && (await cache.stat(blobKey(winner.digest), signal))) return winner;
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  throw new UnavailableError(`could not store the bundle ${base}..${head}`, 1);
}
