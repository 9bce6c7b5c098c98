/**
 * The local checkpoint-pack cache: one directory per repository holding the deterministic full pack
 * of its current checkpoint commit (checkpoint.ts), so regenerating a snapshot after a new commit only
 * packs what the commit adds.
 *
 * Layout: `<cacheDir>/<checkpoint-commit>/{pack-<hash>.pack, pack-<hash>.idx, checkpoint.json}`.
 * A directory appears only complete (written under `.tmp-*`, then renamed). Nothing here is trusted:
 * every use re-checks the manifest, the sizes and both files' SHA-1 trailers (the pack's name is its
 * trailer, and the idx repeats it), because a damaged cached pack would silently change snapshot
 * bytes. Anything that does not check out is deleted and the caller recomputes it.
 *
 * Files are handed out as hard links in the caller's scratch directory (a copy across filesystems),
 * so pruning the cache while a generation is still archiving an older checkpoint is harmless.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, mkdtemp, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PackFiles } from './deterministic-pack.js';

const MANIFEST = 'checkpoint.json';
const TMP_PREFIX = '.tmp-';
/** A `.tmp-*` directory this old belongs to a writer that crashed. */
const STALE_TMP_MS = 60 * 60_000;
const SHA1_BYTES = 20;
/** Smallest valid files: pack header (12) + trailer; idx v2 header (8) + fan-out (1024) + 2 trailers. */
const MIN_PACK = 12 + SHA1_BYTES;
const MIN_IDX = 8 + 1024 + 2 * SHA1_BYTES;

/** What `checkpoint.json` records; `format` ties the pack to the git version and format that made it. */
interface Manifest {
  commit: string;
  format: string;
  hash: string;
  packSize: number;
  idxSize: number;
}

/**
 * Links the cached checkpoint pack of `commit` into the empty directory `outDir` and returns it, or
 * returns undefined (after deleting the cached directory if it was present but not valid) when there
 * is no usable pack for (`commit`, `format`).
 */
export async function takeCachedCheckpoint(cacheDir: string, commit: string, format: string, outDir: string): Promise<PackFiles | undefined> {
  const dir = join(cacheDir, commit);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as Manifest;
  } catch {
    // Absent, unreadable or not JSON. A valid directory always has its manifest, so whatever is
    // there without one is damaged: clear it for the store that follows the recomputation.
    await rm(dir, { recursive: true, force: true });
    return undefined;
  }
  const valid =
    manifest.commit === commit &&
    manifest.format === format &&
    typeof manifest.hash === 'string' &&
    /^[0-9a-f]{40}$/.test(manifest.hash) &&
    Number.isSafeInteger(manifest.packSize) &&
    Number.isSafeInteger(manifest.idxSize);
  if (!valid) {
    await rm(dir, { recursive: true, force: true });
    return undefined;
  }
  const pack: PackFiles = {
    hash: manifest.hash,
    packPath: join(outDir, `pack-${manifest.hash}.pack`),
    packSize: manifest.packSize,
    idxPath: join(outDir, `pack-${manifest.hash}.idx`),
    idxSize: manifest.idxSize,
  };
  try {
    await linkOrCopy(join(dir, `pack-${manifest.hash}.pack`), pack.packPath);
    await linkOrCopy(join(dir, `pack-${manifest.hash}.idx`), pack.idxPath);
  } catch (err) {
    await rm(pack.packPath, { force: true });
    await rm(pack.idxPath, { force: true });
    if (!isCode(err, 'ENOENT')) throw err;
    // A file is missing: damaged, or pruned by a concurrent writer since we read the manifest.
    // Either way the directory is of no use (removing an already pruned one is a no-op).
    await rm(dir, { recursive: true, force: true });
    return undefined;
  }
  // Checked on our links: these are exactly the bytes that will be archived.
  if (await verifyPackFiles(pack)) return pack;
  await rm(pack.packPath, { force: true });
  await rm(pack.idxPath, { force: true });
  await rm(dir, { recursive: true, force: true });
  return undefined;
}

/**
 * Stores `pack` (files anywhere, left in place) as the checkpoint of `commit`: complete or not at all,
 * then deletes every other checkpoint in `cacheDir` (one checkpoint per repository). When another
 * writer got there first, its directory is kept (it holds the same bytes, and is verified on use).
 */
export async function storeCheckpoint(cacheDir: string, commit: string, format: string, pack: PackFiles): Promise<void> {
  await mkdir(cacheDir, { recursive: true });
  const tmp = await mkdtemp(join(cacheDir, TMP_PREFIX));
  try {
    await linkOrCopy(pack.packPath, join(tmp, `pack-${pack.hash}.pack`));
    await linkOrCopy(pack.idxPath, join(tmp, `pack-${pack.hash}.idx`));
    const manifest: Manifest = { commit, format, hash: pack.hash, packSize: pack.packSize, idxSize: pack.idxSize };
    await writeFile(join(tmp, MANIFEST), `${JSON.stringify(manifest)}\n`);
    try {
      await rename(tmp, join(cacheDir, commit));
    } catch (err) {
      if (!isCode(err, 'ENOTEMPTY') && !isCode(err, 'EEXIST')) throw err;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  await pruneCheckpoints(cacheDir, commit);
}

/** Deletes every checkpoint directory but `keep`, and `.tmp-*` directories left by crashed writers. */
async function pruneCheckpoints(cacheDir: string, keep: string): Promise<void> {
  for (const name of await readdir(cacheDir)) {
    if (name === keep) continue;
    const path = join(cacheDir, name);
    if (name.startsWith(TMP_PREFIX)) {
      const info = await stat(path).catch(() => undefined);
      if (info !== undefined && Date.now() - info.mtimeMs > STALE_TMP_MS) await rm(path, { recursive: true, force: true });
    } else if (/^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(name)) {
      // Only names we create: a nested repository's cache directory may live beside these.
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
