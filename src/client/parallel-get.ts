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
  concurrency: number;
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
}

/** Downloads `[start, end]` with N concurrent Range requests and yields the bytes in order. */
export class ParallelGet {
  readonly stats: ParallelGetStats;
  private readonly controller = new AbortController();
  private readonly taskContext: FetchContext;
  private readonly tasks = new Map<number, Task>();
  private readonly end: number;
  private readonly plan: ChunkPlan;
  private readonly concurrency: number;
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
    this.count = this.plan.count;
    this.stats = context.stats
      ? Object.assign(context.stats, { bufferedBytes: 0, maxBufferedBytes: 0, fellBack: false })
      : { requests: 0, retries: 0, bufferedBytes: 0, maxBufferedBytes: 0, fellBack: false };
    const signal = context.signal ? AbortSignal.any([context.signal, this.controller.signal]) : this.controller.signal;
    setMaxListeners(Math.max(50, this.concurrency * 4), this.controller.signal, signal);
    this.taskContext = { ...context, signal, stats: this.stats };
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
          await new Promise<void>((resolve) => (task.wake = resolve));
          task.wake = undefined;
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

  /** Ensures chunks `index .. index + concurrency - 1` are requested. */
  private schedule(index: number): void {
    const limit = Math.min(this.count, index + this.concurrency);
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
      }
    } catch (err) {
      if (err instanceof RangeIgnoredError) this.rangesIgnored = true;
      if (this.taskContext.signal?.aborted && !(err instanceof RangeIgnoredError)) throw abortReason(this.taskContext.signal);
      throw err;
    }
  }
}
