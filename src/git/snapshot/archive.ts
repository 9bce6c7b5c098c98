/**
 * Generates a snapshot: a deterministic `.tar.zst` of a full clone of one commit (SPEC §5).
 *
 * The archive is assembled rather than copied from a checkout, so that every byte is a function of
 * (upstream URL, commit, format version, zstd and git versions). The tar stream is, in order:
 *   1. `.git/` metadata with fixed text (git-dir-files.ts), reflog entries stamped with the commit time,
 *      then `.git/objects/pack/pack-<hash>.idx` of every layer of the commit, oldest layer first, parts
 *      in order (layers.ts, layer-packs.ts);
 *   2. `.git/index` written by us with synthetic stat data (git-index.ts), then the work tree in index
 *      order, blobs streamed from one `git cat-file --batch` (blob-reader.ts), then the end of archive;
 *      the `.pack` files of those layers (deterministic single-threaded packs that may come from the
 *      local layer cache or from another replica through the shared cache), in the same order as their
 *      idx files, are placed among these frames by frame-order.ts (since format v10), within about the
 *      first three quarters of the work tree and always before its last frame;
 * all as tar entries with fixed headers (tar-writer.ts): mtime = the commit's committer time for the
 * `.git` metadata, FILE_MTIME (1980-01-01) for pack files and the work tree (so an unchanged file has
 * the same header, hence the same frame, in every snapshot), owner
 * 0/0 with empty names, modes 0755 (directories, executables), 0644 (files), 0444 (pack files, as git
 * writes them), 0777 (symlinks).
 *
 * Stable frames: the tar stream is cut into segments, each compressed as its own zstd frame
 * (zstd-native.ts in-process, or zstd.ts with the CLI when the addon cannot load), led by the frame
 * table (frames.ts). Cuts: after the metadata and idx files; around every `.pack`; always
 * before the index (so the index and work tree frames do not depend on the packs, and are
 * compressed while the layers are packed); in the work tree after every entry whose path hashes to
 * 0 modulo WORK_TREE_CUT (about one entry in 8), and around every file of BIG_FILE bytes or more;
 * the end of archive blocks alone. A cut depends on the entry's own path or size only, so a changed
 * file changes its own frame, and the frames of an unchanged layer are byte-identical in every
 * snapshot that carries it.
 *
 * Why `.git/index` gets mtime = commit time + 1 (at least FILE_MTIME + 1): git treats an index entry
 * whose mtime is not older than the index file itself as "racily clean" and re-reads the file to
 * compare contents. Every work tree file carries FILE_MTIME, and so does every index entry, so an
 * index file newer than that keeps `git status` on the restored clone a pure stat comparison (no
 * rehash, no index rewrite).
 *
 * Not handled: SHA-256 repositories (git 2.39 mirrors here are SHA-1; such commits are rejected), and
 * checkout-time conversions (`.gitattributes` eol/filters): files are stored as the blobs hold them,
 * and the stat-matched index keeps `git status` clean regardless.
 */
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { runGit } from '../command.js';
import { BadRequestError, CachewError, GitCommandError, NotFoundError, UnprocessableError, abortReason } from '../../util/errors.js';
import { silentLogger, type Logger } from '../../util/logger.js';
import { isObjectId, isSha1ObjectId } from '../../protocol/object-id.js';
import { BlobReader } from './blob-reader.js';
import type { PackFiles } from './deterministic-pack.js';
import type { FrameEntry } from './frames.js';
import { gitDirEntries, type GitDirEntry } from './git-dir-files.js';
import { gitIndexChunks, gitIndexSize, sortIndexEntries } from './git-index.js';
import { writeSnapshotPacks, type LayerShare } from './layer-packs.js';
import { fnv1a32 } from './stable-hash.js';
import { TAR_BLOCK, TAR_END, encodeTarHeader, tarPadding } from './tar-writer.js';
import { listTree, PURE_OBJECT_ENV, type TreeEntry } from './tree-list.js';
import { compressFrames, type FramedResult, type FrameSource } from './zstd.js';
import { assembleArchive, compressToBody, nativeZstdVersion, type FramedBody, type FrameRef } from './zstd-native.js';
import { interleavePacks } from './frame-order.js';

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
  /** The archive's data frames, as in its frame table. */
  frames: FrameEntry[];
}

export interface GenerateSnapshotOptions {
  signal?: AbortSignal;
  logger?: Logger;
  /** Where the temporary pack goes (default: the directory of `outPath`, same filesystem). */
  tmpDir?: string;
  /**
   * This repository's layer cache directory (layer-packs.ts): layers are taken from it when valid,
   * else computed and stored there; it is pruned to the layers of this and the next snapshot. Same
   * bytes either way; without it every layer is packed in scratch.
   */
  layerCacheDir?: string;
  /**
   * Layers shared between replicas for this repository (shared-layers.ts): asked when the local cache
   * misses, and given every layer built here. Same bytes either way.
   */
  sharedLayers?: LayerShare;
  /**
   * Which zstd compresses the frames: libzstd in-process when the addon loads (the default), else the
   * zstd CLI. They write different bytes, and snapshotFormatId() names the default one, so only tests
   * choose.
   */
  compressor?: SnapshotCompressor;
}

/** See GenerateSnapshotOptions.compressor. */
export type SnapshotCompressor = 'native' | 'cli';

/** The compressor of this process: libzstd in-process when the addon loads, else the CLI. */
export function defaultCompressor(): SnapshotCompressor {
  return nativeZstdVersion() !== undefined ? 'native' : 'cli';
}

/** Symlink targets are read whole to build the tar header; real ones are at most PATH_MAX. */
const MAX_SYMLINK_TARGET = 64 * 1024;
const GITLINK = 0o160000;
/**
 * mtime of pack files and work tree entries: fixed rather than the commit time, so that a file's tar
 * header, and with it the frame around it, does not change when an unrelated commit lands. 1980-01-01
 * is the earliest time every archive format (zip included) can represent.
 */
export const FILE_MTIME = 315_532_800;
/**
 * The work tree is cut after an entry whose path hash is 0 modulo this (part of the format). Small
 * groups, because a commit that edits a few files anywhere must leave most frames as they were: on
 * the bench repository (1.5% of the files edited per commit) a cut of 128 changed 65–69% of the
 * work tree's bytes between consecutive commits, 16 about 25%, 8 about 14%, while compressing only
 * 3–4% worse than one stream (8: 78.6 MB vs 75.4 MB). Light frames are compressed in batches
 * (zstd.ts), so a thousand frames cost no thousand processes.
 */
export const WORK_TREE_CUT = 8;
/** Files of at least this size are frames of their own (part of the format). */
export const BIG_FILE = 1 << 20;
/** Segments lighter than this are merged with their neighbours into one frame (part of the format). */
export const MIN_FRAME_WEIGHT = 64 * 1024;
const SYMLINK = 0o120000;
/**
 * Work tree frames at least this big wait for the packs' frames (generateSnapshot). Memory only, never
 * bytes: git streams blobs over its bigFileThreshold (deterministic-pack.ts) through windows that fill
 * up to packedGitLimit, so it is from about this size that two streams at once cost their windows twice.
 */
const GATED_FRAME = 64 << 20;

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
  if (isObjectId(commit) && !isSha1ObjectId(commit)) throw new BadRequestError('snapshots of SHA-256 repositories are not supported');
  if (!isSha1ObjectId(commit)) throw new BadRequestError(`not a commit id: ${source.commit.slice(0, 80)}`);
  // Validates branch and URL before any work; the reflog time is filled in once the commit is read.
  gitDirEntries(source.upstreamUrl, commit, source.defaultBranch, 0);
  const log = (options.logger ?? silentLogger).child({ module: 'snapshot-archive' });
  const signal = options.signal;
  const started = Date.now();

  const scratch = await mkdtemp(join(options.tmpDir ?? dirname(outPath), '.cachew-pack-'));
  // The work tree half of the archive does not need the packs: with the addon it is compressed while
  // the layers are packed (other processes), into its own body file, so the archive's slowest steps
  // overlap. It is stopped through `tailStop` when anything else fails.
  const tailStop = new AbortController();
  const stopTail = (): void => tailStop.abort(signal?.reason);
  signal?.addEventListener('abort', stopTail, { once: true });
  let tail: Promise<FramedBody> | undefined;
  // Work tree frames of GATED_FRAME bytes or more wait until the packs' frames are done: streaming
  // such a blob through cat-file and libzstd while pack-objects streams the same blob would add up
  // the memory of both (measured with a 1 GiB file: over the 256 MiB aim).
  let openGate = (): void => undefined;
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  try {
    const commitTime = await committerTime(gitDir, commit, signal);
    const metadata = gitDirEntries(source.upstreamUrl, commit, source.defaultBranch, commitTime);
    const tree = sortIndexEntries(await listTree(gitDir, commit, signal));
    for (const entry of tree) assertSafePath(entry.path);
    const frameDir = join(scratch, await mkdirName(scratch, 'frames'));
    const input: TarInput = { gitDir, tree, metadata, commitTime, signal };
    const native = (options.compressor ?? defaultCompressor()) === 'native';
    if (native) {
      tail = compressToBody(workTreeFrames({ ...input, signal: tailStop.signal }, gate), join(frameDir, 'tail'), tailStop.signal);
      tail.catch(() => undefined); // awaited below, or stopped and awaited on failure
    }
    const layers = await writeSnapshotPacks(gitDir, commit, join(scratch, await mkdirName(scratch, 'layers')), {
      signal,
      logger: options.logger,
      layerCacheDir: options.layerCacheDir,
      sharedLayers: options.sharedLayers,
    });
    const packs = layers.flatMap((l) => l.packs);
    const packBytes = packs.reduce((sum, p) => sum + p.packSize, 0);
    log.debug({ commit, paths: tree.length, layers: layers.length, packs: packs.length, packBytes, ms: Date.now() - started }, 'snapshot pack ready');
    let result: FramedResult;
    if (tail !== undefined) {
      const prefix = await compressToBody(prefixFrames(input, packs), join(frameDir, 'prefix'), signal);
      const packBody = await compressToBody(packFrames(packs), join(frameDir, 'packs'), signal);
      openGate();
      const work = await tail;
      log.debug({ commit, ms: Date.now() - started }, 'snapshot frames compressed');
      const refs = (body: number, { weights }: FramedBody): Array<FrameRef & { weight: number }> => weights.map((weight, frame) => ({ body, frame, weight }));
      const order = [...refs(0, prefix), ...interleavePacks(refs(1, packBody), refs(2, work))];
      result = await assembleArchive([prefix, packBody, work], outPath, signal, order);
    } else {
      const sources = concatenated([prefixFrames(input, packs), workTreeFrames(input, undefined, [...packFrames(packs)])]);
      result = await compressFrames(sources, outPath, frameDir, signal);
    }
    const { sha256, size, frames } = result;
    log.debug({ commit, size, frames: frames.length, ms: Date.now() - started }, 'snapshot archive written');
    return { sha256, size, commit, frames };
  } catch (err) {
    stopTail();
    openGate(); // a tail waiting at the gate then sees the abort
    await tail?.catch(() => undefined);
    await rm(outPath, { force: true });
    if (signal?.aborted) throw abortReason(signal);
    throw err;
  } finally {
    signal?.removeEventListener('abort', stopTail);
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
  // 422: the repository itself is the problem; retrying (or another replica) cannot help.
  if (unsafe) throw new UnprocessableError(`repository cannot be snapshotted: unsafe path ${JSON.stringify(path.toString('utf8'))}`);
}

interface TarInput {
  gitDir: string;
  tree: TreeEntry[];
  metadata: GitDirEntry[];
  commitTime: number;
  signal?: AbortSignal;
}

/** Creates `<parent>/<name>` and returns `name`. */
async function mkdirName(parent: string, name: string): Promise<string> {
  await mkdir(join(parent, name));
  return name;
}

/** A stretch of the tar stream and its weight: about its length, computed before producing it. */
interface Segment {
  weight: number;
  bytes: () => AsyncIterable<Buffer> | Iterable<Buffer>;
}

/**
 * The tar stream as the contents of zstd frames, in three parts cut from each other: the `.git`
 * metadata and idx files (prefixFrames), the `.pack` files (packFrames), and the index, the work tree
 * and the end of archive (workTreeFrames); frame-order.ts then places the packs among the last. In
 * each part, runs of small segments (weight < MIN_FRAME_WEIGHT) are merged into one frame, because a
 * frame per tiny segment costs more than it saves. A frame closes before a big segment and as soon as
 * it reaches MIN_FRAME_WEIGHT, so big segments (layer packs, big files, most work tree groups) are
 * frames of their own whatever their neighbours are. Weights depend on the tree and the packs only, so
 * the merging and the order are part of the pure function too; the cuts between the parts keep the
 * work tree's frames independent of the packs, so they can be compressed first.
 */
function prefixFrames(input: TarInput, packs: PackFiles[]): Generator<FrameSource> {
  return mergeSmall(prefixSegments(input, packs));
}

/** The `.pack` files as frames (see prefixFrames). */
function packFrames(packs: PackFiles[]): Generator<FrameSource> {
  return mergeSmall(packs.map((pack) => ({ weight: entryWeight(pack.packSize), bytes: () => packEntry(pack, FILE_MTIME) })));
}

/**
 * The third part of the frames (see prefixFrames); reads the blobs from one cat-file run. A frame of
 * GATED_FRAME or more is only handed out once `gate` has resolved. `packs` (the CLI path, which
 * compresses one sequence) are placed among them by frame-order.ts; the in-process path compresses the
 * parts apart and orders the frames when it assembles the archive.
 */
async function* workTreeFrames(input: TarInput, gate: Promise<void> = Promise.resolve(), packs: FrameSource[] = []): AsyncGenerator<FrameSource> {
  const blobs: BlobSource = { done: false };
  try {
    for (const frame of interleavePacks(packs, [...mergeSmall(workTreeSegments(input, blobs))])) {
      if (frame.weight >= GATED_FRAME) await gate;
      yield frame;
    }
  } finally {
    // Stopped early (a failure anywhere, or abort): no cat-file may outlive the generation.
    if (!blobs.done) await blobs.reader?.kill();
  }
}

function* mergeSmall(segments: Iterable<Segment>): Generator<FrameSource> {
  let run: Segment[] = [];
  let weight = 0;
  const frame = (): FrameSource => {
    const source = { weight, bytes: concatenated(run.map((r) => r.bytes())) };
    run = [];
    weight = 0;
    return source;
  };
  for (const segment of segments) {
    if (segment.weight >= MIN_FRAME_WEIGHT && run.length > 0) yield frame();
    run.push(segment);
    weight += segment.weight;
    if (weight >= MIN_FRAME_WEIGHT) yield frame();
  }
  if (run.length > 0) yield frame();
}

/** The items of several sequences, one sequence after the other; each is started when reached. */
async function* concatenated<T>(sequences: Iterable<AsyncIterable<T> | Iterable<T>>): AsyncGenerator<T> {
  for (const sequence of sequences) yield* sequence;
}

/** The cat-file run that serves the work tree, started by the first group that needs it. */
interface BlobSource {
  reader?: BlobReader;
  /** Every blob was read and cat-file exited cleanly. */
  done: boolean;
}

const entryWeight = (size: number): number => TAR_BLOCK + size;

/** The `.git` metadata, then the idx file of every pack (oldest layer first, parts in order), as segments. */
function* prefixSegments(input: TarInput, packs: PackFiles[]): Generator<Segment> {
  yield { weight: input.metadata.reduce((n, e) => n + entryWeight(e.content?.length ?? 0), 0), bytes: () => metadataEntries(input.metadata, input.commitTime) };
  for (const pack of packs) {
    yield { weight: entryWeight(pack.idxSize), bytes: () => fileFromDisk(`.git/objects/pack/pack-${pack.hash}.idx`, pack.idxPath, pack.idxSize, FILE_MTIME) };
  }
}

/** The index, the work tree and the end of archive as segments; blobs from one cat-file, in tree order. */
function* workTreeSegments(input: TarInput, source: BlobSource): Generator<Segment> {
  const indexMtime = Math.max(input.commitTime, FILE_MTIME) + 1;
  yield { weight: entryWeight(gitIndexSize(input.tree)), bytes: () => indexEntry(input.tree, indexMtime) };
  const blobs = input.tree.filter((e) => e.mode !== GITLINK).map((e) => e.oid);
  const dirs = new Set<string>();
  const groups = [...workTreeGroups(input.tree)];
  for (const [i, group] of groups.entries()) {
    yield {
      weight: group.reduce((n, e) => n + entryWeight(e.size), 0),
      bytes: async function* () {
        source.reader ??= new BlobReader(input.gitDir, blobs, input.signal);
        yield* workTreeEntries(group, source.reader, dirs, FILE_MTIME);
        if (i === groups.length - 1) {
          await source.reader.close();
          source.done = true;
        }
      },
    };
  }
  yield { weight: TAR_END.length, bytes: () => [TAR_END] };
}

async function* metadataEntries(metadata: GitDirEntry[], mtime: number): AsyncGenerator<Buffer> {
  for (const entry of metadata) {
    if (entry.content === undefined) {
      yield encodeTarHeader({ path: entry.path, type: 'directory', mode: 0o755, size: 0, mtime });
    } else {
      yield encodeTarHeader({ path: entry.path, type: 'file', mode: 0o644, size: entry.content.length, mtime });
      yield entry.content;
      yield tarPadding(entry.content.length);
    }
  }
}

function packEntry(pack: PackFiles, mtime: number): AsyncGenerator<Buffer> {
  return fileFromDisk(`.git/objects/pack/pack-${pack.hash}.pack`, pack.packPath, pack.packSize, mtime);
}

/** The index, stamped `mtime`; its entries claim FILE_MTIME, like the work tree files. */
async function* indexEntry(tree: TreeEntry[], mtime: number): AsyncGenerator<Buffer> {
  const indexSize = gitIndexSize(tree);
  yield encodeTarHeader({ path: '.git/index', type: 'file', mode: 0o644, size: indexSize, mtime });
  yield* gitIndexChunks(tree, FILE_MTIME);
  yield tarPadding(indexSize);
}

/**
 * The work tree cut into frame groups (index order kept): a group ends after an entry whose path
 * hashes to 0 modulo the cut, and big files are groups of their own. Trees of more than
 * WORK_TREE_CUT × 4096 entries use a larger power-of-two cut, so an archive has at most about 4096
 * work tree frames (the frame table stays small enough for a record).
 */
export function* workTreeGroups(tree: TreeEntry[]): Generator<TreeEntry[]> {
  let cut = WORK_TREE_CUT;
  while (tree.length / cut > 4096) cut *= 2;
  let group: TreeEntry[] = [];
  for (const entry of tree) {
    const big = entry.mode !== GITLINK && entry.mode !== SYMLINK && entry.size >= BIG_FILE;
    if (big && group.length > 0) {
      yield group;
      group = [];
    }
    group.push(entry);
    if (big || fnv1a32(entry.path) % cut === 0) {
      yield group;
      group = [];
    }
  }
  if (group.length > 0) yield group;
}

async function* fileFromDisk(name: string, path: string, size: number, mtime: number): AsyncGenerator<Buffer> {
  yield encodeTarHeader({ path: name, type: 'file', mode: 0o444, size, mtime });
  let seen = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    seen += chunk.length;
    if (seen > size) break;
    yield chunk;
  }
  if (seen !== size) throw new CachewError('internal', `${name} changed size while being archived`);
  yield tarPadding(size);
}

/**
 * The tar entries of one group: the directories not yet emitted (tracked in `dirs` across groups),
 * then each file, symlink or submodule directory. Blobs come from the shared `reader` in tree order.
 */
async function* workTreeEntries(group: TreeEntry[], reader: BlobReader, dirs: Set<string>, mtime: number): AsyncGenerator<Buffer> {
  const directory = (path: Buffer): Buffer | undefined => {
    const key = path.toString('latin1');
    if (dirs.has(key)) return undefined;
    dirs.add(key);
    return encodeTarHeader({ path, type: 'directory', mode: 0o755, size: 0, mtime });
  };
  for (const entry of group) {
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
}

async function collect(body: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const parts: Buffer[] = [];
  for await (const chunk of body) parts.push(chunk);
  return parts;
}
