/**
 * Retention (SPEC §6): keep the current snapshot plus superseded ones for a grace period, so downloads
 * that resolved the stable URL a moment ago can finish on the immutable URL; delete the rest, and the
 * blobs nothing references any more. Storage per repository in steady state is one snapshot.
 *
 * Safe to run concurrently on several replicas and to repeat: every step is a delete (deleting
 * something already gone is fine) or a compare-and-swap on the pointer, and the order — records first,
 * then blobs — never leaves a record naming a blob that retention removed.
 *
 * Scope: one repository. A snapshot blob is only ever referenced from its own repository's records
 * (archives embed the upstream URL, so two repositories never share a snapshot digest), hence only
 * that repository's records and bundle records are scanned. Bundle blobs can coincide across forks;
 * a fork whose bundle blob was removed sees a record without a blob and regenerates it.
 */
import type { Cache } from '../cache/cache.js';
import { blobKey } from '../cache/write.js';
import type { Logger } from '../util/logger.js';
import { silentLogger } from '../util/logger.js';
import { listBundleRecords, listSnapshotRecords, recordKey } from './records.js';
import { readPointer, swapPointer, type SnapshotPointer } from './pointer.js';

export interface GarbageOptions {
  host: string;
  repo: string;
  /** Current time in ms since the epoch (the store's clock). */
  now: number;
  /** How long a snapshot stays after it stopped being current. */
  graceMs: number;
  logger?: Logger;
  signal?: AbortSignal;
}

/** What one run removed (keys and digests), for logs and tests. */
export interface GarbageReport {
  records: string[];
  bundles: string[];
  blobs: string[];
}

const MAX_PRUNE_ATTEMPTS = 4;

/**
 * Deletes the records of snapshots that stopped being current more than `graceMs` ago (never the
 * current one), bundle records past their expiry, then every blob of those that no remaining record,
 * bundle record or the pointer references, and finally prunes the pointer's `superseded` list.
 *
 * When a snapshot stopped being current is its `superseded` entry's time; a record that never became
 * current (a stale replica's publish, or one whose entry was pruned) counts from its `created` time.
 *
 * `cache` is where records and pointers live (the store's metadata cache, i.e. the authoritative
 * tier); blob deletes go through it too. SnapshotStore.collectGarbage runs this with its own clock.
 */
export async function collectGarbage(cache: Cache, options: GarbageOptions): Promise<GarbageReport> {
  const { host, repo, now, graceMs, signal } = options;
  const logger = options.logger ?? silentLogger;
  const report: GarbageReport = { records: [], bundles: [], blobs: [] };

  const pointer = (await readPointer(cache, host, repo, signal))?.value;
  const stoppedAt = new Map<string, number>();
  for (const entry of pointer?.superseded ?? []) {
    stoppedAt.set(entry.commit, Math.max(stoppedAt.get(entry.commit) ?? 0, Date.parse(entry.at)));
  }

  const candidates = new Set<string>();
  for (const record of await listSnapshotRecords(cache, host, repo, signal)) {
    if (record.commit === pointer?.commit) continue;
    const since = stoppedAt.get(record.commit) ?? Date.parse(record.created);
    if (since + graceMs > now) continue;
    const key = recordKey(host, repo, record.commit);
    await cache.delete(key, signal);
    report.records.push(key);
    candidates.add(record.digest);
  }

  for (const bundle of await listBundleRecords(cache, host, repo, signal)) {
    if (bundle.expires === undefined || Date.parse(bundle.expires) > now) continue;
    await cache.delete(bundle.key, signal);
    report.bundles.push(bundle.key);
    candidates.add(bundle.digest);
  }

  if (candidates.size > 0) {
    // Re-read what remains rather than trusting the first listing: another replica may have written
    // a record (e.g. republished a commit) in the meantime.
    const referenced = new Set<string>();
    for (const record of await listSnapshotRecords(cache, host, repo, signal)) referenced.add(record.digest);
    for (const bundle of await listBundleRecords(cache, host, repo, signal)) referenced.add(bundle.digest);
    const latest = (await readPointer(cache, host, repo, signal))?.value;
    if (latest) referenced.add(latest.digest);
    for (const digest of candidates) {
      if (referenced.has(digest)) continue;
      await cache.delete(blobKey(digest), signal);
      report.blobs.push(digest);
    }
  }

  await prunePointer(cache, host, repo, signal);
  if (report.records.length + report.bundles.length + report.blobs.length > 0) {
    logger.info({ host, repo, ...counts(report) }, 'snapshot retention');
  }
  return report;
}

function counts(report: GarbageReport): Record<string, number> {
  return { records: report.records.length, bundles: report.bundles.length, blobs: report.blobs.length };
}

/**
 * Drops `superseded` entries whose record no longer exists or that name the current commit. Gives up
 * quietly when publishers keep winning the compare-and-swap: a stale entry is harmless, and the next
 * run prunes it.
 */
async function prunePointer(cache: Cache, host: string, repo: string, signal?: AbortSignal): Promise<void> {
  for (let attempt = 0; attempt < MAX_PRUNE_ATTEMPTS; attempt++) {
    const current = await readPointer(cache, host, repo, signal);
    if (!current) return;
    const existing = new Set((await listSnapshotRecords(cache, host, repo, signal)).map((r) => r.commit));
    const kept = current.value.superseded.filter(
      (entry) => entry.commit !== current.value.commit && existing.has(entry.commit),
    );
    if (kept.length === current.value.superseded.length) return;
    const next: SnapshotPointer = { ...current.value, superseded: kept };
    if (await swapPointer(cache, host, repo, current.etag, next, signal)) return;
  }
}
