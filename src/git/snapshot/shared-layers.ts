/**
 * Layer packs shared between replicas through the cache (docs/snapshots.md, "Layered packs").
 *
 * A layer's packs are a pure function of (its two commits, format id), and computing them is the
 * expensive part of a snapshot (one thread per pack, every delta recomputed). Each replica keeps its
 * layers in a local cache (layer-cache.ts), but that is lost with the pod's disk and every new replica
 * would pay for them again. So the replica that computes a layer also publishes it to the cache, whose
 * authoritative tier is S3 when configured, and the others fetch it instead of computing:
 *
 *   layers/<host>/<repo>.json = { format, layers: [{ key, packs: [{ name, pack: { sha256, size }, idx: { sha256, size } }] }] }
 *   blobs/sha256/<hex>        = the pack and idx bytes (content-addressed, create-if-absent)
 *
 * One record per repository lists the layers recent snapshots use. Publishing is read-modify-write:
 * add the new layer, drop those the caller no longer needs, then delete the blobs only dropped layers
 * named. Two replicas racing can lose each other's entry, which only costs a recomputation. Nothing
 * read back is trusted: the blobs' sha256 and size are checked while streaming, then every pack's
 * SHA-1 trailers (verifyPackFiles), because a wrong pack would silently change snapshot bytes. Any
 * cache problem makes fetch() report a miss and the caller computes the layer itself (same bytes), so
 * sharing can only save time, never break a generation.
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
import { LAYER_KEY, verifyPackFiles } from './layer-cache.js';
import { CorruptRecordError, isDigest, isSize, isString, readJson, repoKeyPart, writeJson } from '../../storage/records.js';
import { SHA1_OID_PATTERN } from '../../protocol/object-id.js';

/** One stored file of a layer: its blob digest and length. */
export interface LayerBlob {
  sha256: string;
  size: number;
}

/** One pack of a layer: `name` is `pack-<hash>`, the pack's SHA-1 trailer. */
export interface LayerPackEntry {
  name: string;
  pack: LayerBlob;
  idx: LayerBlob;
}

/** `layers/<host>/<repo>.json`: the shared layers of one repository. */
export interface LayerRecord {
  /** The snapshot format id (git and zstd versions) the packs were made with. */
  format: string;
  layers: Array<{ key: string; packs: LayerPackEntry[] }>;
}

export interface SharedLayersOptions {
  /** Where the blobs are written and read (the tiered cache: near tiers serve repeated reads). */
  cache: Cache;
  /** Where the record is read and written: the authoritative tier (default: `cache`). */
  metadataCache?: Cache;
  logger?: Logger;
}

/** `layers/<host>/<repo>.json`. */
export function layerRecordKey(host: string, repo: string): string {
  return `layers/${repoKeyPart(host, repo)}.json`;
}

const PACK_NAME = new RegExp(`^pack-(${SHA1_OID_PATTERN})$`);

export class SharedLayers {
  private readonly cache: Cache;
  private readonly metadataCache: Cache;
  private readonly log: Logger;
  /** The last publish per record key: publishes of one repository run one after the other. */
  private readonly publishing = new Map<string, Promise<void>>();

  constructor(options: SharedLayersOptions) {
    this.cache = options.cache;
    this.metadataCache = options.metadataCache ?? options.cache;
    this.log = (options.logger ?? silentLogger).child({ module: 'shared-layers' });
  }

  /**
   * Writes the shared packs of layer `key` (format `format`) into `outDir` and returns them in part
   * order, or returns undefined (leaving no files behind) when the cache has no such layer or anything
   * about it is wrong. Throws only when `signal` aborts.
   */
  async fetch(host: string, repo: string, key: string, format: string, outDir: string, signal?: AbortSignal): Promise<PackFiles[] | undefined> {
    const packs: PackFiles[] = [];
    try {
      const record = (await readJson(this.metadataCache, layerRecordKey(host, repo), parseLayerRecord, signal))?.value;
      const layer = record?.format === format ? record.layers.find((l) => l.key === key) : undefined;
      if (layer === undefined) {
        this.log.debug({ host, repo, key, storedFormat: record?.format }, 'no shared layer');
        return undefined;
      }
      for (const entry of layer.packs) {
        const pack: PackFiles = {
          hash: PACK_NAME.exec(entry.name)?.[1] ?? '',
          packPath: join(outDir, `${entry.name}.pack`),
          packSize: entry.pack.size,
          idxPath: join(outDir, `${entry.name}.idx`),
          idxSize: entry.idx.size,
        };
        packs.push(pack);
        await this.download(entry.pack, pack.packPath, signal);
        await this.download(entry.idx, pack.idxPath, signal);
        if (!(await verifyPackFiles(pack))) throw new CachewError('internal', `shared layer pack ${entry.name} fails verification`);
      }
      this.log.debug({ host, repo, key, packs: packs.length }, 'fetched shared layer');
      return packs;
    } catch (err) {
      for (const pack of packs) {
        await rm(pack.packPath, { force: true });
        await rm(pack.idxPath, { force: true });
      }
      if (signal?.aborted) throw abortReason(signal);
      this.log.warn({ err, host, repo, key }, 'shared layer unusable; computing it');
      return undefined;
    }
  }

  /**
   * Publishes `packs` (files left in place) as layer `key`: the blobs, then the record, which keeps
   * only the layers named in `keep` (plus this one); then deletes the blobs only dropped layers named
   * (best effort). Throws on a cache failure: the caller decides whether that matters.
   */
  async publish(host: string, repo: string, key: string, format: string, packs: PackFiles[], keep: ReadonlySet<string>, signal?: AbortSignal): Promise<void> {
    // The layers of one snapshot are published concurrently; a read-modify-write of the one record
    // must not lose its siblings' entries, so this replica's publishes of a repository are serialized.
    const recordKey = layerRecordKey(host, repo);
    const previous = this.publishing.get(recordKey) ?? Promise.resolve();
    const mine = previous.then(() => this.publishNow(recordKey, host, repo, key, format, packs, keep, signal));
    const settled = mine.catch(() => undefined);
    this.publishing.set(recordKey, settled);
    try {
      await mine;
    } finally {
      if (this.publishing.get(recordKey) === settled) this.publishing.delete(recordKey);
    }
  }

  private async publishNow(
    recordKey: string,
    host: string,
    repo: string,
    key: string,
    format: string,
    packs: PackFiles[],
    keep: ReadonlySet<string>,
    signal?: AbortSignal,
  ): Promise<void> {
    const entries: LayerPackEntry[] = [];
    for (const pack of packs) {
      entries.push({
        name: `pack-${pack.hash}`,
        pack: await this.upload(pack.packPath, pack.packSize, signal),
        idx: await this.upload(pack.idxPath, pack.idxSize, signal),
      });
    }
    let previous: LayerRecord | undefined;
    try {
      previous = (await readJson(this.metadataCache, recordKey, parseLayerRecord, signal))?.value;
    } catch (err) {
      // Unreadable: overwrite it all the same, and leave whatever it named to the bucket's lifecycle.
      if (signal?.aborted) throw abortReason(signal);
      this.log.warn({ err, key: recordKey }, 'replacing an unreadable layer record');
    }
    const kept = (previous?.format === format ? previous.layers : []).filter((l) => l.key !== key && keep.has(l.key));
    const record: LayerRecord = { format, layers: [...kept, { key, packs: entries }] };
    await writeJson(this.metadataCache, recordKey, record, { signal });
    this.log.debug({ host, repo, key, packs: entries.length }, 'published shared layer');
    const referenced = new Set(record.layers.flatMap((l) => l.packs.flatMap((p) => [p.pack.sha256, p.idx.sha256])));
    const dropped = new Set((previous?.layers ?? []).flatMap((l) => l.packs.flatMap((p) => [p.pack.sha256, p.idx.sha256])));
    for (const digest of dropped) {
      if (referenced.has(digest)) continue;
      try {
        await this.metadataCache.delete(blobKey(digest), signal);
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal);
        this.log.warn({ err, digest }, 'could not delete a dropped layer blob');
      }
    }
  }

  /** Stores one file as a blob (unless present) and returns its digest; the file must keep `size`. */
  private async upload(path: string, size: number, signal?: AbortSignal): Promise<LayerBlob> {
    const sha256 = await sha256File(path, signal);
    // An existing blob is trusted here: its key is its digest, verified when it was written.
    const existing = await this.cache.stat(blobKey(sha256), signal);
    if (existing === undefined) {
      const { meta } = await putBlob(this.cache, sha256, createReadStream(path), { signal });
      if (meta.size !== size) throw new CachewError('internal', `${path} changed size while being uploaded`);
    }
    return { sha256, size };
  }

  /** Streams a blob into a new file, checking its length and sha256 on the way. */
  private async download(blob: LayerBlob, path: string, signal?: AbortSignal): Promise<void> {
    const opened = await this.cache.open(blobKey(blob.sha256), { signal });
    if (opened === undefined) throw new CachewError('internal', `layer blob ${blob.sha256} is missing`);
    const body = opened.body;
    if (body === undefined) throw new CachewError('internal', `layer blob ${blob.sha256} has no body`);
    const hash = createHash('sha256');
    let size = 0;
    const check = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        if (size > blob.size) {
          callback(new CachewError('internal', `layer blob ${blob.sha256} is longer than recorded`));
          return;
        }
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    await pipeline(body as Readable, check, createWriteStream(path, { flags: 'wx' }), { signal });
    if (size !== blob.size || hash.digest('hex') !== blob.sha256) {
      throw new CachewError('internal', `layer blob ${blob.sha256} does not match its record`);
    }
  }
}

async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { signal }) as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest('hex');
}

function parseBlob(value: unknown, key: string, name: string): LayerBlob {
  if (typeof value !== 'object' || value === null) throw new CorruptRecordError(key, `bad field "${name}"`);
  const { sha256, size } = value as Record<string, unknown>;
  if (!isDigest(sha256) || !isSize(size)) throw new CorruptRecordError(key, `bad field "${name}"`);
  return { sha256, size };
}

/** Parses a layer record; CorruptRecordError for anything else. */
export function parseLayerRecord(value: unknown, key: string): LayerRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CorruptRecordError(key, 'not a JSON object');
  const obj = value as Record<string, unknown>;
  if (!isString(obj.format)) throw new CorruptRecordError(key, 'bad field "format"');
  if (!Array.isArray(obj.layers)) throw new CorruptRecordError(key, 'bad field "layers"');
  const layers = obj.layers.map((layer: unknown) => {
    const l = (layer ?? {}) as Record<string, unknown>;
    if (!isString(l.key) || !LAYER_KEY.test(l.key) || !Array.isArray(l.packs) || l.packs.length === 0) {
      throw new CorruptRecordError(key, 'bad layer entry');
    }
    const packs = l.packs.map((entry: unknown) => {
      const e = (entry ?? {}) as Record<string, unknown>;
      if (!isString(e.name) || !PACK_NAME.test(e.name)) throw new CorruptRecordError(key, 'bad field "name"');
      return { name: e.name, pack: parseBlob(e.pack, key, 'pack'), idx: parseBlob(e.idx, key, 'idx') };
    });
    return { key: l.key, packs };
  });
  return { format: obj.format, layers };
}
