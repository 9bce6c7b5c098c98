/**
 * Bodies that can write themselves into a sink (an HTTP response) without the generic stream
 * machinery. A cache hands out ordinary Readables, so any consumer can read them; the HTTP layer asks
 * {@link isDirectBody} and, when the body can, lets it drive the socket itself.
 *
 * Why: serving a snapshot is the hot path. Profiles of cachewd streaming from the disk tier showed a
 * fifth of the CPU in the garbage collector (a fresh 4 MiB buffer per read, in a process whose heap
 * holds the AWS SDK, makes every external-memory-triggered collection expensive) plus the stream
 * layers' per-chunk callbacks. A file body that owns its two read buffers, and reuses each one as soon
 * as the socket has taken its bytes, allocates nothing per chunk.
 */
import type { Readable } from 'node:stream';
import { abortReason } from './errors.js';

/** Where a direct body writes: `ServerResponse` fits (the callback fires once the bytes left our buffer). */
export interface ByteSink {
  write(chunk: Buffer, callback: (error?: Error | null) => void): boolean;
}

/** A Readable that can also write its remaining bytes straight into a sink. */
export interface DirectBody {
  /**
   * Writes every remaining byte into `sink` and resolves with the count, then releases the body's
   * resources (the stream ends). MUST be called at most once and instead of reading the stream.
   * Rejects when `signal` aborts or the sink fails; the body is destroyed either way.
   */
  writeTo(sink: ByteSink, signal?: AbortSignal): Promise<number>;
}

/** Whether `body` offers {@link DirectBody.writeTo} and has not been read from yet. */
export function isDirectBody(body: Readable): body is Readable & DirectBody {
  return typeof (body as Partial<DirectBody>).writeTo === 'function' && body.readableFlowing === null && !body.destroyed;
}

/**
 * Resolves when `promise` does, or rejects as soon as `signal` aborts (a sink torn down with a write
 * in flight may never call back; the caller must not hang on it).
 */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** Writes `chunk` and resolves once the sink has taken it (its callback fired). */
export function writeAndWait(sink: ByteSink, chunk: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    sink.write(chunk, (err) => (err ? reject(err) : resolve()));
  });
}
