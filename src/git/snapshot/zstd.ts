/**
 * Compresses a byte stream with the zstd CLI into a file while hashing it.
 *
 * Determinism (measured with zstd 1.5.4): at a fixed level the output is identical for every worker
 * count >= 1 (`-T1`, `-T2`, `-T0`) but differs from `--single-thread` and between zstd releases. So we
 * always run in multi-threaded mode, record the zstd version in the snapshot format id, and give zstd
 * an environment without ZSTD_CLEVEL / ZSTD_NBTHREADS so a host setting cannot change the bytes.
 */
import { createHash } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CachewError, abortReason } from '../../util/errors.js';
import { runProcess, spawnProcess } from '../../util/process.js';

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

/**
 * Pipes `source` through `zstd -<level> -T0` into `outPath` (created or truncated), hashing and
 * counting the compressed bytes, and fsyncs the file. On any failure (or abort) the zstd process is
 * killed, `outPath` is removed and the error is thrown.
 */
export async function compressToFile(
  source: AsyncIterable<Buffer>,
  outPath: string,
  signal?: AbortSignal,
): Promise<CompressResult> {
  const child = spawnProcess('zstd', [`-${ZSTD_LEVEL}`, '-T0', '-q', '-c'], {
    env: zstdEnv(),
    signal,
    startError: (err) => new CompressorError('cannot run zstd', { cause: err }),
    exitError: (code, sig, stderrTail) => new CompressorError(`zstd failed (${code ?? sig}): ${stderrTail.trim().split('\n').pop() ?? ''}`),
  });
  const { kill } = child;

  const file = await open(outPath, 'w', 0o644);
  let fileClosed = false;
  try {
    const hash = createHash('sha256');
    let size = 0;
    // The first failure anywhere kills zstd, so the other two promises settle instead of waiting on a
    // pipe nobody drains.
    const killOnFailure = (err: unknown): never => {
      kill();
      throw err;
    };
    const feed = pipeline(Readable.from(source, { objectMode: false }), child.stdin, { signal }).catch(killOnFailure);
    const drain = (async () => {
      for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
        hash.update(chunk);
        size += chunk.length;
        let offset = 0;
        while (offset < chunk.length) {
          const { bytesWritten } = await file.write(chunk, offset, chunk.length - offset);
          offset += bytesWritten;
        }
      }
    })().catch((err: unknown) => {
      child.stdout.destroy();
      return killOnFailure(err);
    });
    const outcomes = await Promise.allSettled([feed, drain, child.done]);
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (signal?.aborted) throw abortReason(signal);
    if (failed !== undefined) throw failed.reason;
    await file.sync();
    await file.close();
    fileClosed = true;
    return { sha256: hash.digest('hex'), size };
  } catch (err) {
    kill();
    if (!fileClosed) await file.close().catch(() => undefined);
    await rm(outPath, { force: true });
    throw err;
  }
}
