/**
 * The extraction thread (started by extract-thread.ts): runs the tar filter and the tree writer on the
 * decompressed archive bytes the restore's main thread puts in a shared ring (byte-ring.ts), so the
 * main thread keeps receiving, hashing and decompressing while this one parses headers and makes
 * system calls. It runs one synchronous loop (blocking on the ring when it is empty) and sends a
 * message when the archive's `.git` is written (`{ gitDir }`, git-dir-watch.ts) and one at the end:
 * `{ done }` with the stats and the written entries' stat data (stat-table.ts, its buffer
 * transferred, not copied), or `{ failed }`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { RingReader, type RingMemory } from './byte-ring.js';
import { SecondaryError, UnsafeArchiveError } from './errors.js';
import { GitDirWatch } from './git-dir-watch.js';
import { StatRecorder } from './stat-table.js';
import { TarFilter, type FilterStats } from './tar-filter.js';
import { TreeWriter } from './tree-writer.js';

/** What the main thread gives the thread at start. */
export interface ExtractJob {
  root: string;
  umask: number;
  ring: RingMemory;
}

/** How a failure crosses the thread boundary: the main thread rebuilds the error class from `kind`. */
export interface ExtractFailure {
  kind: 'unsafe' | 'truncated' | 'write';
  message: string;
}

/** `gitDir`: the archive's `.git` is completely written (git-dir-watch.ts), extraction goes on. */
export type ExtractReply = { done: FilterStats; statTable: ArrayBuffer } | { failed: ExtractFailure } | { gitDir: true };

const port = parentPort;
if (port === null) throw new Error('extract-worker.ts runs as a worker thread only');
const job = workerData as ExtractJob;
const recorder = new StatRecorder();
const writer = new TreeWriter(job.root, job.umask, recorder);
const filter = new TarFilter(new GitDirWatch(writer, () => port.postMessage({ gitDir: true } satisfies ExtractReply)));
try {
  writer.checkRoot();
  if (new RingReader(job.ring).drain((bytes) => filter.push(bytes))) {
    filter.finish();
    writer.finish();
    const statTable = recorder.take();
    port.postMessage({ done: filter.stats, statTable } satisfies ExtractReply, [statTable]);
  }
} catch (err) {
  try {
    writer.abandon();
  } catch {
    // the failure being reported matters, not a close that failed after it
  }
  port.postMessage({ failed: describe(err) } satisfies ExtractReply);
}

function describe(err: unknown): ExtractFailure {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof UnsafeArchiveError) return { kind: 'unsafe', message: err.detail };
  if (err instanceof SecondaryError) return { kind: 'truncated', message };
  return { kind: 'write', message };
}
