/**
 * Safe tar extraction into a fresh directory, safe even against a malicious server.
 *
 * Our code reads every header of the (decompressed) snapshot and decides, entry by entry, whether it
 * may be written (entry-policy.ts: only files, directories and symlinks strictly inside the root, no
 * path through a symlink, no duplicates). The admitted entries are re-encoded as canonical headers and
 * streamed with their content into the system `tar`, which does the writing (system-tar.ts). An unsafe
 * entry stops the stream before any byte of it reaches `tar`: nothing is ever written for it.
 *
 * Modes (the executable bit) and mtimes come from the headers: the snapshot's git index records the
 * archive's mtimes, so restoring them keeps `git status` from rehashing every file.
 */
import { Readable, type Writable } from 'node:stream';
import { abortReason } from '../util/errors.js';
import { TarFailedError, UnsafeArchiveError } from './errors.js';
import { startTar } from './system-tar.js';
import { TarFilter, type FilterStats } from './tar-filter.js';

export { entryPathSegments } from './entry-policy.js';

export interface ExtractOptions {
  signal?: AbortSignal;
}

/** What was extracted: admitted entries, regular files, and bytes of file content. */
export type ExtractStats = FilterStats;

/**
 * Extracts the tar stream `input` (a Readable or any async iterable of chunks, e.g. the decompressor's
 * output) into `root` (an existing, empty directory this process owns).
 * Resolves when `tar` has written every entry and exited; rejects with UnsafeArchiveError, the
 * stream's error or tar's own failure (TarFailedError), and leaves the partial tree for the caller to
 * remove. It settles only after `tar` has exited, so nothing writes into `root` afterwards.
 */
export async function extractTar(input: Readable | AsyncIterable<Buffer>, root: string, options: ExtractOptions = {}): Promise<ExtractStats> {
  const { signal } = options;
  if (signal?.aborted) throw abortReason(signal);
  // Claim the stream before the first await: a child's stdout nobody listens to is drained and
  // discarded by Node when the child exits, which a small archive's zstd may do meanwhile.
  const chunks = (input as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  // Stops the input: a stream is destroyed, a generator closed (its own finally blocks then stop
  // whatever feeds it, e.g. the download).
  const stopInput = (reason?: unknown): void => {
    if (isReadable(input)) input.destroy(reason as Error | undefined);
    else void chunks.return?.().catch(() => undefined);
  };
  const first = chunks.next();
  first.catch(() => undefined); // awaited below, unless tar cannot start
  let tar;
  try {
    tar = await startTar(root);
  } catch (err) {
    stopInput();
    throw err;
  }
  const filter = new TarFilter();
  tar.stdin.on('error', () => undefined); // EPIPE when tar died: its exit status says why
  const onAbort = (): void => {
    stopInput(abortReason(signal!));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    let complete = true;
    for (let next = await first; !next.done; next = await chunks.next()) {
      const chunk = next.value;
      const pieces = filter.push(chunk);
      if (pieces.length > 0 && !(await writePieces(tar.stdin, pieces))) {
        complete = false;
        break;
      }
    }
    if (!complete) await chunks.return?.();
    if (complete) {
      filter.finish();
      tar.stdin.end();
    }
    const { code, signal: killedBy, stderr } = await tar.exited;
    if (code !== 0) throw new TarFailedError(`tar -x failed (${code ?? killedBy}): ${firstError(stderr)}`);
    if (!complete) throw new TarFailedError('tar stopped reading before the end of the archive');
    return filter.stats;
  } catch (err) {
    // No read is pending here, so a generator closes at once, running its cleanup (e.g. a CLI
    // decompressor waits for its child) before we settle.
    if (isReadable(input)) input.destroy();
    else await chunks.return?.().catch(() => undefined);
    tar.kill();
    await tar.exited;
    // Our own findings stand; anything else that broke while the signal fired is the abort's doing.
    const ours = err instanceof UnsafeArchiveError || err instanceof TarFailedError;
    throw signal?.aborted && !ours ? abortReason(signal) : err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Writes `pieces` as one batch (a single writev) and waits for the pipe to drain when it is full.
 * Returns false when tar's stdin is gone.
 */
async function writePieces(stdin: Writable, pieces: Buffer[]): Promise<boolean> {
  if (stdin.destroyed) return false;
  stdin.cork();
  for (const piece of pieces) stdin.write(piece);
  stdin.uncork();
  if (!stdin.writableNeedDrain) return true;
  return new Promise<boolean>((resolve) => {
    const settle = (ok: boolean): void => {
      stdin.off('drain', onDrain);
      stdin.off('close', onClose);
      resolve(ok);
    };
    const onDrain = (): void => settle(true);
    const onClose = (): void => settle(false);
    stdin.on('drain', onDrain);
    stdin.on('close', onClose);
  });
}

/** tar's first real complaint, not its closing boilerplate ("Error is not recoverable: exiting now"). */
function firstError(stderr: string): string {
  const lines = stderr.trim().split('\n');
  return lines.find((line) => !/not recoverable|Exiting with failure status/.test(line)) ?? lines[lines.length - 1] ?? '';
}

function isReadable(input: Readable | AsyncIterable<Buffer>): input is Readable {
  return input instanceof Readable;
}
