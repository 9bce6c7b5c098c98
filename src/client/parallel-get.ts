/**
 * In-order parallel download of a byte span of one immutable snapshot.
 *
 * The span is cut into chunks (chunk-plan.ts: equal ones, or a ramp up to the chunk size); up to `concurrency` chunks download at once (each with its
 * own resumable Range request) and are handed to the consumer strictly in order, the oldest one piece
 * by piece as it arrives (the consumer never waits for a whole chunk while the bytes it needs next
 * are already here), the others buffered until their turn. Chunk `i + N` is not started before chunk
 * `i` was handed over, so at most N chunks are buffered: memory stays at ≈ concurrency × chunkSize
 * however large the snapshot is. If the server answers a Range with the whole body, the remaining
 * span is streamed from one full response instead.
 */
import { setMaxListeners } from 'node:events';
import { abortReason } from '../util/errors.js';
import { ChunkPlan } from './chunk-plan.js';
import { RangeIgnoredError } from './errors.js';
import { rangePieces, wholePieces, type FetchContext, type FetchStats } from './range-fetch.js';
import { mark } from './trace.js';

export interface ParallelGetOptions {
  /** First byte of the span (inclusive). */
  start: number;
  /** Last byte of the span (inclusive); defaults to the end of the snapshot. */
  end?: number;
  /** The largest chunk (see chunk-plan.ts). */
  chunkSize: number;
  /** Size of the first chunk, growing by `rampStep` per chunk up to `chunkSize` (default: all equal). */
  firstChunkSize?: number;
  rampStep?: number;
  /** The most chunks downloading at once. */
  concurrency: number;
  /**
   * Chunks downloading at once at the start (default: `concurrency`); widened to `concurrency` for
   * good once the consumer starves (see Starvation). A fast source never needs more.
   */
  initialConcurrency?: number;
  /**
   * While fewer than `concurrency` chunks download at once (a fast source: see Starvation), a chunk
   * stops reading once this many of its bytes wait for the consumer, and reads on when the consumer
   * has taken half of them (default DEFAULT_AHEAD_BYTES). Once widened, chunks read freely: on a link
   * that caps each connection, the chunks ahead are what keeps the consumer fed.
   */
  aheadBytes?: number;
  /** Milliseconds, monotonic (default performance.now); tests drive it. */
  now?: () => number;
}

export interface ParallelGetStats extends FetchStats {
  /** Bytes downloaded but not yet handed to the consumer, right now. */
  bufferedBytes: number;
  /** High-water mark of `bufferedBytes`: the memory bound the tests assert. */
  maxBufferedBytes: number;
  /** True once the server ignored a Range and the download fell back to one full response. */
  fellBack: boolean;
}

/** One chunk's download: pieces arrive in `pieces` until `done` settles. */
interface Task {
  pieces: Buffer[];
  /** Bytes in `pieces` not yet taken by the consumer. */
  queued: number;
  done: Promise<void>;
  finished: boolean;
  /** Wakes the consumer waiting for this task's next piece. */
  wake?: () => void;
  /** Wakes this task's download, holding while it is ahead of the consumer with enough queued. */
  resume?: () => void;
}

/**
 * Bytes a chunk may have waiting for the consumer before its download holds (while the download runs
 * narrow, see `aheadBytes`). Why: every buffered byte sits in a receive slab (slab-pool.ts), and a slab
 * first touched costs page faults: 11.5 µs per 4 KiB page on the test VM, ~3 ms per MiB. On loopback
 * the consumer (decompression and extraction) is the slower side, so the chunks ahead used to fill up
 * whole: 8 to 70 fresh 1 MiB slabs per restore of the bench repository. Held, the rest of a chunk
 * waits in the kernel's socket buffers (no fault): 8 to 11 fresh slabs (docs/restore.md, "Receiving").
 */
export const DEFAULT_AHEAD_BYTES = 1024 * 1024;

/** Downloads `[start, end]` with N concurrent Range requests and yields the bytes in order. */
export class ParallelGet {
  readonly stats: ParallelGetStats;
  private readonly controller = new AbortController();
  private readonly taskContext: FetchContext;
  private readonly tasks = new Map<number, Task>();
  private readonly end: number;
  private readonly plan: ChunkPlan;
  private readonly concurrency: number;
  /** Chunks allowed to download at once now: from initialConcurrency up to concurrency. */
  private width: number;
  private readonly starvation: Starvation;
  private readonly aheadBytes: number;
  private readonly count: number;
  private nextToSchedule = 0;
  private rangesIgnored = false;

  constructor(
    private readonly context: FetchContext,
    options: ParallelGetOptions,
  ) {
    if (!(options.chunkSize >= 1) || !(options.concurrency >= 1)) throw new RangeError('chunkSize and concurrency must be >= 1');
    this.end = options.end ?? context.source.size - 1;
    this.plan = new ChunkPlan({ start: options.start, end: this.end, chunkBytes: options.chunkSize, firstBytes: options.firstChunkSize, rampStep: options.rampStep });
    this.concurrency = Math.floor(options.concurrency);
    this.width = Math.max(1, Math.min(this.concurrency, Math.floor(options.initialConcurrency ?? this.concurrency)));
    this.starvation = new Starvation(options.now ?? (() => performance.now()));
    this.aheadBytes = Math.max(1, options.aheadBytes ?? DEFAULT_AHEAD_BYTES);
    this.count = this.plan.count;
    this.stats = context.stats
      ? Object.assign(context.stats, { bufferedBytes: 0, maxBufferedBytes: 0, fellBack: false })
      : { requests: 0, retries: 0, bufferedBytes: 0, maxBufferedBytes: 0, fellBack: false };
    const signal = context.signal ? AbortSignal.any([context.signal, this.controller.signal]) : this.controller.signal;
    setMaxListeners(Math.max(50, this.concurrency * 4), this.controller.signal, signal);
    this.taskContext = { ...context, signal, stats: this.stats };
    // A held download must see the end of everything, or it would wait for good.
    signal.addEventListener('abort', () => this.resumeAll(), { once: true });
  }

  /** Starts the first window of requests now, before the consumer asks (e.g. while chunk 0 streams). */
  prefetch(): void {
    this.schedule(0);
  }

  /** Cancels outstanding requests; buffered chunks are dropped. */
  cancel(): void {
    this.controller.abort();
  }

  /**
   * Resolves once every request this getter started has finished, failed or been cancelled (so a
   * caller that stopped early knows nothing is still running on its behalf).
   */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.tasks.values()].map((task) => task.done));
  }

  /** Yields the span's bytes in order. Stops every request when iteration ends, early or not. */
  async *pieces(): AsyncGenerator<Buffer, void, undefined> {
    try {
      for (let index = 0; index < this.count; index++) {
        this.schedule(index);
        const task = this.tasks.get(index);
        // Bytes of this chunk already handed over: a fallback resumes after them.
        let taken = 0;
        let ignored = task === undefined;
        while (task !== undefined) {
          const piece = task.pieces.shift();
          if (piece !== undefined) {
            task.queued -= piece.length;
            this.stats.bufferedBytes -= piece.length;
            if (task.resume !== undefined && task.queued <= this.aheadBytes / 2) this.resumeTask(task);
            taken += piece.length;
            yield piece;
            continue;
          }
          if (task.finished) {
            try {
              await task.done;
            } catch (err) {
              if (!(err instanceof RangeIgnoredError)) throw err;
              ignored = true;
            }
            break;
          }
          const waitStarted = this.starvation.now();
          await new Promise<void>((resolve) => (task.wake = resolve));
          task.wake = undefined;
          if (this.width < this.concurrency && this.starvation.waited(waitStarted)) {
            this.width = this.concurrency;
            mark('ranges-widened');
            this.resumeAll();
            this.schedule(index);
          }
        }
        this.tasks.delete(index);
        if (ignored) {
          yield* this.fallBack(index, taken);
          return;
        }
      }
    } finally {
      this.controller.abort();
    }
  }

  private resumeTask(task: Task): void {
    const resume = task.resume;
    task.resume = undefined;
    resume?.();
  }

  private resumeAll(): void {
    for (const task of this.tasks.values()) this.resumeTask(task);
  }

  /** Streams everything from byte `taken` of chunk `index` on from one full response (the server ignores ranges). */
  private async *fallBack(index: number, taken: number): AsyncGenerator<Buffer, void, undefined> {
    this.stats.fellBack = true;
    this.controller.abort();
    for (const task of this.tasks.values()) {
      // Unconsumed pieces are dropped with their tasks.
      this.stats.bufferedBytes -= task.queued;
      task.queued = 0;
      task.pieces.length = 0;
    }
    this.tasks.clear();
    const from = this.plan.range(index).first + taken;
    let remaining = this.end - from + 1;
    for await (const piece of wholePieces(this.context, from)) {
      const take = Math.min(remaining, piece.length);
      remaining -= take;
      yield take === piece.length ? piece : piece.subarray(0, take);
      if (remaining === 0) return;
    }
  }

  /** Ensures chunks `index .. index + width - 1` are requested. */
  private schedule(index: number): void {
    this.starvation.start();
    const limit = Math.min(this.count, index + this.width);
    while (!this.rangesIgnored && this.nextToSchedule < limit) {
      if (this.controller.signal.aborted) return;
      const chunk = this.nextToSchedule++;
      const { first, last } = this.plan.range(chunk);
      const task: Task = { pieces: [], queued: 0, done: Promise.resolve(), finished: false };
      task.done = this.download(first, last, task).finally(() => {
        task.finished = true;
        task.wake?.();
      });
      // The consumer awaits tasks in order; a later task may fail first, so mark it handled now.
      task.done.catch(() => undefined);
      this.tasks.set(chunk, task);
    }
  }

  private async download(first: number, last: number, task: Task): Promise<void> {
    try {
      for await (const piece of rangePieces(this.taskContext, first, last)) {
        task.pieces.push(piece);
        task.queued += piece.length;
        this.stats.bufferedBytes += piece.length;
        this.stats.maxBufferedBytes = Math.max(this.stats.maxBufferedBytes, this.stats.bufferedBytes);
        task.wake?.();
        // Held until the consumer takes from this chunk (or the download widens or ends); the socket
        // pauses once the response's own queue fills (raw-http.ts, PAUSE_AT).
        if (task.queued >= this.aheadBytes && this.width < this.concurrency && !this.taskContext.signal?.aborted) {
          await new Promise<void>((resolve) => (task.resume = resolve));
        }
      }
    } catch (err) {
      if (err instanceof RangeIgnoredError) this.rangesIgnored = true;
      if (this.taskContext.signal?.aborted && !(err instanceof RangeIgnoredError)) throw abortReason(this.taskContext.signal);
      throw err;
    }
  }
}

/** Starving: at least this long spent waiting for the next bytes in order... */
const STARVED_MS = 40;
/**
 * ...and at least this share of the time since the parallel download started. 0.5 let a link capped
 * at 50 MB/s per connection run on the initial ranges for most of the download (traced: widened in
 * 1 of 3 restores, or 350–1000 ms in); at 0.2 it widens 120–200 ms in, while on loopback 5 of 6
 * restores never widened (docs/restore.md, "How many ranges").
 */
const STARVED_SHARE = 0.2;

/**
 * Whether the consumer starves: it waits for the chunk it needs next for much of the time, because
 * the chunks downloading at once deliver less than it consumes. Then, and only then, more
 * connections help (a link capping each connection, like S3 or a CDN stream). On a fast source they
 * do not: each extra slow-read stream costs the server and the client CPU, on loopback 2 ranges beat
 * 8 (docs/restore.md, "How many ranges"). The thresholds keep the brief waits a fast source also
 * causes (the main thread busy spawning git, the server briefly descheduled: up to ~25 ms per chunk
 * measured on loopback) from counting, while a capped link starves for most of its first chunk.
 */
export class Starvation {
  private startedAt?: number;
  private starvedMs = 0;

  constructor(readonly now: () => number) {}

  /** The parallel download began (idempotent). */
  start(): void {
    this.startedAt ??= this.now();
  }

  /** The consumer waited from `since` until now; true when it is starving. */
  waited(since: number): boolean {
    const now = this.now();
    this.starvedMs += now - since;
    const elapsed = now - (this.startedAt ?? since);
    return this.starvedMs >= STARVED_MS && this.starvedMs >= STARVED_SHARE * elapsed;
  }
}
