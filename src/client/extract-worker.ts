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
import { IndexPatcher } from './index-patcher.js';
import { StatRecorder } from './stat-table.js';
import { TarFilter, type FilterStats } from './tar-filter.js';
import { TreeWriter } from './tree-writer.js';
import { mark } from './trace.js';

/** What the main thread gives the thread at start. */
export interface ExtractJob {
  root: string;
  umask: number;
  ring: RingMemory;
  /** Set to 1 (Atomics) once `.git` is complete: read by the main thread between its writes to the ring. */
  gitDirFlag: SharedArrayBuffer;
}

/** How a failure crosses the thread boundary: the main thread rebuilds the error class from `kind`. */
export interface ExtractFailure {
  kind: 'unsafe' | 'truncated' | 'write';
  message: string;
}

/** `gitDir`: the archive's `.git` is completely written (git-dir-watch.ts), extraction goes on. */
export type ExtractReply = { done: FilterStats; statTable: ArrayBuffer; patchedIndex?: ArrayBuffer } | { failed: ExtractFailure } | { gitDir: true };

const port = parentPort;
if (port === null) throw new Error('extract-worker.ts runs as a worker thread only');
const job = workerData as ExtractJob;
const recorder = new StatRecorder();
const patcher = new IndexPatcher(recorder);
const writer = new TreeWriter(job.root, job.umask, patcher);
patcher.setNext(writer);
const filter = new TarFilter(new GitDirWatch(patcher, () => {
  mark('git-dir-complete');
  Atomics.store(new Int32Array(job.gitDirFlag), 0, 1);
  port.postMessage({ gitDir: true } satisfies ExtractReply);
}));
try {
  writer.checkRoot();
  if (new RingReader(job.ring).drain((bytes) => filter.push(bytes))) {
    mark('thread-drained');
    filter.finish();
    writer.finish();
    const statTable = recorder.take();
    const patchedIndex = patcher.result();
    const transfer = patchedIndex === undefined ? [statTable] : [statTable, patchedIndex];
    port.postMessage({ done: filter.stats, statTable, patchedIndex } satisfies ExtractReply, transfer);
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
