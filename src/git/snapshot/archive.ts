/**
 * Generates a snapshot: a deterministic `.tar.zst` of a full clone of one commit (SPEC §5).
 *
 * The archive is assembled rather than copied from a checkout, so that every byte is a function of
 * (upstream URL, commit, format version, zstd and git versions):
 *   1. `.git/` metadata with fixed text (git-dir-files.ts), reflog entries stamped with the commit time;
 *   2. `.git/objects/pack/pack-<hash>.{idx,pack}`: one or two single-threaded, no-reuse packs, in name
 *      order: the full pack of the commit, or (first-parent depth > K) the full pack of its checkpoint
 *      ancestor plus the commit's increment over it; the checkpoint pack may come from a local cache
 *      or from another replica through the shared cache (checkpoint.ts, deterministic-pack.ts);
 *   3. `.git/index` written by us with synthetic stat data (git-index.ts);
 *   4. the work tree in index order, blobs streamed from one `git cat-file --batch` (blob-reader.ts);
 * all as tar entries with fixed headers (tar-writer.ts): mtime = the commit's committer time, owner
 * 0/0 with empty names, modes 0755 (directories, executables), 0644 (files), 0444 (pack files, as git
 * writes them), 0777 (symlinks). The tar stream is compressed by zstd (zstd.ts) straight into the
 * output file while it is hashed; nothing is buffered whole.
 *
 * Why `.git/index` gets mtime = commit time + 1: git treats an index entry whose mtime is not older
 * than the index file itself as "racily clean" and re-reads the file to compare contents. Every work
 * tree file carries the commit time, so an index one second newer keeps `git status` on the restored
 * clone a pure stat comparison (no rehash, no index rewrite).
 *
 * Not handled: SHA-256 repositories (git 2.39 mirrors here are SHA-1; such commits are rejected), and
 * checkout-time conversions (`.gitattributes` eol/filters): files are stored as the blobs hold them,
 * and the stat-matched index keeps `git status` clean regardless.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { runGit } from '../command.js';
import { BadRequestError, CachewError, GitCommandError, NotFoundError, abortReason } from '../../util/errors.js';
import { silentLogger, type Logger } from '../../util/logger.js';
import { BlobReader } from './blob-reader.js';
import { writeSnapshotPacks, type CheckpointShare } from './checkpoint.js';
import type { PackFiles } from './deterministic-pack.js';
import { gitDirEntries, type GitDirEntry } from './git-dir-files.js';
import { gitIndexChunks, gitIndexSize, sortIndexEntries } from './git-index.js';
import { TAR_END, encodeTarHeader, tarPadding } from './tar-writer.js';
import { listTree, PURE_OBJECT_ENV, type TreeEntry } from './tree-list.js';
import { compressToFile } from './zstd.js';

export interface SnapshotSource {
  /** A bare mirror repository that contains `commit`. */
  gitDir: string;
  /** 40-hex commit id. */
  commit: string;
  /** Becomes `remote.origin.url` in the snapshot (the upstream, never the proxy). */
  upstreamUrl: string;
  /** The branch checked out in the snapshot, e.g. "main". */
  defaultBranch: string;
}

export interface SnapshotResult {
  /** sha256 hex of the archive bytes. */
  sha256: string;
  size: number;
  commit: string;
}

export interface GenerateSnapshotOptions {
  signal?: AbortSignal;
  logger?: Logger;
  /** Where the temporary pack goes (default: the directory of `outPath`, same filesystem). */
  tmpDir?: string;
  /**
   * This repository's checkpoint-pack cache directory (checkpoint.ts): the checkpoint's pack is taken
   * from `<packCacheDir>/<checkpoint>/` when valid, else computed and stored there (other checkpoints
   * in it are deleted). Same bytes either way; without it the checkpoint is packed in scratch.
   */
  packCacheDir?: string;
  /**
   * Checkpoint packs shared between replicas for this repository (shared-checkpoints.ts): asked when
   * the local pack cache misses, and given every checkpoint pack computed here. Same bytes either way.
   */
  sharedCheckpoints?: CheckpointShare;
}

/** Symlink targets are read whole to build the tar header; real ones are at most PATH_MAX. */
const MAX_SYMLINK_TARGET = 64 * 1024;
const GITLINK = 0o160000;
const SYMLINK = 0o120000;

/**
 * Writes the snapshot of `source.commit` to `outPath` (created or truncated, fsynced) while hashing
 * it, and returns its sha256 and size. On failure or abort `outPath` is removed and the error thrown:
 * BadRequestError for an unusable commit id / branch / URL, NotFoundError when the mirror lacks the
 * commit, GitCommandError / CompressorError for tool failures, AbortedError on abort.
 */
export async function generateSnapshot(
  source: SnapshotSource,
  outPath: string,
  options: GenerateSnapshotOptions = {},
): Promise<SnapshotResult> {
  const { gitDir, commit } = source;
  if (/^[0-9a-f]{64}$/.test(commit)) throw new BadRequestError('snapshots of SHA-256 repositories are not supported');
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new BadRequestError(`not a commit id: ${commit.slice(0, 80)}`);
  // Validates branch and URL before any work; the reflog time is filled in once the commit is read.
  gitDirEntries(source.upstreamUrl, commit, source.defaultBranch, 0);
  const log = (options.logger ?? silentLogger).child({ module: 'snapshot-archive' });
  const signal = options.signal;
  const started = Date.now();

  const scratch = await mkdtemp(join(options.tmpDir ?? dirname(outPath), '.cachew-pack-'));
  try {
    const commitTime = await committerTime(gitDir, commit, signal);
    const metadata = gitDirEntries(source.upstreamUrl, commit, source.defaultBranch, commitTime);
    const tree = sortIndexEntries(await listTree(gitDir, commit, signal));
    for (const entry of tree) assertSafePath(entry.path);
    const packs = await writeSnapshotPacks(gitDir, commit, scratch, {
      signal,
      logger: options.logger,
      packCacheDir: options.packCacheDir,
      sharedCheckpoints: options.sharedCheckpoints,
    });
    const packBytes = packs.reduce((sum, p) => sum + p.packSize, 0);
    log.debug({ commit, paths: tree.length, packs: packs.length, packBytes, ms: Date.now() - started }, 'snapshot pack ready');
    const tar = tarEntries({ gitDir, tree, metadata, packs, commitTime, signal });
    const { sha256, size } = await compressToFile(tar, outPath, signal);
    log.debug({ commit, size, ms: Date.now() - started }, 'snapshot archive written');
    return { sha256, size, commit };
  } catch (err) {
    await rm(outPath, { force: true });
    if (signal?.aborted) throw abortReason(signal);
    throw err;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The committer timestamp (seconds) of `commit`, clamped to what tar and the index can store. */
async function committerTime(gitDir: string, commit: string, signal?: AbortSignal): Promise<number> {
  let raw: string;
  try {
    raw = await runGit(['cat-file', 'commit', commit], { cwd: gitDir, env: PURE_OBJECT_ENV, signal });
  } catch (err) {
    if (err instanceof GitCommandError) throw new NotFoundError(`commit ${commit} is not in the mirror`, { cause: err });
    throw err;
  }
  const headers = raw.slice(0, raw.indexOf('\n\n') >>> 0);
  const match = /^committer .* (-?\d+) [+-]\d{4}$/m.exec(headers);
  if (match === null) throw new CachewError('internal', `commit ${commit} has no committer timestamp`);
  // Pre-1970 or far-future dates cannot be expressed in the index's unsigned 32-bit seconds.
  return Math.min(Math.max(Number(match[1]), 0), 0xffffffff - 1);
}

/**
 * Refuses tree paths that would escape the clone or overwrite its `.git` when extracted. Git itself
 * refuses to check these out; a mirror may still hold them if upstream objects were not fsck'd.
 */
function assertSafePath(path: Buffer): void {
  const parts = path.toString('latin1').split('/');
  const unsafe = parts.some((p) => p === '' || p === '.' || p === '..' || p.toLowerCase() === '.git');
  if (unsafe) throw new CachewError('internal', `refusing to snapshot unsafe path ${JSON.stringify(path.toString('utf8'))}`);
}

interface TarInput {
  gitDir: string;
  tree: TreeEntry[];
  metadata: GitDirEntry[];
  /** In name order (writeSnapshotPacks sorts them). */
  packs: PackFiles[];
  commitTime: number;
  signal?: AbortSignal;
}

/** The whole tar stream, entry by entry, in the fixed order described at the top of this file. */
async function* tarEntries(input: TarInput): AsyncGenerator<Buffer> {
  const mtime = input.commitTime;
  for (const entry of input.metadata) {
    if (entry.content === undefined) {
      yield encodeTarHeader({ path: entry.path, type: 'directory', mode: 0o755, size: 0, mtime });
    } else {
      yield encodeTarHeader({ path: entry.path, type: 'file', mode: 0o644, size: entry.content.length, mtime });
      yield entry.content;
      yield tarPadding(entry.content.length);
    }
  }
  for (const pack of input.packs) {
    yield* fileFromDisk(`.git/objects/pack/pack-${pack.hash}.idx`, pack.idxPath, pack.idxSize, mtime);
    yield* fileFromDisk(`.git/objects/pack/pack-${pack.hash}.pack`, pack.packPath, pack.packSize, mtime);
  }

  const indexSize = gitIndexSize(input.tree);
  yield encodeTarHeader({ path: '.git/index', type: 'file', mode: 0o644, size: indexSize, mtime: mtime + 1 });
  yield* gitIndexChunks(input.tree, mtime);
  yield tarPadding(indexSize);

  yield* workTree(input);
  yield TAR_END;
}

async function* fileFromDisk(name: string, path: string, size: number, mtime: number): AsyncGenerator<Buffer> {
  yield encodeTarHeader({ path: name, type: 'file', mode: 0o444, size, mtime });
  let seen = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    seen += chunk.length;
    if (seen > size) break;
    yield chunk;
  }
  if (seen !== size) throw new CachewError('internal', `${name} changed size while being archived`);
  yield tarPadding(size);
}

async function* workTree(input: TarInput): AsyncGenerator<Buffer> {
  const mtime = input.commitTime;
  const blobs = input.tree.filter((e) => e.mode !== GITLINK).map((e) => e.oid);
  const reader = new BlobReader(input.gitDir, blobs, input.signal);
  let finished = false;
  try {
    const dirs = new Set<string>();
    const directory = (path: Buffer): Buffer | undefined => {
      const key = path.toString('latin1');
      if (dirs.has(key)) return undefined;
      dirs.add(key);
      return encodeTarHeader({ path, type: 'directory', mode: 0o755, size: 0, mtime });
    };
    for (const entry of input.tree) {
      for (let at = entry.path.indexOf(0x2f); at >= 0; at = entry.path.indexOf(0x2f, at + 1)) {
        const header = directory(entry.path.subarray(0, at));
        if (header) yield header;
      }
      if (entry.mode === GITLINK) {
        // A submodule is not part of this repository's objects: leave the empty directory git expects.
        const header = directory(entry.path);
        if (header) yield header;
        continue;
      }
      const blob = await reader.next(entry.oid);
      if (blob.size !== entry.size) throw new CachewError('internal', `blob ${entry.oid} size changed`);
      if (entry.mode === SYMLINK) {
        if (blob.size > MAX_SYMLINK_TARGET) throw new CachewError('internal', `symlink target too long in ${entry.oid}`);
        const target = Buffer.concat(await collect(blob.body));
        yield encodeTarHeader({ path: entry.path, type: 'symlink', mode: 0o777, size: 0, mtime, linkTarget: target });
        continue;
      }
      const mode = entry.mode === 0o100755 ? 0o755 : 0o644;
      yield encodeTarHeader({ path: entry.path, type: 'file', mode, size: blob.size, mtime });
      yield* blob.body;
      yield tarPadding(blob.size);
    }
    await reader.close();
    finished = true;
  } finally {
    if (!finished) await reader.kill();
  }
}

async function collect(body: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const parts: Buffer[] = [];
  for await (const chunk of body) parts.push(chunk);
  return parts;
}
