/**
 * Safe tar extraction into a fresh directory, safe even against a malicious server.
 *
 * Entries may only create regular files, directories and symlinks strictly inside the root. We reject
 * absolute names, `..` components, hardlinks, devices and fifos, and any entry whose parent is a
 * symlink (or a file) created earlier in the same archive. Symlink targets are written verbatim: they
 * are harmless because nothing here ever follows one — files are created with O_CREAT|O_EXCL (`wx`),
 * which fails on an existing symlink, and every missing parent is created with mkdir and, if it
 * already exists, checked with lstat.
 *
 * Modes (the executable bit) and mtimes come from the headers: the snapshot's git index records the
 * archive's mtimes, so restoring them keeps `git status` from rehashing every file.
 */
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { extract as tarExtract, type Extract, type Header as TarHeader } from 'tar-stream';
import { abortReason } from '../util/errors.js';
import { UnsafeArchiveError } from './errors.js';

export interface ExtractOptions {
  signal?: AbortSignal;
}

export interface ExtractStats {
  entries: number;
  files: number;
  /** Bytes of regular-file content written. */
  bytes: number;
}

type Kind = 'dir' | 'file' | 'symlink';

/**
 * Files up to this size are read into memory and written in the background, up to
 * MAX_PARALLEL_WRITES at a time, while parsing continues: a snapshot is thousands of small files,
 * and writing them one after the other spends most of the time waiting on open/write/close round
 * trips. Memory stays bounded by SMALL_FILE_BYTES × MAX_PARALLEL_WRITES (16 MiB). Larger files are
 * streamed in order.
 */
const SMALL_FILE_BYTES = 512 * 1024;
const MAX_PARALLEL_WRITES = 32;
const WRITE_BATCH_BYTES = 1024 * 1024;
const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
/** tar-stream's entry: a streamx Readable of the entry's content with its parsed header. */
type Entry = Extract extends AsyncIterable<infer T> ? T : never;

/**
 * The path components of a tar entry name, relative to the extraction root. `.` and empty components
 * are dropped (`./a//b/` → `['a', 'b']`; `./` → `[]`, the root itself). Throws UnsafeArchiveError for
 * absolute names, `..` components and NUL bytes.
 */
export function entryPathSegments(name: string): string[] {
  if (name.includes('\0')) throw new UnsafeArchiveError(`entry name contains a NUL byte`);
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) throw new UnsafeArchiveError(`absolute entry name "${name}"`);
  const segments = name.split('/').filter((segment) => segment !== '' && segment !== '.');
  if (segments.includes('..')) throw new UnsafeArchiveError(`entry name "${name}" contains ".."`);
  return segments;
}

/**
 * Resolves segments under `root` and double-checks the result stays inside it (defence in depth for
 * platform path quirks the segment rules might miss).
 */
export function resolveInside(root: string, segments: readonly string[]): string {
  const full = path.resolve(root, ...segments);
  const relative = path.relative(root, full);
  if (relative.startsWith('..') || path.isAbsolute(relative)) {
    throw new UnsafeArchiveError(`entry "${segments.join('/')}" resolves outside the target`);
  }
  return full;
}

/**
 * Extracts the tar stream `input` into `root` (an existing, empty directory this process owns).
 * Resolves when every entry is on disk with its mode and mtime; rejects with UnsafeArchiveError (or
 * the stream's error) and leaves the partial tree for the caller to remove.
 */
export async function extractTar(input: Readable, root: string, options: ExtractOptions = {}): Promise<ExtractStats> {
  const extractor = new SafeExtractor(path.resolve(root), options.signal);
  const tarStream = tarExtract();
  const feeding = feed(input, tarStream);
  feeding.catch(() => undefined); // awaited below; a failure also ends the entry iteration
  // Aborting stops the bytes at the source; the entry being written then fails and we unwind.
  const onAbort = (): void => {
    input.destroy(abortReason(options.signal!));
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const entry of tarStream) {
      await extractor.entry(entry);
    }
    await feeding;
  } catch (err) {
    input.destroy();
    tarStream.destroy();
    await feeding.catch(() => undefined);
    // Settle only once no background write can still touch the tree the caller is about to delete.
    await extractor.drain().catch(() => undefined);
    throw options.signal?.aborted ? abortReason(options.signal) : err;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  await extractor.finish();
  return extractor.stats;
}

/**
 * Copies a Node Readable into tar-stream's (streamx) Writable with backpressure. Written by hand
 * rather than with stream.pipeline because the two stream families disagree on end-of-stream events.
 */
async function feed(input: Readable, sink: Extract): Promise<void> {
  try {
    for await (const piece of input) {
      if (sink.destroyed) throw new UnsafeArchiveError('archive ended before its input');
      if (!sink.write(piece)) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            sink.off('drain', done);
            sink.off('close', done);
            resolve();
          };
          sink.on('drain', done);
          sink.on('close', done);
        });
      }
    }
    sink.end(undefined);
  } catch (err) {
    sink.destroy(err as Error);
    throw err;
  }
}

class SafeExtractor {
  readonly stats: ExtractStats = { entries: 0, files: 0, bytes: 0 };
  /** What this archive created, by relative path: the authority for "is a parent a symlink". */
  private readonly kinds = new Map<string, Kind>();
  private readonly directories: Array<{ full: string; depth: number; mode: number; mtime?: Date }> = [];
  /** Background writes in flight; the first failure is kept and rethrown. */
  private readonly pending = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;

  constructor(
    private readonly root: string,
    private readonly signal?: AbortSignal,
  ) {}

  async entry(entry: Entry): Promise<void> {
    if (this.signal?.aborted) throw abortReason(this.signal);
    const header = entry.header;
    this.stats.entries++;
    // tar-stream consumes pax and GNU long-name records itself; `null` is a typeflag it does not know.
    const type: string = header.type ?? 'unknown';
    const segments = entryPathSegments(header.name);
    if (segments.length === 0) {
      if (type !== 'directory') throw new UnsafeArchiveError(`non-directory entry for the archive root`);
      entry.resume();
      return;
    }
    const full = resolveInside(this.root, segments);
    const relative = segments.join('/');
    switch (type) {
      case 'file':
      case 'contiguous-file':
        await this.ensureParents(segments, header.name);
        await this.writeFile(entry, full, relative, header);
        return;
      case 'directory':
        await this.ensureParents(segments, header.name);
        await this.makeDirectory(full, relative, header.name);
        this.directories.push({ full, depth: segments.length, mode: (header.mode ?? 0o755) & 0o777, mtime: header.mtime });
        entry.resume();
        return;
      case 'symlink':
        await this.ensureParents(segments, header.name);
        await this.makeSymlink(full, relative, header);
        entry.resume();
        return;
      case 'link':
        throw new UnsafeArchiveError(`hardlink entry "${header.name}"`);
      default:
        throw new UnsafeArchiveError(`unsupported ${type} entry "${header.name}"`);
    }
  }

  /** Waits for every background write; rethrows the first failure. */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
    if (this.failure) throw this.failure.error;
  }

  /** Runs `task` in the background once fewer than MAX_PARALLEL_WRITES are in flight. */
  private async background(task: () => Promise<void>): Promise<void> {
    while (this.pending.size >= MAX_PARALLEL_WRITES) await Promise.race(this.pending);
    if (this.failure) throw this.failure.error;
    const running: Promise<void> = task()
      .catch((error: unknown) => {
        this.failure ??= { error };
      })
      .finally(() => this.pending.delete(running));
    this.pending.add(running);
  }

  /** Applies directory modes and mtimes last: creating children changes a directory's mtime. */
  async finish(): Promise<void> {
    await this.drain();
    const deepestFirst = [...this.directories].sort((a, b) => b.depth - a.depth);
    for (const dir of deepestFirst) {
      // Keep the owner's rwx so the caller can still rename and, on failure, delete the tree.
      await fs.chmod(dir.full, dir.mode | 0o700);
      if (dir.mtime) await fs.utimes(dir.full, dir.mtime, dir.mtime);
    }
  }

  private async ensureParents(segments: readonly string[], name: string): Promise<void> {
    for (let depth = 1; depth < segments.length; depth++) {
      const relative = segments.slice(0, depth).join('/');
      const kind = this.kinds.get(relative);
      if (kind === 'dir') continue;
      if (kind === 'symlink') throw new UnsafeArchiveError(`entry "${name}" goes through symlink "${relative}"`);
      if (kind === 'file') throw new UnsafeArchiveError(`entry "${name}" goes through file "${relative}"`);
      await this.makeDirectory(resolveInside(this.root, segments.slice(0, depth)), relative, name);
    }
  }

  private async makeDirectory(full: string, relative: string, name: string): Promise<void> {
    const kind = this.kinds.get(relative);
    if (kind === 'dir') return;
    if (kind !== undefined) throw new UnsafeArchiveError(`directory entry "${name}" replaces a ${kind}`);
    try {
      await fs.mkdir(full, { mode: 0o755 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // Something is already there (e.g. a case-insensitive alias of an earlier entry): only a real
      // directory is acceptable, never a symlink to one.
      const stat = await fs.lstat(full);
      if (!stat.isDirectory()) throw new UnsafeArchiveError(`entry "${name}" goes through a non-directory`);
    }
    this.kinds.set(relative, 'dir');
  }

  private async writeFile(entry: Entry, full: string, relative: string, header: TarHeader): Promise<void> {
    if (this.kinds.has(relative)) throw new UnsafeArchiveError(`duplicate entry "${header.name}"`);
    this.kinds.set(relative, 'file');
    const mode = (header.mode ?? 0o644) & 0o777;
    const size = header.size ?? 0;
    this.stats.files++;
    this.stats.bytes += size;
    if (size <= SMALL_FILE_BYTES) {
      const pieces: Buffer[] = [];
      for await (const piece of entry as AsyncIterable<Buffer>) pieces.push(piece);
      const content = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
      await this.background(() => writeWhole(full, content, mode, header.mtime));
      return;
    }
    // O_EXCL: fails rather than following a symlink or truncating something that exists.
    const handle = await fs.open(full, CREATE_FLAGS, 0o600);
    try {
      // tar-stream hands out small pieces; one write per ~1 MiB saves thousands of round trips.
      let batch: Buffer[] = [];
      let batched = 0;
      for await (const piece of entry as AsyncIterable<Buffer>) {
        batch.push(piece);
        batched += piece.length;
        if (batched >= WRITE_BATCH_BYTES) {
          await writeAll(handle, Buffer.concat(batch, batched));
          batch = [];
          batched = 0;
        }
      }
      if (batched > 0) await writeAll(handle, Buffer.concat(batch, batched));
      await handle.chmod(mode);
      if (header.mtime) await handle.utimes(header.mtime, header.mtime);
    } finally {
      await handle.close();
    }
  }

  private async makeSymlink(full: string, relative: string, header: TarHeader): Promise<void> {
    if (this.kinds.has(relative)) throw new UnsafeArchiveError(`duplicate entry "${header.name}"`);
    if (!header.linkname) throw new UnsafeArchiveError(`symlink "${header.name}" without a target`);
    this.kinds.set(relative, 'symlink');
    const { linkname, mtime } = header;
    await this.background(async () => {
      await fs.symlink(linkname, full);
      if (mtime) await fs.lutimes(full, mtime, mtime);
    });
  }
}

/** Creates a new file (never through a symlink, never over anything) with its content, mode and mtime. */
async function writeWhole(full: string, content: Buffer, mode: number, mtime: Date | undefined): Promise<void> {
  const handle = await fs.open(full, CREATE_FLAGS, 0o600);
  try {
    await writeAll(handle, content);
    await handle.chmod(mode);
    if (mtime) await handle.utimes(mtime, mtime);
  } finally {
    await handle.close();
  }
}

async function writeAll(handle: fs.FileHandle, data: Buffer): Promise<void> {
  let written = 0;
  while (written < data.length) {
    written += (await handle.write(data, written, data.length - written)).bytesWritten;
  }
}
