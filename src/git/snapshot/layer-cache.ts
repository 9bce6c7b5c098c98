/**
 * The local layer cache: one directory per repository holding the deterministic packs of the layers
 * (layers.ts) its recent snapshots use, so regenerating after a new commit only packs what is new.
 *
 * Layout: `<cacheDir>/<layer key>/{pack-<hash>.pack, pack-<hash>.idx ..., layer.json}` where the key
 * is `<from commit or "root">-<to commit>`. A directory appears only complete (written under
 * `.tmp-*`, then renamed). Nothing here is trusted: every use re-checks the manifest, the sizes and
 * every file's SHA-1 trailer (the pack's name is its trailer, and the idx repeats it), because a
 * damaged cached pack would silently change snapshot bytes. Anything that does not check out is
 * deleted and the caller recomputes it.
 *
 * Files are handed out as hard links in the caller's scratch directory (a copy across filesystems),
 * so pruning the cache while a generation is still archiving an older layer is harmless.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, mkdtemp, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PackFiles } from './deterministic-pack.js';
import { SHA1_OID_PATTERN, isSha1ObjectId } from '../../protocol/object-id.js';

const MANIFEST = 'layer.json';
const TMP_PREFIX = '.tmp-';
/** A `.tmp-*` directory this old belongs to a writer that crashed. */
const STALE_TMP_MS = 60 * 60_000;
const SHA1_BYTES = 20;
/** Smallest valid files: pack header (12) + trailer; idx v2 header (8) + fan-out (1024) + 2 trailers. */
const MIN_PACK = 12 + SHA1_BYTES;
const MIN_IDX = 8 + 1024 + 2 * SHA1_BYTES;
/** `<from commit or "root">-<to commit>`. */
export const LAYER_KEY = new RegExp(`^(?:root|${SHA1_OID_PATTERN})-${SHA1_OID_PATTERN}$`);

/** The cache key of layer (`from`, `to`]. */
export function layerKey(from: string | undefined, to: string): string {
  return `${from ?? 'root'}-${to}`;
}

/** What `layer.json` records; `format` ties the packs to the git version and format that made them. */
interface Manifest {
  key: string;
  format: string;
  packs: Array<{ hash: string; packSize: number; idxSize: number }>;
}

function validManifest(value: unknown, key: string, format: string): value is Manifest {
  if (typeof value !== 'object' || value === null) return false;
  const m = value as Partial<Manifest>;
  return (
    m.key === key &&
    m.format === format &&
    Array.isArray(m.packs) &&
    m.packs.length > 0 &&
    m.packs.every((p) => isSha1ObjectId(p.hash) && Number.isSafeInteger(p.packSize) && Number.isSafeInteger(p.idxSize))
  );
}

/**
 * Links the cached packs of layer `key` into the empty directory `outDir` and returns them in part
 * order, or returns undefined (after deleting the cached directory if it was present but not valid)
 * when there is no usable layer for (`key`, `format`).
 */
export async function takeCachedLayer(cacheDir: string, key: string, format: string, outDir: string): Promise<PackFiles[] | undefined> {
  const dir = join(cacheDir, key);
  let manifest: unknown;
  try {
    manifest = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8'));
  } catch {
    // Absent, unreadable or not JSON. A valid directory always has its manifest, so whatever is
    // there without one is damaged: clear it for the store that follows the recomputation.
    await rm(dir, { recursive: true, force: true });
    return undefined;
  }
  if (!validManifest(manifest, key, format)) {
    await rm(dir, { recursive: true, force: true });
    return undefined;
  }
  const packs: PackFiles[] = manifest.packs.map((p) => ({
    hash: p.hash,
    packPath: join(outDir, `pack-${p.hash}.pack`),
    packSize: p.packSize,
    idxPath: join(outDir, `pack-${p.hash}.idx`),
    idxSize: p.idxSize,
  }));
  const discard = async (): Promise<undefined> => {
    for (const pack of packs) {
      await rm(pack.packPath, { force: true });
      await rm(pack.idxPath, { force: true });
    }
    await rm(dir, { recursive: true, force: true });
    return undefined;
  };
  try {
    for (const pack of packs) {
      await linkOrCopy(join(dir, `pack-${pack.hash}.pack`), pack.packPath);
      await linkOrCopy(join(dir, `pack-${pack.hash}.idx`), pack.idxPath);
    }
  } catch (err) {
    // A file is missing: damaged, or pruned by a concurrent writer since we read the manifest.
    // Either way the directory is of no use (removing an already pruned one is a no-op).
    if (!isCode(err, 'ENOENT')) {
      for (const pack of packs) {
        await rm(pack.packPath, { force: true });
        await rm(pack.idxPath, { force: true });
      }
      throw err;
    }
    return discard();
  }
  // Checked on our links: these are exactly the bytes that will be archived.
  for (const pack of packs) if (!(await verifyPackFiles(pack))) return discard();
  return packs;
}

/**
 * Stores `packs` (files anywhere, left in place) as layer `key`: complete or not at all. When another
 * writer got there first, its directory is kept (it holds the same bytes, and is verified on use).
 */
export async function storeLayer(cacheDir: string, key: string, format: string, packs: PackFiles[]): Promise<void> {
  await mkdir(cacheDir, { recursive: true });
  const tmp = await mkdtemp(join(cacheDir, TMP_PREFIX));
  try {
    for (const pack of packs) {
      await linkOrCopy(pack.packPath, join(tmp, `pack-${pack.hash}.pack`));
      await linkOrCopy(pack.idxPath, join(tmp, `pack-${pack.hash}.idx`));
    }
    const manifest: Manifest = { key, format, packs: packs.map((p) => ({ hash: p.hash, packSize: p.packSize, idxSize: p.idxSize })) };
    await writeFile(join(tmp, MANIFEST), `${JSON.stringify(manifest)}\n`);
    try {
      await rename(tmp, join(cacheDir, key));
    } catch (err) {
      if (!isCode(err, 'ENOTEMPTY') && !isCode(err, 'EEXIST')) throw err;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Deletes every layer directory whose key is not in `keep`, and `.tmp-*` directories left by crashed
 * writers. Only names we create are touched: a nested repository's cache directory may live beside.
 */
export async function pruneLayers(cacheDir: string, keep: ReadonlySet<string>, now: number = Date.now()): Promise<void> {
  let names: string[];
  try {
    names = await readdir(cacheDir);
  } catch (err) {
    if (isCode(err, 'ENOENT')) return;
    throw err;
  }
  for (const name of names) {
    if (keep.has(name)) continue;
    const path = join(cacheDir, name);
    if (name.startsWith(TMP_PREFIX)) {
      const info = await stat(path).catch(() => undefined);
      if (info !== undefined && now - info.mtimeMs > STALE_TMP_MS) await rm(path, { recursive: true, force: true });
    } else if (LAYER_KEY.test(name) || isSha1ObjectId(name)) {
      // 40-hex: a checkpoint directory of snapshot format v2, superseded by layers.
      await rm(path, { recursive: true, force: true });
    }
  }
}
/**
 * True when the pack and idx are intact and belong together: sizes as recorded, the pack's SHA-1
 * trailer equals its name hash and its content, and the idx's own trailer and recorded pack checksum
 * match. Reads both files once.
 */
export async function verifyPackFiles(pack: PackFiles): Promise<boolean> {
  const [packStat, idxStat] = await Promise.all([stat(pack.packPath), stat(pack.idxPath)]);
  if (packStat.size !== pack.packSize || idxStat.size !== pack.idxSize) return false;
  if (pack.packSize < MIN_PACK || pack.idxSize < MIN_IDX) return false;
  const packTrailer = await readTail(pack.packPath, pack.packSize, SHA1_BYTES);
  if (packTrailer.toString('hex') !== pack.hash) return false;
  if ((await sha1Prefix(pack.packPath, pack.packSize - SHA1_BYTES)) !== pack.hash) return false;
  const idxTail = await readTail(pack.idxPath, pack.idxSize, 2 * SHA1_BYTES);
  if (idxTail.subarray(0, SHA1_BYTES).toString('hex') !== pack.hash) return false;
  return (await sha1Prefix(pack.idxPath, pack.idxSize - SHA1_BYTES)) === idxTail.subarray(SHA1_BYTES).toString('hex');
}

/** SHA-1 (hex) of the first `length` bytes of a file, streamed. */
async function sha1Prefix(path: string, length: number): Promise<string> {
  const hash = createHash('sha1');
  if (length > 0) {
    for await (const chunk of createReadStream(path, { start: 0, end: length - 1 }) as AsyncIterable<Buffer>) hash.update(chunk);
  }
  return hash.digest('hex');
}

async function readTail(path: string, size: number, length: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, size - length);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** A hard link when both paths share a filesystem (instant, no extra space), else a copy. */
async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (err) {
    if (!isCode(err, 'EXDEV') && !isCode(err, 'EPERM') && !isCode(err, 'ENOTSUP')) throw err;
    await copyFile(from, to);
  }
}

function isCode(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}
