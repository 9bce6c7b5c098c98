/**
 * Safe tar extraction into a fresh directory, safe even against a malicious server.
 *
 * Our code reads every header of the (decompressed) snapshot and decides, entry by entry, whether it
 * may be written (entry-policy.ts: only files, directories and symlinks strictly inside the root, no
 * path through a symlink, no duplicates); an unsafe entry stops the extraction before anything is
 * written for it. Parsing and writing run on a thread of their own (extract-thread.ts,
 * extract-worker.ts, tree-writer.ts), so the caller's thread keeps downloading, hashing and
 * decompressing meanwhile.
 *
 * Modes (the executable bit) and mtimes come from the headers: the snapshot's git index records the
 * archive's mtimes, so restoring them keeps `git status` from rehashing every file.
 */
import type { Readable } from 'node:stream';
import { abortReason } from '../util/errors.js';
import { UnsafeArchiveError, WriteFailedError } from './errors.js';
import { ExtractThread } from './extract-thread.js';
import { mark } from './trace.js';
import { decompressInto, decompressWithCli, decompressorKind } from './zstd-decompress.js';
import type { StatTable } from './stat-table.js';
import type { FilterStats } from './tar-filter.js';

export { entryPathSegments } from './entry-policy.js';

export interface ExtractOptions {
  signal?: AbortSignal;
  /** Runs once the archive's `.git` is completely written, while the work tree is still extracted. */
  onGitDir?: () => void;
  /**
   * An extraction thread the caller started earlier into the same root, so that its start-up (~0.1 s,
   * docs/restore.md "Start-up") overlaps the first request; the extraction then owns it and stops it
   * as if it had started it, and `onGitDir` is the one the thread was started with.
   */
  thread?: ExtractThread;
  /**
   * Called with each input chunk once the decompressor is done with it (libzstd path only), so its
   * memory may be reused (slab-pool.ts).
   */
  onConsumed?: (chunk: Buffer) => void;
}

/**
 * What was extracted: admitted entries, regular files, bytes of file content, and the stat data of
 * every file and symlink written (stat-table.ts).
 */
export type ExtractStats = FilterStats & { statTable: StatTable; patchedIndex?: Buffer };

/**
 * Extracts the tar stream `input` (a Readable or any async iterable of chunks, e.g. the decompressor's
 * output) into `root` (an existing, empty directory this process owns).
 * Resolves when every entry is written; rejects with UnsafeArchiveError, the stream's error or a
 * failure to write (WriteFailedError), and leaves the partial tree for the caller to remove. It
 * settles only after the extraction thread has stopped, so nothing writes into `root` afterwards.
 */
export async function extractTar(input: Readable | AsyncIterable<Buffer>, root: string, options: ExtractOptions = {}): Promise<ExtractStats> {
  // Claim the stream before anything else: a child's stdout nobody listens to is drained and
  // discarded by Node when the child exits, which a small archive's zstd may do meanwhile.
  const chunks = (input as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  return extract(input, chunks, root, options, async (thread) => {
    for (let next = await chunks.next(); !next.done; next = await chunks.next()) await thread.write(next.value);
  });
}

/**
 * Extracts the zstd-compressed tar stream `compressed` into `root`, as `extractTar` does. With the
 * libzstd addon the bytes are decompressed straight into the extraction thread's shared memory (no
 * output buffers, no copy); with the CLI fallback through `decompressWithCli`.
 */
export async function extractZstd(compressed: AsyncIterable<Buffer>, root: string, options: ExtractOptions = {}): Promise<ExtractStats> {
  if (decompressorKind() !== 'native') return extractTar(decompressWithCli(compressed), root, options);
  const chunks = compressed[Symbol.asyncIterator]();
  const source: AsyncIterable<Buffer> = { [Symbol.asyncIterator]: () => chunks };
  return extract(compressed, chunks, root, options, (thread) => decompressInto(source, thread, options.onConsumed));
}

/** Runs `feed` into a fresh extraction thread; see extractTar for the contract. */
async function extract(
  input: Readable | AsyncIterable<Buffer>,
  chunks: AsyncIterator<Buffer>,
  root: string,
  options: ExtractOptions,
  feed: (thread: ExtractThread) => Promise<void>,
): Promise<ExtractStats> {
  const { signal } = options;
  if (signal?.aborted) {
    await chunks.return?.(undefined).catch(() => undefined);
    await options.thread?.stop();
    throw abortReason(signal);
  }
  const thread = options.thread ?? new ExtractThread(root, options.onGitDir);
  const onAbort = (): void => {
    const reason = abortReason(signal!);
    void thread.stop(reason);
    // A stream stops at once; a generator's own finally blocks stop whatever feeds it.
    if (isDestroyable(input)) input.destroy(reason);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  let finished = false;
  try {
    await feed(thread);
    mark('last-byte-fed');
    const { stats, statTable, patchedIndex } = await thread.end();
    finished = true;
    mark('extracted');
    return { ...stats, statTable, patchedIndex };
  } catch (err) {
    // Closing the input runs a generator's cleanup (a CLI decompressor waits for its child) first.
    if (isDestroyable(input)) input.destroy();
    else await chunks.return?.(undefined).catch(() => undefined);
    // Our own findings stand; anything else that broke while the signal fired is the abort's doing.
    const ours = err instanceof UnsafeArchiveError || err instanceof WriteFailedError;
    throw signal?.aborted && !ours ? abortReason(signal) : err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // After its last entry the thread writes nothing more (it reported `done` after the directories'
    // mtimes): its exit (15–20 ms measured, the worker's teardown) need not hold up the restore.
    const stopping = thread.stop();
    if (!finished) await stopping;
    else stopping.catch(() => undefined);
  }
}

function isDestroyable(input: Readable | AsyncIterable<Buffer>): input is Readable {
  return typeof (input as Readable).destroy === 'function';
}
