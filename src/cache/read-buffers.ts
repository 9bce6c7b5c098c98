/**
 * Reusable read buffers for the disk tier's direct bodies (file-body.ts).
 *
 * Each download used to allocate its two 4 MiB buffers afresh. Their memory lives outside V8's heap,
 * and V8 answers growth of that external memory with full (mark-compact) collections: serving 1.2 GB
 * as 24 ranges of 50 MB, 4 at a time, cachewd ran 8 of them, and `perf` put about 15% of its CPU in
 * V8's marking and sweeping, against 0.5% for a 20-line server sending the same bytes. Buffers that
 * go back to a pool when a download has finished cleanly are never garbage.
 *
 * Only buffers of the pool's size are kept, at most `maxIdle` of them (the rest are left to the
 * collector), so idle memory stays bounded: 8 × 4 MiB by default.
 */
export class ReadBufferPool {
  private readonly idle: Buffer[] = [];

  constructor(
    readonly bufferBytes: number,
    private readonly maxIdle: number,
  ) {}

  /** A buffer of `bytes` bytes: pooled when it is the pool's size, else a fresh one. */
  take(bytes: number): Buffer {
    if (bytes === this.bufferBytes) {
      const pooled = this.idle.pop();
      if (pooled !== undefined) return pooled;
    }
    return Buffer.allocUnsafeSlow(bytes);
  }

  /**
   * Hands `buffer` back for reuse. The caller guarantees nothing refers to its bytes any more (no
   * write still in flight): a buffer whose fate is unknown must not be given back.
   */
  give(buffer: Buffer): void {
    if (buffer.length === this.bufferBytes && this.idle.length < this.maxIdle && !this.idle.includes(buffer)) this.idle.push(buffer);
  }

  /** Buffers waiting for reuse. */
  get idleCount(): number {
    return this.idle.length;
  }
}
