/**
 * Compresses a tar stream with the zstd CLI into a file of independent frames while hashing it.
 *
 * Determinism (measured with zstd 1.5.4): at a fixed level the output is identical for every worker
 * count >= 1 (`-T1`, `-T2`, `-T0`) but differs from `--single-thread` and between zstd releases. So we
 * always run in multi-threaded mode, record the zstd version in the snapshot format id, and give zstd
 * an environment without ZSTD_CLEVEL / ZSTD_NBTHREADS so a host setting cannot change the bytes.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, readFile, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CachewError, abortReason } from '../../util/errors.js';
import { runProcess, spawnProcess } from '../../util/process.js';
import { encodeFrameTable, frameTableLength, type FrameEntry } from './frames.js';

/** Compression level; part of the snapshot format (changing it changes every archive). */
export const ZSTD_LEVEL = 3;

export interface CompressResult {
  /** sha256 hex of the compressed bytes. */
  sha256: string;
  /** Length of the compressed bytes. */
  size: number;
}

/** The zstd CLI failed or could not be started. */
export class CompressorError extends CachewError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('internal', message, options);
  }
}

function zstdEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' };
}

/** The installed zstd CLI's version, e.g. "1.5.4". */
export async function zstdVersion(): Promise<string> {
  const out = await runProcess('zstd', ['-V'], {
    env: zstdEnv(),
    input: '',
    startError: (err) => new CompressorError('zstd is not installed or not runnable', { cause: err }),
    exitError: () => new CompressorError('cannot determine the zstd version'),
  });
  const match = /v(\d+\.\d+\.\d+)/.exec(out);
  if (match === null) throw new CompressorError('cannot determine the zstd version');
  return match[1];
}

/** One compressed frame in its own file under the scratch directory. */
interface FrameFile {
  path: string;
  length: number;
  size: number;
  sha256: string;
}

export interface FramedResult extends CompressResult {
  /** The data frames (the table frame at offset 0 is not listed). */
  frames: FrameEntry[];
}

/** One frame to compress: its tar bytes, and their approximate length, known before producing them. */
export interface FrameSource {
  weight: number;
  bytes: AsyncIterable<Buffer> | Iterable<Buffer>;
}

/**
 * Frames of at least this weight get a zstd process of their own, fed on stdin while they are
 * produced (packs, big files: never written uncompressed). Lighter frames are written to files and
 * compressed in batches, many files per zstd process, because a process per frame costs more than the
 * compression of a small frame (about 5 ms each, measured here, for a work tree of ~1,000 frames).
 * The two modes give different (each deterministic) bytes: a file's frame header records its size.
 * Which mode a frame gets depends on its weight only, so this threshold is part of the format.
 */
export const BATCH_FRAME_LIMIT = 1 << 20;
/** A batch is compressed once it holds this many frames or this many bytes. */
const BATCH_FILES = 256;
const BATCH_BYTES = 16 << 20;

/**
 * Compresses each frame source into its own zstd frame (`zstd -<level> -T0`: heavy frames one process
 * each on stdin, light ones in batches of files, see BATCH_FRAME_LIMIT; several processes at once) and
 * writes `outPath` (created or truncated, fsynced): the frame table (frames.ts), then the frames in
 * order. Hashes the whole file. Sources are consumed one after the other, each to its end, so they
 * may share one underlying reader; frames compress in the background while later sources are
 * produced, each to a file in `scratch` (so memory holds no frame). On any failure (or abort) every
 * zstd is killed, `outPath` is removed and the error thrown.
 */
export async function compressFrames(sources: AsyncIterable<FrameSource>, outPath: string, scratch: string, signal?: AbortSignal): Promise<FramedResult> {
  const running = new Set<Promise<unknown>>();
  const all: Array<Promise<FrameFile[]>> = [];
  const kills = new Set<() => void>();
  const slots = Math.max(2, availableParallelism());
  const start = async (job: () => Promise<FrameFile[]>): Promise<void> => {
    while (running.size >= slots) await Promise.race(running).catch(() => undefined);
    const done = job();
    done.catch(() => undefined);
    const tracked = done.finally(() => running.delete(tracked));
    tracked.catch(() => undefined);
    running.add(tracked);
    all.push(done);
  };
  let batch: RawFrame[] = [];
  let batchBytes = 0;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const files = batch;
    batch = [];
    batchBytes = 0;
    await start(() => compressBatch(files, scratch, kills, signal));
  };
  try {
    let index = 0;
    for await (const source of sources) {
      if (signal?.aborted) throw abortReason(signal);
      const path = join(scratch, `frame-${index++}`);
      if (source.weight >= BATCH_FRAME_LIMIT) {
        await flush();
        let fed: Promise<void> = Promise.resolve();
        await start(() => {
          const segment = compressSegment(source.bytes, `${path}.zst`, kills, signal);
          fed = segment.fed;
          return segment.done.then((file) => [file]);
        });
        await fed;
      } else {
        const size = await writeRaw(source.bytes, path, signal);
        batch.push({ index: index - 1, path, size });
        batchBytes += size;
        if (batch.length >= BATCH_FILES || batchBytes >= BATCH_BYTES) await flush();
      }
    }
    await flush();
    const files = (await Promise.all(all)).flat().sort((a, b) => frameIndex(a.path) - frameIndex(b.path));
    return await concatenate(files, outPath, signal);
  } catch (err) {
    for (const kill of kills) kill();
    await Promise.allSettled(all);
    await rm(outPath, { force: true });
    if (signal?.aborted) throw abortReason(signal);
    throw err;
  }
}

/** A light frame's tar bytes, written to `path` and waiting for its batch. */
interface RawFrame {
  index: number;
  path: string;
  size: number;
}

function frameIndex(path: string): number {
  return Number(/frame-(\d+)\.zst$/.exec(path)?.[1]);
}

/** Writes a light frame's bytes to `path` in a few large writes (they come as many small chunks). */
async function writeRaw(bytes: AsyncIterable<Buffer> | Iterable<Buffer>, path: string, signal?: AbortSignal): Promise<number> {
  const file = await open(path, 'wx');
  let size = 0;
  try {
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      const chunk = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      for (let at = 0; at < chunk.length; ) at += (await file.write(chunk, at, chunk.length - at)).bytesWritten;
    };
    for await (const chunk of bytes) {
      if (signal?.aborted) throw abortReason(signal);
      pending.push(chunk);
      pendingBytes += chunk.length;
      size += chunk.length;
      if (pendingBytes >= WRITE_BYTES) await flush();
    }
    await flush();
  } finally {
    await file.close();
  }
  return size;
}

/** Light frames are written in pieces of at least this much (memory per piece, not per frame). */
const WRITE_BYTES = 1 << 20;

/**
 * Compresses the files of `frames` with one zstd process, each into its own frame `<name>.zst` in
 * `outDir`, then hashes each frame and removes the uncompressed files.
 */
async function compressBatch(frames: RawFrame[], outDir: string, kills: Set<() => void>, signal?: AbortSignal): Promise<FrameFile[]> {
  const child = spawnProcess('zstd', [`-${ZSTD_LEVEL}`, '--no-check', '-T0', '-q', '--no-progress', '--output-dir-flat', outDir, '--', ...frames.map((f) => f.path)], {
    env: zstdEnv(),
    signal,
    input: '',
    startError: (err) => new CompressorError('cannot run zstd', { cause: err }),
    exitError: (code, sig, stderrTail) => new CompressorError(`zstd failed (${code ?? sig}): ${stderrTail.trim().split('\n').pop() ?? ''}`),
  });
  const kill = (): void => child.kill();
  kills.add(kill);
  child.stdout.resume();
  try {
    await child.done;
  } finally {
    kills.delete(kill);
  }
  const files: FrameFile[] = [];
  for (const frame of frames) {
    const path = join(outDir, `${basename(frame.path)}.zst`);
    const bytes = await readFile(path);
    files.push({ path, length: bytes.length, size: frame.size, sha256: createHash('sha256').update(bytes).digest('hex') });
    await rm(frame.path, { force: true });
  }
  return files;
}

/**
 * Runs one zstd over `segment` into `path`. `fed` settles once the segment has been read to its end
 * (the caller may then produce the next one); `done` once the frame file is complete.
 */
function compressSegment(
  segment: AsyncIterable<Buffer> | Iterable<Buffer>,
  path: string,
  kills: Set<() => void>,
  signal?: AbortSignal,
): { fed: Promise<void>; done: Promise<FrameFile> } {
  const child = spawnProcess('zstd', [`-${ZSTD_LEVEL}`, '--no-check', '-T0', '-q', '-c'], {
    env: zstdEnv(),
    signal,
    startError: (err) => new CompressorError('cannot run zstd', { cause: err }),
    exitError: (code, sig, stderrTail) => new CompressorError(`zstd failed (${code ?? sig}): ${stderrTail.trim().split('\n').pop() ?? ''}`),
  });
  const kill = (): void => child.kill();
  kills.add(kill);
  const exited = child.done;
  exited.catch(() => undefined);
  let size = 0;
  const counted = async function* (): AsyncGenerator<Buffer> {
    for await (const chunk of segment) {
      size += chunk.length;
      yield chunk;
    }
  };
  const fed = pipeline(Readable.from(counted(), { objectMode: false }), child.stdin, { signal }).catch((err: unknown) => {
    kill();
    throw err;
  });
  const drained = (async (): Promise<{ length: number; sha256: string }> => {
    const hash = createHash('sha256');
    let length = 0;
    const file = createWriteStream(path, { flags: 'wx' });
    const counting = async function* (): AsyncGenerator<Buffer> {
      for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
        hash.update(chunk);
        length += chunk.length;
        yield chunk;
      }
    };
    await pipeline(counting, file);
    return { length, sha256: hash.digest('hex') };
  })().catch((err: unknown) => {
    kill();
    throw err;
  });
  const done = (async (): Promise<FrameFile> => {
    const outcomes = await Promise.allSettled([fed, drained, exited]);
    kills.delete(kill);
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    const { length, sha256 } = (outcomes[1] as PromiseFulfilledResult<{ length: number; sha256: string }>).value;
    return { path, length, size, sha256 };
  })();
  return { fed, done };
}

/** Writes the table and the frame files into `outPath`, hashing everything; fsyncs. */
async function concatenate(files: FrameFile[], outPath: string, signal?: AbortSignal): Promise<FramedResult> {
  let offset = frameTableLength(files.length);
  const frames = files.map((f) => {
    const frame: FrameEntry = { offset, length: f.length, size: f.size, sha256: f.sha256 };
    offset += f.length;
    return frame;
  });
  const hash = createHash('sha256');
  let size = 0;
  const file = await open(outPath, 'w', 0o644);
  let closed = false;
  try {
    const write = async (chunk: Buffer): Promise<void> => {
      hash.update(chunk);
      size += chunk.length;
      let at = 0;
      while (at < chunk.length) at += (await file.write(chunk, at, chunk.length - at)).bytesWritten;
    };
    await write(encodeFrameTable(frames));
    for (const f of files) {
      if (f.length <= WRITE_BYTES) await write(await readFile(f.path, { signal }));
      else for await (const chunk of createReadStream(f.path, { signal, highWaterMark: WRITE_BYTES }) as AsyncIterable<Buffer>) await write(chunk);
      await rm(f.path, { force: true });
    }
    await file.sync();
    await file.close();
    closed = true;
  } finally {
    if (!closed) await file.close().catch(() => undefined);
  }
  return { sha256: hash.digest('hex'), size, frames };
}
