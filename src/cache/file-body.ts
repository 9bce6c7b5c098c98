/**
 * The body of a disk-tier read: an inclusive byte range of an open file. As a Readable it reads
 * `chunkBytes` at a time into fresh buffers (a consumer may keep any chunk it was given); as a
 * {@link DirectBody} it writes into a sink with two buffers that it reuses, reading the next chunk
 * while the previous one is being sent, so serving allocates nothing per chunk (see util/direct-body.ts).
 *
 * The body owns the file handle and closes it when it ends or is destroyed.
 */
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { AbortedError, CachewError } from '../util/errors.js';
import { untilAborted, writeAndWait, type ByteSink, type DirectBody } from '../util/direct-body.js';
import type { ReadBufferPool } from './read-buffers.js';

export interface FileBodyOptions {
  /** Bytes per read(2); also the size of each of the two reused buffers of writeTo(). */
  chunkBytes: number;
  /** Where writeTo() takes its two buffers from and returns them after a clean finish. */
  buffers?: ReadBufferPool;
  /** Aborting destroys the body. */
  signal?: AbortSignal;
}

/** Bytes `[start, end]` (inclusive) of `handle`; an empty range when `end < start`. */
export class FileRangeBody extends Readable implements DirectBody {
  private position: number;
  private readonly last: number;
  private readonly chunkBytes: number;
  private readonly pool?: ReadBufferPool;
  private claimed = false;
  /** A read the handle is still busy with (close must wait for it). */
  private inFlight: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly handle: FileHandle,
    start: number,
    end: number,
    options: FileBodyOptions,
  ) {
    super({ highWaterMark: options.chunkBytes, signal: options.signal });
    this.position = start;
    this.last = end;
    this.chunkBytes = options.chunkBytes;
    this.pool = options.buffers;
  }

  override _read(): void {
    this.claimed = true;
    const length = Math.min(this.chunkBytes, this.last + 1 - this.position);
    if (length <= 0) {
      this.push(null);
      return;
    }
    const buffer = Buffer.allocUnsafe(length);
    const reading = this.readExactly(buffer, length);
    this.inFlight = reading.catch(() => undefined);
    reading.then(
      (chunk) => this.push(chunk),
      (err: Error) => this.destroy(err),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Closing while a read is pending would make that read fail (or hit a reused descriptor).
    void this.inFlight
      .then(() => this.handle.close())
      .then(
        () => callback(error),
        (closeError: Error) => callback(error ?? closeError),
      );
  }

  async writeTo(sink: ByteSink, callerSignal?: AbortSignal): Promise<number> {
    if (this.claimed) throw new CachewError('internal', 'file body was already read');
    this.claimed = true;
    // The stream's own signal destroys it with an error on abort; the rejection below reports it.
    this.on('error', () => undefined);
    // Stop when the caller aborts or anyone destroys the body (e.g. through its constructor signal).
    const destroyed = new AbortController();
    const onClose = (): void => destroyed.abort(new AbortedError('file body destroyed'));
    this.once('close', onClose);
    const signal = callerSignal ? AbortSignal.any([callerSignal, destroyed.signal]) : destroyed.signal;
    const total = Math.max(0, this.last + 1 - this.position);
    let sent = 0;
    // Each buffer is sized at its first use; later turns never need more than that.
    const buffers: Buffer[] = [];
    try {
      // writes[i]: the send of buffers[i] that must finish before that buffer is read into again.
      const writes: Array<Promise<void>> = [Promise.resolve(), Promise.resolve()];
      for (let turn = 0; sent < total; turn ^= 1) {
        await untilAborted(writes[turn], signal);
        buffers[turn] ??= this.takeBuffer(total - sent);
        const length = Math.min(buffers[turn].length, total - sent);
        const reading = this.readExactly(buffers[turn], length);
        this.inFlight = reading.catch(() => undefined);
        const chunk = await untilAborted(reading, signal);
        const writing = writeAndWait(sink, chunk);
        writing.catch(() => undefined); // observed on this buffer's next turn or below
        writes[turn] = writing;
        sent += length;
      }
      await untilAborted(Promise.all(writes), signal);
    } catch (err) {
      // A write may still hold a buffer: none goes back to the pool (each frees its share of the budget).
      for (const buffer of buffers) this.pool?.drop(buffer);
      this.destroy();
      throw err;
    } finally {
      this.off('close', onClose);
    }
    // Every write has called back: the sink no longer refers to these bytes.
    for (const buffer of buffers) this.pool?.give(buffer);
    // Ended as a stream too, so 'end'/'close' listeners (and the handle's close) run as usual.
    this.push(null);
    this.resume();
    return sent;
  }

  /**
   * A buffer for reading the next (at most) `remaining` bytes. From the pool a buffer of the pool's
   * size even for less: a range's last read, or a short range (the client's first chunks are 1–7 MiB),
   * used to get a fresh buffer of its exact size, whose memory outside V8's heap made it run full
   * collections, ~2 per restore of the bench repository (`--trace-gc`: "GC in old space requested").
   */
  private takeBuffer(remaining: number): Buffer {
    if (this.pool !== undefined && this.pool.bufferBytes === this.chunkBytes) return this.pool.take(this.chunkBytes);
    return Buffer.allocUnsafeSlow(Math.min(this.chunkBytes, remaining));
  }

  /** Reads `length` bytes at the current position into `buffer` and advances; a short file is an error. */
  private async readExactly(buffer: Buffer, length: number): Promise<Buffer> {
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await this.handle.read(buffer, filled, length - filled, this.position + filled);
      if (bytesRead === 0) throw new CachewError('internal', `cache file ended ${length - filled} bytes early`);
      filled += bytesRead;
    }
    this.position += length;
    return length === buffer.length ? buffer : buffer.subarray(0, length);
  }
}
