/**
 * Decompression of a snapshot's zstd stream for the restore client.
 *
 * In-process (libzstd through the `zstd-napi` addon) by default: the compressed bytes go from the
 * socket straight into libzstd, which writes its output straight into the extraction thread's shared
 * memory (`decompressInto`, see archive.ts extractZstd). The former design
 * piped them through a `zstd -d` child and read its output back, 64 KiB per event: two extra copies
 * through the kernel, two processes ping-ponging on small pipes and ~10k event-loop turns per
 * 350 MB, which profiling showed as the restore's critical path on a 2-core machine
 * (docs/benchmarks.md). The `zstd` CLI remains the fallback when the addon cannot load (it is built
 * from source at install) or when `CACHEW_ZSTD=cli` asks for it.
 *
 * Both read the same format (concatenated frames, skippable frames such as the frame table skipped)
 * and both refuse windows over 128 MiB, so a hostile frame cannot make the client allocate more.
 */
import { once } from 'node:events';
import { CachewError } from '../util/errors.js';
import { spawnProcess } from '../util/process.js';
import { zstdAddon, type DecompressionContext } from '../util/zstd-addon.js';
import { CorruptArchiveError, SecondaryError } from './errors.js';
import { isSymptom } from './first-failure.js';

/** log2 of the largest window accepted (128 MiB, the zstd CLI's own default limit). */
const WINDOW_LOG_MAX = 27;

export type DecompressorKind = 'native' | 'cli';

/** Which decompressor a restore uses now: `CACHEW_ZSTD=cli` forces the CLI. */
export function decompressorKind(): DecompressorKind {
  return process.env.CACHEW_ZSTD !== 'cli' && zstdAddon() !== null ? 'native' : 'cli';
}

/** Memory to decompress into in place: `room` gives writable bytes, `commit` says how many were written. */
export interface OutputRoom {
  room(): Promise<Uint8Array>;
  commit(count: number): void;
}

/**
 * Decompresses `source` with libzstd straight into `sink`'s memory (the extraction ring): no output
 * buffer and no copy. Native only (callers check `decompressorKind()`); errors as `decompress`.
 */
export async function decompressInto(source: AsyncIterable<Buffer>, sink: OutputRoom, onConsumed?: (chunk: Buffer) => void): Promise<void> {
  const zstd = zstdAddon();
  if (zstd === null) throw new CachewError('internal', 'the zstd addon is not available');
  const context = new zstd.DCtx();
  context.setParameter(zstd.DParameter.windowLogMax, WINDOW_LOG_MAX);
  let pending = 0;
  let sawInput = false;
  for await (const chunk of source) {
    if (chunk.length === 0) continue;
    sawInput = true;
    let input: Buffer = chunk;
    // A full room may mean libzstd holds more output for this input: call again until it does not.
    for (let full = false; input.length > 0 || full; ) {
      const room = await sink.room();
      const [hint, written, read] = step(context, room, input);
      pending = hint;
      sink.commit(written);
      input = input.subarray(read);
      full = written === room.length;
      if (written === 0 && read === 0) break; // defensive: no progress possible with this input
    }
    // libzstd copies what it keeps of its input: nothing reads `chunk` after this.
    if (input.length === 0) onConsumed?.(chunk);
  }
  if (!sawInput) throw new CorruptArchiveError('empty stream');
  if (pending !== 0) throw new CorruptArchiveError('truncated (the stream ends inside a frame)');
}

function step(context: DecompressionContext, out: Uint8Array, input: Buffer): [number, number, number] {
  try {
    return context.decompressStream(out, input);
  } catch (err) {
    throw new CorruptArchiveError(err instanceof Error ? err.message : String(err));
  }
}

/**
 * Decompresses `source` (a zstd stream, pulled as it is consumed) through a `zstd -d` child: input
 * written to its stdin while its stdout is read. Rejects with CorruptArchiveError when the input is not
 * zstd or ends inside a frame; errors of `source` itself pass through unchanged.
 */
export async function* decompressWithCli(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer, void, undefined> {
  const zstd = spawnProcess('zstd', ['-d', '-q', '-c', `--memory=${2 ** (WINDOW_LOG_MAX - 20)}MB`], {
    env: process.env,
    exitError: (code, killedBy, stderr) =>
      // zstd only dies of a signal when its reader went away (SIGPIPE) or we killed it: a symptom.
      killedBy !== null || /broken pipe/i.test(stderr)
        ? new SecondaryError(`zstd -d stopped (${code ?? killedBy})`)
        : new CorruptArchiveError(`zstd -d failed (${code}): ${stderr.trim().split('\n').pop() ?? ''}`),
  });
  const stopFeeding = new AbortController();
  // Settles with the source's own error (or undefined): never rejects, never outlives the generator.
  const feeding = (async (): Promise<unknown> => {
    try {
      for await (const chunk of source) {
        if (!zstd.stdin.write(chunk)) await once(zstd.stdin, 'drain', { signal: stopFeeding.signal });
      }
      zstd.stdin.end();
      return undefined;
    } catch (err) {
      zstd.kill(); // zstd's death is then a symptom of this
      return stopFeeding.signal.aborted ? undefined : err;
    }
  })();
  try {
    for await (const chunk of zstd.stdout as AsyncIterable<Buffer>) yield chunk;
    await zstd.done;
    const failed = await feeding;
    if (failed !== undefined) throw failed;
  } catch (err) {
    stopFeeding.abort();
    zstd.kill();
    if (!isSymptom(err)) throw err;
    // zstd died because the source failed (feeding killed it): the source's error is the cause.
    throw (await feeding) ?? err;
  } finally {
    stopFeeding.abort();
    zstd.kill();
    await zstd.exited;
  }
}
