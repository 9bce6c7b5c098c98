/**
 * Where a parallel download cuts its span into chunks.
 *
 * Chunks are handed to the consumer in order, so at the start the consumer can only read the first
 * chunk, at the speed of one connection, while the others fill up beside it. On a link that caps
 * each connection (50 MB/s per stream, like S3 or a CDN) a first wave of equal 8 MiB chunks kept the
 * decompressor waiting ~170 ms for its first 8 MiB while 56 MiB more arrived next to it. With a
 * ramp, chunk j is `firstBytes + j × rampStep` bytes up to `chunkBytes`: the early chunks complete
 * one after another from the first round trip on, so the bytes become readable in order at a rate
 * that grows with each completed chunk, and the later chunks are full-sized (few requests, memory
 * still bounded by concurrency × chunkBytes). `rampStep >= chunkBytes` gives equal chunks.
 */
export interface ChunkPlanOptions {
  /** First byte of the span (inclusive). */
  start: number;
  /** Last byte of the span (inclusive); the span is empty when `end < start`. */
  end: number;
  /** The largest chunk. */
  chunkBytes: number;
  /** Size of chunk 0 (default `chunkBytes`). */
  firstBytes?: number;
  /** Growth per chunk until `chunkBytes` (default `chunkBytes`: no ramp). */
  rampStep?: number;
}

export class ChunkPlan {
  /** Number of chunks. */
  readonly count: number;
  private readonly start: number;
  private readonly end: number;
  private readonly chunkBytes: number;
  /** Offsets (from `start`) of the ramp's chunks, and where the equal chunks begin. */
  private readonly rampOffsets: number[] = [];
  private readonly steadyFrom: number;

  constructor(options: ChunkPlanOptions) {
    const { start, end, chunkBytes } = options;
    const firstBytes = Math.min(options.firstBytes ?? chunkBytes, chunkBytes);
    const rampStep = options.rampStep ?? chunkBytes;
    if (!(chunkBytes >= 1) || !(firstBytes >= 1) || !(rampStep >= 1)) throw new RangeError('chunk sizes must be >= 1');
    this.start = start;
    this.end = end;
    this.chunkBytes = chunkBytes;
    const span = Math.max(0, end - start + 1);
    let offset = 0;
    // At most chunkBytes / rampStep + 1 ramp chunks: bounded by the options, not by the span.
    for (let size = firstBytes; size < chunkBytes && offset < span; size += rampStep) {
      this.rampOffsets.push(offset);
      offset += size;
    }
    this.steadyFrom = offset;
    this.count = span === 0 ? 0 : this.rampOffsets.length + Math.max(0, Math.ceil((span - offset) / chunkBytes));
  }

  /** First and last byte (inclusive, absolute) of chunk `index` (0 ≤ index < count). */
  range(index: number): { first: number; last: number } {
    if (!(index >= 0 && index < this.count)) throw new RangeError(`chunk ${index} of ${this.count}`);
    const ramp = this.rampOffsets.length;
    const offset = index < ramp ? this.rampOffsets[index] : this.steadyFrom + (index - ramp) * this.chunkBytes;
    const nextOffset = index + 1 < ramp ? this.rampOffsets[index + 1] : index + 1 === ramp ? this.steadyFrom : offset + this.chunkBytes;
    return { first: this.start + offset, last: Math.min(this.start + nextOffset - 1, this.end) };
  }
}
