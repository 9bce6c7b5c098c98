/**
 * The write half shared by the local backends: a Writable that hashes and counts bytes while handing
 * them to a backend, and the `create() → commit() | abort()` lifecycle built on it. Backends only say
 * where bytes go ({@link WriteTarget}); the rules every writer must follow (wait for the stream to
 * finish, verify the digest, reject on a destroyed stream or an abort, clean up exactly once) live here
 * so memory and disk cannot drift apart.
 */
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { CacheWriter, CreateOptions, ObjectMeta } from './cache.js';
import { AbortedError, CachewError, DigestMismatchError, abortReason } from '../util/errors.js';

/** What the sink saw once the stream finished. */
export interface WrittenBytes {
  /** Lowercase sha256 hex of every byte written: the object's etag. */
  sha256: string;
  size: number;
}

/** The metadata of a write committed now: etag = sha256, TTL counted from the commit. */
export function committedMeta(key: string, written: WrittenBytes, options: CreateOptions, now: Date): ObjectMeta {
  const meta: ObjectMeta = {
    key,
    size: written.size,
    etag: written.sha256,
    lastModified: now,
    metadata: { ...(options.metadata ?? {}) },
  };
  if (options.ttlMs !== undefined) meta.expiresAt = new Date(now.getTime() + options.ttlMs);
  return meta;
}

/** Where a backend puts the bytes of one write. */
export interface WriteTarget {
  /** Receives every chunk in order; the stream waits for the promise (backpressure). */
  write(chunk: Buffer): Promise<void>;
  /**
   * Publishes the object atomically, re-checking preconditions. Called at most once, after the stream
   * finished and the digest was verified. `assertLive()` throws if the writer was aborted meanwhile:
   * call it immediately before the point of no return.
   */
  publish(written: WrittenBytes, assertLive: () => void): Promise<ObjectMeta>;
  /** Releases everything written. Called at most once, never after publish() resolved; must not throw. */
  discard(): Promise<void>;
}

/** A Writable that hashes and counts while forwarding each chunk to an async consumer. */
export class HashingSink extends Writable {
  private readonly hash = createHash('sha256');
  private bytes = 0;
  private pending: Promise<void> = Promise.resolve();

  constructor(private readonly deliver: (chunk: Buffer) => Promise<void>) {
    super();
  }

  /** Bytes accepted so far. */
  get size(): number {
    return this.bytes;
  }

  /** The sha256 hex of everything written; call once, after 'finish'. */
  digest(): string {
    return this.hash.digest('hex');
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.pending = this.deliver(chunk);
    this.pending.then(
      () => callback(),
      (err: unknown) => callback(toError(err)),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Let an in-flight delivery settle first, so discard() never races a write into the same file.
    const done = (): void => callback(error);
    this.pending.then(done, done);
  }
}

type State = 'open' | 'committing' | 'committed' | 'aborted';

/** Options a {@link StreamingWriter} enforces on behalf of the backend. */
export interface StreamingWriterOptions {
  expectedSha256?: string;
  signal?: AbortSignal;
}

/**
 * A CacheWriter over a {@link WriteTarget}. An abort (call or signal) is honoured until the target's
 * point of no return inside publish(); after commit() resolved, abort() is a no-op.
 */
export class StreamingWriter implements CacheWriter {
  readonly stream: HashingSink;
  private state: State = 'open';
  private abortError?: Error;
  private readonly closed: Promise<void>;
  private discarded?: Promise<void>;
  private committing?: Promise<ObjectMeta>;
  private readonly onAbort?: () => void;

  constructor(
    private readonly target: WriteTarget,
    private readonly options: StreamingWriterOptions = {},
  ) {
    this.stream = new HashingSink((chunk) => target.write(chunk));
    // The writer reports stream errors through commit(); without a listener an error event would
    // crash the process when the caller wrote with .write() instead of pipeline().
    this.stream.on('error', () => undefined);
    this.closed = new Promise((resolve) => this.stream.once('close', () => resolve()));
    const signal = options.signal;
    if (signal) {
      this.onAbort = () => void this.abort(abortReason(signal));
      if (signal.aborted) this.onAbort();
      else signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  commit(): Promise<ObjectMeta> {
    if (this.state === 'aborted') return Promise.reject(this.abortError ?? new AbortedError('write was aborted'));
    if (this.state !== 'open') return Promise.reject(new CachewError('internal', 'commit() called twice'));
    this.state = 'committing';
    this.committing = this.runCommit();
    return this.committing;
  }

  async abort(reason?: unknown): Promise<void> {
    switch (this.state) {
      case 'committed':
        return;
      case 'open':
        this.state = 'aborted';
        this.abortError = toAbortedError(reason);
        this.stream.destroy();
        await this.discardOnce();
        return;
      case 'committing':
        this.abortError ??= toAbortedError(reason);
        this.stream.destroy();
        await this.committing?.catch(() => undefined);
        return;
      case 'aborted':
        await this.discarded;
        return;
    }
  }

  private async runCommit(): Promise<ObjectMeta> {
    try {
      await finished(this.stream);
      this.assertLive();
      const sha256 = this.stream.digest();
      const expected = this.options.expectedSha256;
      if (expected !== undefined && expected !== sha256) throw new DigestMismatchError(expected, sha256);
      const meta = await this.target.publish({ sha256, size: this.stream.size }, () => this.assertLive());
      this.state = 'committed';
      return meta;
    } catch (err) {
      this.state = 'aborted';
      await this.discardOnce();
      throw this.abortError ?? err;
    } finally {
      this.detachSignal();
    }
  }

  private assertLive(): void {
    if (this.abortError) throw this.abortError;
  }

  private discardOnce(): Promise<void> {
    this.detachSignal();
    this.discarded ??= (async () => {
      await this.closed;
      await this.target.discard().catch(() => undefined);
    })();
    return this.discarded;
  }

  private detachSignal(): void {
    if (this.onAbort) this.options.signal?.removeEventListener('abort', this.onAbort);
  }
}

function toAbortedError(reason: unknown): Error {
  if (reason instanceof CachewError) return reason;
  return new AbortedError('write was aborted', { cause: reason });
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
