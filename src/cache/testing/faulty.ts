/**
 * FaultyCache: a Cache wrapper that injects failures, for testing how callers (the tiered cache, the
 * snapshot store) behave when a backend breaks. Faults are read on every call, so a test can switch
 * them on and off while the cache is in use.
 */
import { Transform, Writable, pipeline, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Cache, CacheWriter, CreateOptions, ObjectMeta, OpenOptions, OpenResult } from '../cache.js';

/** Which operations fail, and how. */
export interface Faults {
  /** stat() rejects with this error. */
  stat?: Error;
  /** open() rejects with this error. */
  open?: Error;
  /** create() rejects with this error. */
  create?: Error;
  /** delete() rejects with this error. */
  delete?: Error;
  /** list() throws this error on the first iteration. */
  list?: Error;
  /** Read bodies deliver this many bytes, then fail with `readError`. */
  readBreakAfter?: number;
  readError?: Error;
  /** Writer streams accept this many bytes, then fail with `writeError`. */
  writeBreakAfter?: number;
  writeError?: Error;
}

/** Counts of calls that reached the inner cache, for asserting what a caller did. */
export interface FaultyCalls {
  stat: number;
  open: number;
  create: number;
  delete: number;
  list: number;
}

/** Wraps `inner`; `faults` is public and mutable. */
export class FaultyCache implements Cache {
  readonly name: string;
  readonly calls: FaultyCalls = { stat: 0, open: 0, create: 0, delete: 0, list: 0 };

  constructor(
    readonly inner: Cache,
    public faults: Faults = {},
    name?: string,
  ) {
    this.name = name ?? inner.name;
  }

  async stat(key: string, signal?: AbortSignal): Promise<ObjectMeta | undefined> {
    this.calls.stat++;
    if (this.faults.stat) throw this.faults.stat;
    return this.inner.stat(key, signal);
  }

  async open(key: string, options?: OpenOptions): Promise<OpenResult | undefined> {
    this.calls.open++;
    if (this.faults.open) throw this.faults.open;
    const result = await this.inner.open(key, options);
    const limit = this.faults.readBreakAfter;
    if (!result?.body || limit === undefined) return result;
    return { ...result, source: this.name, body: breakAfter(result.body, limit, this.faults.readError ?? new Error('injected read failure')) };
  }

  async create(key: string, options?: CreateOptions): Promise<CacheWriter> {
    this.calls.create++;
    if (this.faults.create) throw this.faults.create;
    const writer = await this.inner.create(key, options);
    const limit = this.faults.writeBreakAfter;
    if (limit === undefined) return writer;
    return new BreakingWriter(writer, limit, this.faults.writeError ?? new Error('injected write failure'));
  }

  async delete(key: string, signal?: AbortSignal): Promise<boolean> {
    this.calls.delete++;
    if (this.faults.delete) throw this.faults.delete;
    return this.inner.delete(key, signal);
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectMeta> {
    this.calls.list++;
    if (this.faults.list) throw this.faults.list;
    yield* this.inner.list(prefix, signal);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Passes `limit` bytes of `body` through, then fails with `error`. */
function breakAfter(body: Readable, limit: number, error: Error): Readable {
  let seen = 0;
  const breaker = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (seen + chunk.length <= limit) {
        seen += chunk.length;
        callback(null, chunk);
        return;
      }
      const keep = chunk.subarray(0, limit - seen);
      seen = limit;
      if (keep.length > 0) this.push(keep);
      callback(error);
    },
  });
  // pipeline() destroys the source when the breaker fails or the caller destroys the breaker.
  return pipeline(body, breaker, () => undefined);
}

/** A writer whose stream fails after `limit` bytes, taking the inner write down with it. */
class BreakingWriter implements CacheWriter {
  readonly stream: Writable;

  constructor(
    private readonly inner: CacheWriter,
    limit: number,
    error: Error,
  ) {
    let seen = 0;
    this.stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        if (seen + chunk.length > limit) {
          inner.stream.destroy(error);
          callback(error);
          return;
        }
        seen += chunk.length;
        if (inner.stream.write(chunk)) callback();
        else inner.stream.once('drain', () => callback());
      },
      final(callback) {
        inner.stream.end();
        callback();
      },
    });
    this.stream.on('error', () => undefined);
  }

  async commit(): Promise<ObjectMeta> {
    try {
      await finished(this.stream);
    } catch (err) {
      await this.inner.abort(err);
      throw err;
    }
    return this.inner.commit();
  }

  async abort(reason?: unknown): Promise<void> {
    this.stream.destroy();
    await this.inner.abort(reason);
  }
}
