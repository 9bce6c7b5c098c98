/**
 * Checkpoint packs shared between replicas through the cache (docs/snapshots.md, "Checkpoint packs").
 *
 * A checkpoint pack is a pure function of (checkpoint commit, format id), and computing it is the
 * expensive part of a snapshot (one thread, every delta recomputed). Each replica keeps it in a local
 * pack cache (pack-cache.ts), but that is lost with the pod's disk and every new replica would pay for
 * it again. So the replica that computes one also publishes it to the cache, whose authoritative tier
 * is S3 when configured, and the others fetch it instead of computing:
 *
 *   checkpoints/<host>/<repo>.json = { commit, format, pack: { name, sha256, size }, idx: { sha256, size } }
 *   blobs/sha256/<hex>             = the pack and the idx bytes (content-addressed, create-if-absent)
 *
 * One record per repository: a newer checkpoint replaces the older one (a plain overwrite; concurrent
 * writers of the same checkpoint write the same content), and the blobs only the replaced record named
 * are deleted afterwards. Nothing read back is trusted: the blobs' sha256 and size are checked while
 * streaming, then both files' SHA-1 trailers (verifyPackFiles), because a wrong pack would silently
 * change snapshot bytes. Any cache problem makes fetch() report a miss and the caller computes the
 * pack itself (same bytes), so sharing can only save time, never break a generation.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Cache } from '../../cache/cache.js';
import { blobKey, putBlob } from '../../cache/write.js';
import { CachewError, abortReason } from '../../util/errors.js';
import { silentLogger, type Logger } from '../../util/logger.js';
import type { PackFiles } from './deterministic-pack.js';
import { verifyPackFiles } from './pack-cache.js';
import { CorruptRecordError, isCommitId, isDigest, isSize, isString, readJson, repoKeyPart, writeJson } from './records.js';
import { SHA1_OID_PATTERN } from '../../protocol/object-id.js';

/** One stored file of a checkpoint: its blob digest and length. */
export interface CheckpointBlob {
  sha256: string;
  size: number;
}

/** `checkpoints/<host>/<repo>.json`: the shared checkpoint pack of one repository. */
export interface CheckpointRecord {
  commit: string;
  /** The snapshot format id (git and zstd versions) the pack was made with. */
  format: string;
  /** `name` is `pack-<hash>`, the pack's SHA-1 trailer. */
  pack: CheckpointBlob & { name: string };
  idx: CheckpointBlob;
}

export interface SharedCheckpointsOptions {
  /** Where the blobs are written and read (the tiered cache: near tiers serve repeated reads). */
  cache: Cache;
  /** Where the record is read and written: the authoritative tier (default: `cache`). */
  metadataCache?: Cache;
  logger?: Logger;
}

/** `checkpoints/<host>/<repo>.json`. */
export function checkpointKey(host: string, repo: string): string {
  return `checkpoints/${repoKeyPart(host, repo)}.json`;
}

const PACK_NAME = new RegExp(`^pack-(${SHA1_OID_PATTERN})$`);

export class SharedCheckpoints {
  private readonly cache: Cache;
  private readonly metadataCache: Cache;
  private readonly log: Logger;

  constructor(options: SharedCheckpointsOptions) {
    this.cache = options.cache;
    this.metadataCache = options.metadataCache ?? options.cache;
    this.log = (options.logger ?? silentLogger).child({ module: 'shared-checkpoints' });
  }

  /**
   * Writes the shared checkpoint pack of (`commit`, `format`) to `<outDir>/pack-<hash>.{pack,idx}`
   * and returns it, or returns undefined (leaving no files behind) when the cache has no such pack or
   * anything about it is wrong. Throws only when `signal` aborts.
   */
  async fetch(host: string, repo: string, commit: string, format: string, outDir: string, signal?: AbortSignal): Promise<PackFiles | undefined> {
    let pack: PackFiles | undefined;
    try {
      const key = checkpointKey(host, repo);
      const record = (await readJson(this.metadataCache, key, parseCheckpointRecord, signal))?.value;
      if (record === undefined || record.commit !== commit || record.format !== format) {
        this.log.debug({ host, repo, commit, stored: record?.commit, storedFormat: record?.format }, 'no shared checkpoint pack');
        return undefined;
      }
      const hash = PACK_NAME.exec(record.pack.name)?.[1] ?? '';
      pack = {
        hash,
        packPath: join(outDir, `${record.pack.name}.pack`),
        packSize: record.pack.size,
        idxPath: join(outDir, `${record.pack.name}.idx`),
        idxSize: record.idx.size,
      };
      await this.download(record.pack, pack.packPath, signal);
      await this.download(record.idx, pack.idxPath, signal);
      if (!(await verifyPackFiles(pack))) throw new CachewError('internal', `shared checkpoint ${record.pack.name} fails verification`);
      this.log.debug({ host, repo, commit, pack: record.pack.name, bytes: record.pack.size }, 'fetched shared checkpoint pack');
      return pack;
    } catch (err) {
      if (pack !== undefined) {
        await rm(pack.packPath, { force: true });
        await rm(pack.idxPath, { force: true });
      }
      if (signal?.aborted) throw abortReason(signal);
      this.log.warn({ err, host, repo, commit }, 'shared checkpoint pack unusable; computing it');
      return undefined;
    }
  }

  /**
   * Publishes `pack` (files left in place) as the checkpoint of (`commit`, `format`): both blobs,
   * then the record; then deletes the blobs of the record it replaced (best effort). Throws on a
   * cache failure: the caller decides whether that matters.
   */
  async publish(host: string, repo: string, commit: string, format: string, pack: PackFiles, signal?: AbortSignal): Promise<void> {
    const key = checkpointKey(host, repo);
    const record: CheckpointRecord = {
      commit,
      format,
      pack: { name: `pack-${pack.hash}`, ...(await this.upload(pack.packPath, pack.packSize, signal)) },
      idx: await this.upload(pack.idxPath, pack.idxSize, signal),
    };
    let previous: CheckpointRecord | undefined;
    try {
      previous = (await readJson(this.metadataCache, key, parseCheckpointRecord, signal))?.value;
    } catch (err) {
      // Unreadable: overwrite it all the same, and leave whatever it named to the bucket's lifecycle.
      if (signal?.aborted) throw abortReason(signal);
      this.log.warn({ err, key }, 'replacing an unreadable checkpoint record');
    }
    await writeJson(this.metadataCache, key, record, { signal });
    this.log.debug({ host, repo, commit, pack: record.pack.name, bytes: record.pack.size }, 'published shared checkpoint pack');
    if (previous === undefined) return;
    const kept = new Set([record.pack.sha256, record.idx.sha256]);
    for (const digest of new Set([previous.pack.sha256, previous.idx.sha256])) {
      if (kept.has(digest)) continue;
      try {
        await this.metadataCache.delete(blobKey(digest), signal);
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal);
        this.log.warn({ err, digest }, 'could not delete a replaced checkpoint blob');
      }
    }
  }

  /** Stores one file as a blob (unless present) and returns its digest; the file must keep `size`. */
  private async upload(path: string, size: number, signal?: AbortSignal): Promise<CheckpointBlob> {
    const sha256 = await sha256File(path, signal);
    // An existing blob is trusted here: its key is its digest, verified when it was written.
    const existing = await this.cache.stat(blobKey(sha256), signal);
    if (existing === undefined) {
      const meta = await putBlob(this.cache, sha256, createReadStream(path), { signal });
      if (meta.size !== size) throw new CachewError('internal', `${path} changed size while being uploaded`);
    }
    return { sha256, size };
  }

  /** Streams a blob into a new file, checking its length and sha256 on the way. */
  private async download(blob: CheckpointBlob, path: string, signal?: AbortSignal): Promise<void> {
    const opened = await this.cache.open(blobKey(blob.sha256), { signal });
    if (opened === undefined) throw new CachewError('internal', `checkpoint blob ${blob.sha256} is missing`);
    const body = opened.body;
    if (body === undefined) throw new CachewError('internal', `checkpoint blob ${blob.sha256} has no body`);
    const hash = createHash('sha256');
    let size = 0;
    const check = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        if (size > blob.size) {
          callback(new CachewError('internal', `checkpoint blob ${blob.sha256} is longer than recorded`));
          return;
        }
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    await pipeline(body as Readable, check, createWriteStream(path, { flags: 'wx' }), { signal });
    if (size !== blob.size || hash.digest('hex') !== blob.sha256) {
      throw new CachewError('internal', `checkpoint blob ${blob.sha256} does not match its record`);
    }
  }
}

async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { signal }) as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest('hex');
}

function parseBlob(value: unknown, key: string, name: string): CheckpointBlob {
  if (typeof value !== 'object' || value === null) throw new CorruptRecordError(key, `bad field "${name}"`);
  const { sha256, size } = value as Record<string, unknown>;
  if (!isDigest(sha256) || !isSize(size)) throw new CorruptRecordError(key, `bad field "${name}"`);
  return { sha256, size };
}

/** Parses a checkpoint record; CorruptRecordError for anything else. */
export function parseCheckpointRecord(value: unknown, key: string): CheckpointRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CorruptRecordError(key, 'not a JSON object');
  const obj = value as Record<string, unknown>;
  if (!isCommitId(obj.commit)) throw new CorruptRecordError(key, 'bad field "commit"');
  if (!isString(obj.format)) throw new CorruptRecordError(key, 'bad field "format"');
  const name = (obj.pack as Record<string, unknown> | null | undefined)?.name;
  if (!isString(name) || !PACK_NAME.test(name)) throw new CorruptRecordError(key, 'bad field "pack.name"');
  return { commit: obj.commit, format: obj.format, pack: { name, ...parseBlob(obj.pack, key, 'pack') }, idx: parseBlob(obj.idx, key, 'idx') };
}
