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
import { open, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
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

/**
 * Compresses each segment of `segments` into its own zstd frame (`zstd -<level> -T0` fed on stdin,
 * one process per frame, several at once) and writes `outPath` (created or truncated, fsynced): the
 * frame table (frames.ts), then the frames in order. Hashes the whole file. Segments are consumed
 * one after the other, each to its end, so they may share one underlying reader; frames compress in
 * the background while later segments are produced, each to a file in `scratch` (so memory holds no
 * frame). On any failure (or abort) every zstd is killed, `outPath` is removed and the error thrown.
 */
export async function compressFrames(
  segments: AsyncIterable<AsyncIterable<Buffer> | Iterable<Buffer>>,
  outPath: string,
  scratch: string,
  signal?: AbortSignal,
): Promise<FramedResult> {
  const running = new Set<Promise<FrameFile>>();
  const all: Array<Promise<FrameFile>> = [];
  const kills = new Set<() => void>();
  const slots = Math.max(2, availableParallelism());
  try {
    let index = 0;
    for await (const segment of segments) {
      if (signal?.aborted) throw abortReason(signal);
      while (running.size >= slots) await Promise.race(running).catch(() => undefined);
      const { fed, done } = compressSegment(segment, join(scratch, `frame-${index++}.zst`), kills, signal);
      done.catch(() => undefined);
      const tracked = done.finally(() => running.delete(tracked));
      tracked.catch(() => undefined);
      running.add(tracked);
      all.push(done);
      await fed;
    }
    const files = await Promise.all(all);
    return await concatenate(files, outPath, signal);
  } catch (err) {
    for (const kill of kills) kill();
    await Promise.allSettled(all);
    await rm(outPath, { force: true });
    if (signal?.aborted) throw abortReason(signal);
    throw err;
  }
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
  const child = spawnProcess('zstd', [`-${ZSTD_LEVEL}`, '-T0', '-q', '-c'], {
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
      for await (const chunk of createReadStream(f.path, { signal }) as AsyncIterable<Buffer>) await write(chunk);
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
