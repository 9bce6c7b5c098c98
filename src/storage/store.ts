/**
 * The snapshot store (SPEC §5, §6): content-addressed blobs, write-once records and a forward-only
 * pointer, on top of any Cache (in production the tiered cache whose authoritative tier is S3). This
 * file publishes; reader.ts reads.
 *
 * Correctness never depends on archive determinism: the first record written for a commit wins
 * everywhere, a replica that loses discards its bytes and serves the winner's, and every object is
 * published only once complete (the Cache contract), so a crash leaves nothing half-visible.
 */
import { createReadStream } from 'node:fs';
import type { Cache } from '../cache/cache.js';
import { blobKey, putBlob, type PutBlobResult } from '../cache/write.js';
import { getOrCreateBundle, type GetOrCreateBundleOptions } from './bundles.js';
import type { Logger } from '../util/logger.js';
import { silentLogger } from '../util/logger.js';
import { AlreadyExistsError, BadRequestError, CachewError, NotFoundError, UnavailableError } from '../util/errors.js';
import { isSha256Hex } from '../protocol/etag.js';
import { isCommit } from '../protocol/routes.js';
import {
  listBundleRecords,
  listSnapshotRecords,
  parseSnapshotRecord,
  readJson,
  readSnapshotRecord,
  recordKey,
  writeJson,
  BLOB_METADATA,
  type BundleRecord,
  type SnapshotRecord,
  type RecordFrame,
} from './records.js';
import { advancePointer, type AncestryCheck } from './pointer.js';
import { SnapshotReader, type SnapshotReaderOptions } from './reader.js';
import { collectGarbage, type GarbageReport } from './retention.js';
import type { PendingSnapshot, PublishBacklog } from './backlog.js';
import { isOutage } from '../cache/guarded.js';

export interface SnapshotStoreOptions extends SnapshotReaderOptions {
  logger?: Logger;
  /** How long a superseded snapshot stays servable (SPEC §6 default 1 h). */
  graceMs: number;
  /** Clock in ms since the epoch (tests inject one). */
  now?: () => number;
  /** Keep publishing locally while the shared tier is unreachable; unset: such a publish fails. */
  degraded?: DegradedPublishing;
}

interface PublishCommon {
  host: string;
  repo: string;
  commit: string;
  /** Decides whether the pointer may move from its commit to ours (see pointer.ts). */
  isAncestor?: AncestryCheck;
  /** Move the pointer even when its commit is not an ancestor of ours (known force-push). */
  force?: boolean;
  signal?: AbortSignal;
}

/** A freshly generated archive to store. */
export interface PublishFile extends PublishCommon {
  /** Local path of the complete `.tar.zst`. */
  file: string;
  /** sha256 hex of the file, verified again while storing. */
  sha256: string;
  size: number;
  /** Snapshot format version of the archive generator. */
  format?: string;
  /** The archive's frame table (format v3 and later). */
  frames?: RecordFrame[];
}

/** A commit that already has a record: only (re-)advance the pointer to it. */
export interface PublishExisting extends PublishCommon {
  existing: SnapshotRecord;
}

export type PublishInput = PublishFile | PublishExisting;

/**
 * How old a local copy of a snapshot-store key may be to answer while the shared tier is unreachable
 * (the `staleLimitMs` of cache/authoritative-view.ts): the pointer moves, so its copy is trusted for
 * `pointerMs`; a record is written once per commit, so any copy of it is right; leases, bundle and
 * checkpoint records are never answered locally.
 */
export function staleReadLimits(pointerMs: number): (key: string) => number {
  return (key) => (key.startsWith('pointers/') ? pointerMs : key.startsWith('records/') ? Number.POSITIVE_INFINITY : 0);
}

/** How often publish re-tries when records or blobs vanish under it (concurrent retention). */
const MAX_PUBLISH_ATTEMPTS = 4;

/**
 * Where snapshots go while the shared tier is unreachable (see backlog.ts): the local tiers alone
 * (TieredCache.local), the shared tier alone (to publish the backlog to), and the backlog.
 */
export interface DegradedPublishing {
  local: Cache;
  shared: Cache;
  backlog: PublishBacklog;
}

/**
 * The publish facade of snapshot storage: stores finished archives (blob, record, pointer), delta
 * bundles, and runs retention. It reads like a {@link SnapshotReader}, which the HTTP layer is handed
 * instead, so only generation publishes.
 */
export class SnapshotStore extends SnapshotReader {
  readonly graceMs: number;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly degraded?: DegradedPublishing;

  constructor(options: SnapshotStoreOptions) {
    super(options);
    this.graceMs = options.graceMs;
    this.logger = (options.logger ?? silentLogger).child({ module: 'snapshot-store' });
    this.now = options.now ?? Date.now;
    this.degraded = options.degraded;
  }

  /**
   * Publishes a finished archive: stores the blob, writes the record create-if-absent and moves the
   * pointer forward. Resolves with the record that is authoritative for the commit — ours, or the
   * winner's when another replica recorded the commit first (then our blob is deleted unless something
   * references it, and callers MUST serve the returned digest, not their local file).
   *
   * With `existing` instead of a file, only the pointer moves, to the record as stored now (which wins
   * over the caller's copy); NotFoundError when that record or its blob has meanwhile been removed.
   */
  async publish(input: PublishInput): Promise<SnapshotRecord> {
    try {
      if ('existing' in input) return await this.republish(input);
      const { sha256, file, signal } = input;
      if (!isSha256Hex(sha256)) throw new BadRequestError(`not a sha256 digest: ${sha256}`);
      const fields = { format: input.format, frames: input.frames };
      return await this.publishBlob(input, sha256, input.size, fields, () => putBlob(this.cache, sha256, () => createReadStream(file), { signal, metadata: BLOB_METADATA }));
    } catch (err) {
      // S3 unreachable: keep the snapshot locally and publish it when S3 answers again.
      if (!this.degraded || !isOutage(err) || input.signal?.aborted) throw err;
      return this.publishLocally(input, this.degraded);
    }
  }

  /**
   * Publishes a snapshot kept locally during an outage (see backlog.ts) the normal way: its blob is
   * copied from the local tiers to the shared one, then record and pointer as in publish(). Resolves
   * with the authoritative record (another replica's, if it recorded the commit first). NotFoundError
   * when the local blob is gone (evicted): the caller regenerates.
   */
  async publishPending(entry: PendingSnapshot, isAncestor: AncestryCheck, signal?: AbortSignal): Promise<SnapshotRecord> {
    const degraded = this.degraded;
    if (!degraded) throw new CachewError('internal', 'publishPending without degraded publishing configured');
    const { host, repo, commit, digest, size, format, frames, force } = entry;
    return this.publishBlob({ host, repo, commit, isAncestor, force, signal }, digest, size, { format, frames }, async () => {
      const local = await degraded.local.open(blobKey(digest), { signal });
      if (!local?.body) throw new NotFoundError(`snapshot ${digest} is no longer held locally`);
      return putBlob(degraded.shared, digest, local.body, { signal, metadata: BLOB_METADATA });
    });
  }

  /**
   * Stores the blob with `put`, writes the record create-if-absent and moves the pointer forward;
   * retries (bounded) while records or blobs vanish under it (concurrent retention).
   */
  private async publishBlob(
    input: PublishCommon,
    sha256: string,
    size: number,
    fields: Pick<SnapshotRecord, 'format' | 'frames'>,
    put: () => Promise<PutBlobResult>,
  ): Promise<SnapshotRecord> {
    const { host, repo, commit, signal } = input;
    if (!isCommit(commit)) throw new BadRequestError(`not a commit id: ${commit}`);
    const key = recordKey(host, repo, commit);
    for (let attempt = 0; attempt < MAX_PUBLISH_ATTEMPTS; attempt++) {
      const blob = await put();
      if (blob.meta.size !== size) {
        throw new CachewError('internal', `snapshot of ${commit} is ${blob.meta.size} bytes, caller said ${size}`);
      }
      const ours: SnapshotRecord = {
        commit,
        digest: sha256,
        size: blob.meta.size,
        created: new Date(this.now()).toISOString(),
      };
      if (fields.format !== undefined) ours.format = fields.format;
      if (fields.frames !== undefined) ours.frames = fields.frames;
      let record: SnapshotRecord;
      try {
        await writeJson(this.metadataCache, key, ours, { ifNoneMatch: '*', signal });
        record = ours;
      } catch (err) {
        if (!(err instanceof AlreadyExistsError)) throw err;
        const winner = (await readJson(this.metadataCache, key, parseSnapshotRecord, signal))?.value;
        if (!winner) continue; // deleted by retention meanwhile: write ours again
        if (winner.digest !== sha256) {
          if (!(await this.cache.stat(blobKey(winner.digest), signal))) {
            // The winner's bytes are gone, so its record can never be served: replace it with ours.
            this.logger.warn({ host, repo, commit, digest: winner.digest }, 'record without blob replaced');
            await this.metadataCache.delete(key, signal);
            continue;
          }
          if (blob.created) await this.deleteBlobUnlessReferenced(host, repo, sha256, signal);
          this.logger.info({ host, repo, commit, ours: sha256, winner: winner.digest }, 'lost the publish race');
        }
        record = winner;
      }
      // Retention on another replica may have deleted an identical blob it considered unreferenced
      // between our put and our record; the record must never point at nothing.
      if (record.digest === sha256 && !(await this.cache.stat(blobKey(sha256), signal))) continue;
      await this.movePointer(this.metadataCache, input, record, 'snapshot published');
      return record;
    }
    throw new UnavailableError(`could not publish snapshot of ${commit}: objects kept vanishing`, 1);
  }

  /**
   * Degraded publish: blob, record and pointer go to the local tiers only (so this replica serves the
   * snapshot at once) and the snapshot joins the backlog. A record already held locally for the commit
   * wins, as it would in S3.
   */
  private async publishLocally(input: PublishInput, degraded: DegradedPublishing): Promise<SnapshotRecord> {
    const { local, backlog } = degraded;
    const { host, repo, commit, signal } = input;
    let record: SnapshotRecord | undefined = await readSnapshotRecord(local, host, repo, commit, signal);
    if (record && !(await local.stat(blobKey(record.digest), signal))) {
      await local.delete(recordKey(host, repo, commit), signal);
      record = undefined;
    }
    if (!record) {
      if ('existing' in input) {
        // Re-pointing to a record whose bytes this replica does not hold: nothing to serve locally.
        throw new UnavailableError('shared storage is unreachable and the snapshot is not held locally', 5);
      }
      await putBlob(local, input.sha256, () => createReadStream(input.file), { signal, metadata: BLOB_METADATA });
      record = { commit, digest: input.sha256, size: input.size, created: new Date(this.now()).toISOString() };
      if (input.format !== undefined) record.format = input.format;
      if (input.frames !== undefined) record.frames = input.frames;
      await writeJson(local, recordKey(host, repo, commit), record, { signal });
    }
    // Queued before the local pointer moves: a crash in between leaves a queued snapshot that is not
    // served yet, never a served one that is not queued.
    const entry: PendingSnapshot = { host, repo, commit, digest: record.digest, size: record.size };
    if (record.format !== undefined) entry.format = record.format;
    if (record.frames !== undefined) entry.frames = record.frames;
    if (input.force) entry.force = true;
    await backlog.add(entry);
    await this.movePointer(local, input, record, 'snapshot published locally');
    return record;
  }

  private async republish(input: PublishExisting): Promise<SnapshotRecord> {
    const { host, repo, commit, signal } = input;
    const record = await readSnapshotRecord(this.metadataCache, host, repo, commit, signal);
    if (!record || !(await this.cache.stat(blobKey(record.digest), signal))) {
      throw new NotFoundError(`snapshot of ${commit} is no longer stored`);
    }
    await this.movePointer(this.metadataCache, input, record, 'snapshot re-published');
    return record;
  }

  /** Moves the pointer in `cache` forward to `record` (pointer.ts decides whether it may) and logs how. */
  private async movePointer(cache: Cache, input: PublishCommon, record: SnapshotRecord, event: string): Promise<void> {
    const { host, repo, commit, signal } = input;
    const outcome = await advancePointer(cache, host, repo, record, { isAncestor: input.isAncestor, force: input.force, now: this.now, signal });
    this.logger.debug({ host, repo, commit, digest: record.digest, pointer: outcome }, event);
  }

  /**
   * The delta bundle record for base..head on this store's cache and clock, building the bundle with
   * `make` and storing it on a miss (see bundles.ts).
   */
  async publishBundle(request: Omit<GetOrCreateBundleOptions, 'cache' | 'now'>): Promise<BundleRecord> {
    return getOrCreateBundle({ ...request, cache: this.cache, now: this.now });
  }

  /** Runs retention for one repository with this store's grace period and clock. */
  async collectGarbage(host: string, repo: string, signal?: AbortSignal): Promise<GarbageReport> {
    return collectGarbage(this.metadataCache, {
      host,
      repo,
      now: this.now(),
      graceMs: this.graceMs,
      logger: this.logger,
      signal,
    });
  }

  private async deleteBlobUnlessReferenced(host: string, repo: string, digest: string, signal?: AbortSignal): Promise<void> {
    const [records, bundles] = await Promise.all([
      listSnapshotRecords(this.metadataCache, host, repo, signal),
      listBundleRecords(this.metadataCache, host, repo, signal),
    ]);
    if (records.some((r) => r.digest === digest) || bundles.some((b) => b.digest === digest)) return;
    await this.cache.delete(blobKey(digest), signal);
  }
}
