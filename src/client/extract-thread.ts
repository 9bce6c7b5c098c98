/**
 * The main thread's side of the extraction thread (extract-worker.ts): puts the decompressed archive
 * into a shared ring (byte-ring.ts) and reports the thread's outcome as the client's own error
 * classes. The ring is the memory bound: RING_SLOTS × SLOT_BYTES wait for the thread at most.
 */
import { once } from 'node:events';
import { umask } from 'node:process';
import type { Worker } from 'node:worker_threads';
import { siblingModule, startWorker } from '../util/worker-thread.js';
import { createRing, RingWriter } from './byte-ring.js';
import { SecondaryError, UnsafeArchiveError, WriteFailedError } from './errors.js';
import type { ExtractFailure, ExtractJob, ExtractReply } from './extract-worker.js';
import { StatTable } from './stat-table.js';
import { mark } from './trace.js';
import type { FilterStats } from './tar-filter.js';

/** The thread's outcome: the filter's counts and the stat data of what it wrote. */
export interface ExtractOutcome {
  stats: FilterStats;
  statTable: StatTable;
  /** The index with the work tree's stat data, when the tree is exactly the index's (index-patcher.ts). */
  patchedIndex?: Buffer;
}

/**
 * 32 MiB. Since format v10 the layer packs lie among the work tree's frames (frame-order.ts), and the
 * ring is what lets the decompressor run through a pack while this thread still creates the small
 * files decoded before it: extracting the bench repository's clone with hashing (medians of 5),
 * 0.84 s with 48 slots, 0.96 s with 8. But every slot is fresh memory that the decompressor first
 * touches on the main thread, at ~11.5 µs per 4 KiB page on the test VM (48 MiB: ~12,300 page
 * faults, ~0.14 s of CPU). Restores of the bench repository on 2026-12-06, interleaved, medians
 * (wall; client + server CPU): loopback, 10 rounds, 48 slots 1.346 s; 2.24 s, 32 slots 1.322 s;
 * 2.18 s, 16 slots 1.337 s; 2.15 s; through the 50 MB/s link, 12 rounds, 48 slots 1.807 s; 2.66 s,
 * 32 slots 1.763 s; 2.59 s, 16 slots 1.780 s; 2.54 s. The wall differences are within the VM's
 * noise, the CPU ones are not; extraction alone from a local file, where the decompressor is never
 * waiting for the network, still prefers more (8 rounds: 48 slots 1.74 s, 16 slots 1.84 s).
 */
const RING_SLOTS = 32;
const SLOT_BYTES = 1024 * 1024;

/** One running extraction into one directory. */
export class ExtractThread {
  private readonly worker: Worker;
  private readonly ring: RingWriter;
  /** Settles with the thread's outcome: its stats, or its (first) failure. */
  private readonly outcome: Promise<ExtractOutcome>;
  private readonly exited: Promise<unknown>;
  private settle?: { resolve: (outcome: ExtractOutcome) => void; reject: (err: Error) => void };
  private failure?: Error;
  private readonly gitDirFlag = new Int32Array(new SharedArrayBuffer(4));
  private onGitDir?: () => void;

  /**
   * Starts the thread writing into `root` (an existing, empty directory this process owns).
   * `onGitDir` runs once the archive's `.git` is completely written (git-dir-watch.ts).
   */
  constructor(root: string, onGitDir?: () => void) {
    const memory = createRing(RING_SLOTS, SLOT_BYTES);
    this.outcome = new Promise<ExtractOutcome>((resolve, reject) => (this.settle = { resolve, reject }));
    this.outcome.catch((err: Error) => (this.failure = err)); // also observed by end()
    const interrupted = this.outcome.then(() => Promise.reject(new SecondaryError('extraction finished early')));
    interrupted.catch(() => undefined);
    this.ring = new RingWriter(memory, interrupted);
    this.onGitDir = onGitDir;
    const job: ExtractJob = { root, umask: currentUmask(), ring: memory, gitDirFlag: this.gitDirFlag.buffer as SharedArrayBuffer };
    this.worker = startWorker(siblingModule(import.meta.url, 'extract-worker'), { workerData: job });
    this.exited = once(this.worker, 'exit').catch(() => undefined);
    this.worker.on('message', (reply: ExtractReply) => {
      if ('gitDir' in reply) this.reportGitDir();
      else if ('done' in reply) {
        const patchedIndex = reply.patchedIndex && Buffer.from(reply.patchedIndex);
        this.settle?.resolve({ stats: reply.done, statTable: new StatTable(reply.statTable), patchedIndex });
      }
      else this.settle?.reject(rebuild(reply.failed));
    });
    this.worker.on('error', (err) => this.settle?.reject(new WriteFailedError(`extraction thread failed: ${err.message}`)));
    this.worker.on('exit', () => this.settle?.reject(new SecondaryError('extraction thread stopped')));
  }

  /** Hands `chunk` to the thread (copied); resolves when it is in the ring. Rejects with the thread's failure. */
  async write(chunk: Uint8Array): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    this.pollGitDir();
    await this.ring.write(chunk);
  }

  /** Where the next bytes go, to be written in place then `commit`ted (see RingWriter.room). */
  async room(): Promise<Uint8Array> {
    if (this.failure !== undefined) throw this.failure;
    this.pollGitDir();
    return this.ring.room();
  }

  commit(count: number): void {
    this.ring.commit(count);
  }

  /**
   * The thread's message that `.git` is complete waits for this thread's event loop, which a fast
   * source keeps busy: on loopback it arrived only with the last byte (docs/restore.md). The flag in
   * shared memory is seen at the next write to the ring, so the work waiting for `.git` (the ref
   * fetch, the layout) overlaps the rest of the extraction.
   */
  private pollGitDir(): void {
    if (this.onGitDir !== undefined && Atomics.load(this.gitDirFlag, 0) === 1) this.reportGitDir();
  }

  private reportGitDir(): void {
    const report = this.onGitDir;
    this.onGitDir = undefined; // once
    if (report === undefined) return;
    mark('git-dir-reported');
    report();
  }

  /** After the last chunk: resolves with the outcome once every entry is on disk. */
  async end(): Promise<ExtractOutcome> {
    this.ring.end();
    return this.outcome;
  }

  /** Stops the thread, whatever it was doing, and waits until it no longer runs. */
  async stop(reason?: Error): Promise<void> {
    if (reason !== undefined) this.settle?.reject(reason);
    this.ring.stop();
    await this.worker.terminate();
    await this.exited;
  }
}

function rebuild(failure: ExtractFailure): Error {
  if (failure.kind === 'unsafe') return new UnsafeArchiveError(failure.message);
  if (failure.kind === 'truncated') return new SecondaryError(failure.message);
  return new WriteFailedError(failure.message);
}

/** The process umask (the no-argument form is deprecated in documentation only; the main thread may call it). */
function currentUmask(): number {
  return umask();
}
