/**
 * Reusable read buffers for the disk tier's direct bodies (file-body.ts).
 *
 * Each download used to allocate its two 4 MiB buffers afresh. Their memory lives outside V8's heap,
 * and V8 answers growth of that external memory with full (mark-compact) collections: serving 1.2 GB
 * as 24 ranges of 50 MB, 4 at a time, cachewd ran 8 of them, and `perf` put about 15% of its CPU in
 * V8's marking and sweeping, against 0.5% for a 20-line server sending the same bytes. Buffers that
 * go back to a pool when a download has finished cleanly are never garbage.
 *
 * Memory stays bounded however many downloads run:
 * - at most `budgetBytes` of buffers of the pool's size exist at once, lent out or idle (default
 *   `maxIdle` of them). A download that asks for one beyond that gets a fresh buffer of
 *   `overflowBytes` instead: it reads in smaller pieces, and the many downloads share the disk and
 *   the network anyway. With 8 concurrent downloads of the bench snapshot, two 4 MiB buffers each
 *   made cachewd's RSS grow by 64 MiB (docs/benchmarks.md, memory section);
 * - only buffers of the pool's size are kept, at most `maxIdle` of them (the rest are left to the
 *   collector): 8 × 4 MiB by default.
 */
export interface ReadBufferPoolOptions {
  /** Bytes of pool-sized buffers that may exist at once (default: maxIdle × bufferBytes). */
  budgetBytes?: number;
  /** Size of the buffers handed out beyond the budget (default: bufferBytes / 4). */
  overflowBytes?: number;
}

export class ReadBufferPool {
  private readonly idle: Buffer[] = [];
  /** Pool-sized buffers handed out and not given back (or dropped) yet. */
  private readonly lent = new Set<Buffer>();
  private readonly budgetBytes: number;
  private readonly overflowBytes: number;

  constructor(
    readonly bufferBytes: number,
    private readonly maxIdle: number,
    options: ReadBufferPoolOptions = {},
  ) {
    this.budgetBytes = options.budgetBytes ?? maxIdle * bufferBytes;
    this.overflowBytes = Math.max(1, Math.min(bufferBytes, options.overflowBytes ?? Math.floor(bufferBytes / 4)));
  }

  /**
   * A buffer for a read of `bytes`: a pooled one when `bytes` is the pool's size and the budget
   * allows, a smaller fresh one (overflowBytes) beyond the budget, else a fresh one of `bytes`.
   * Callers read `Math.min(buffer.length, wanted)` into it.
   */
  take(bytes: number): Buffer {
    if (bytes !== this.bufferBytes) return Buffer.allocUnsafeSlow(bytes);
    let buffer = this.idle.pop();
    if (buffer === undefined) {
      if ((this.lent.size + 1) * this.bufferBytes > this.budgetBytes) return Buffer.allocUnsafeSlow(this.overflowBytes);
      buffer = Buffer.allocUnsafeSlow(bytes);
    }
    this.lent.add(buffer);
    return buffer;
  }

  /**
   * Hands `buffer` back for reuse. The caller guarantees nothing refers to its bytes any more (no
   * write still in flight): a buffer whose fate is unknown must be dropped instead.
   */
  give(buffer: Buffer): void {
    if (!this.lent.delete(buffer)) return; // not ours, or given back already
    if (this.idle.length < this.maxIdle) this.idle.push(buffer);
  }

  /** Forgets `buffer` (left to the collector, e.g. a failed write may still hold it): frees its share of the budget. */
  drop(buffer: Buffer): void {
    this.lent.delete(buffer);
  }

  /** Buffers waiting for reuse. */
  get idleCount(): number {
    return this.idle.length;
  }

  /** Pool-sized buffers handed out right now. */
  get lentCount(): number {
    return this.lent.size;
  }
}
