/**
 * The writer of TieredCache.create(): one stream fanned out to a writer per tier. The authoritative
 * tier's commit decides (create-if-absent, compare-and-swap, digest); only after it succeeded are the
 * local copies committed, and a local copy that could not be written is deleted so that no tier keeps
 * bytes that differ from the authoritative ones.
 */
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Cache, CacheWriter, ObjectMeta } from './cache.js';
import { AbortedError, CachewError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

/** Resolves on 'drain'; rejects when the stream errors or closes first (so a destroyed stream never hangs us). */
export function waitDrain(stream: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      stream.off('drain', onDrain);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    const onDrain = (): void => {
      cleanup();
      resolve();
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onClose = (): void => {
      cleanup();
      reject(new AbortedError('stream closed before it drained'));
    };
    stream.on('drain', onDrain);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}

/** Writes `chunk` and waits for backpressure to clear; rejects if the stream is gone. */
export async function writeChunk(stream: Writable, chunk: Buffer): Promise<void> {
  if (stream.destroyed || stream.writableEnded) throw new AbortedError('stream is no longer writable');
  if (!stream.write(chunk)) await waitDrain(stream);
}

/** A local tier's share of a write. `writer` is undefined once that tier failed and was dropped. */
export interface LocalShare {
  tier: Cache;
  writer?: CacheWriter;
}

/** Hooks into the owning TieredCache. */
export interface TieredWriterHost {
  /** Runs `fn` while holding the key's local-mutation lock and bumps the key's version after it. */
  mutateLocals(key: string, fn: () => Promise<void>): Promise<void>;
  logger: Logger;
}

type State = 'open' | 'committing' | 'done';

export class TieredWriter implements CacheWriter {
  readonly stream: Writable;
  private state: State = 'open';

  constructor(
    private readonly host: TieredWriterHost,
    private readonly key: string,
    private readonly authoritative: CacheWriter,
    private readonly locals: LocalShare[],
  ) {
    this.stream = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        this.fanOut(chunk).then(() => callback(), callback);
      },
      final: (callback) => {
        authoritative.stream.end();
        for (const share of locals) share.writer?.stream.end();
        callback();
      },
      destroy: (error, callback) => {
        // A destroy before the stream finished means the write failed: take every tier down with it.
        if (!this.stream.writableFinished) {
          if (error) authoritative.stream.destroy(error);
          else authoritative.stream.destroy();
          for (const share of locals) share.writer?.stream.destroy();
        }
        callback(error);
      },
    });
    // Errors are reported through commit().
    this.stream.on('error', () => undefined);
    // If the authoritative write dies on its own (its AbortSignal fired, its backend failed), a caller
    // that has not ended our stream yet must not wait forever in commit().
    authoritative.stream.once('close', () => {
      if (!authoritative.stream.writableFinished && !this.stream.destroyed) {
        this.stream.destroy(authoritative.stream.errored ?? new AbortedError('authoritative write was aborted'));
      }
    });
  }

  async commit(): Promise<ObjectMeta> {
    if (this.state !== 'open') throw new CachewError('internal', 'commit() after commit() or abort()');
    this.state = 'committing';
    let meta: ObjectMeta;
    try {
      await finished(this.stream);
      meta = await this.authoritative.commit();
    } catch (err) {
      this.state = 'done';
      await this.authoritative.abort(err);
      await this.abortLocals(err);
      throw err;
    }
    this.state = 'done';
    await this.host.mutateLocals(this.key, async () => {
      for (const share of this.locals) await this.commitLocal(share, meta);
    });
    return meta;
  }

  async abort(reason?: unknown): Promise<void> {
    if (this.state === 'done') return;
    this.state = 'done';
    this.stream.destroy();
    await this.authoritative.abort(reason);
    await this.abortLocals(reason);
  }

  private async fanOut(chunk: Buffer): Promise<void> {
    const local = this.locals.map(async (share) => {
      if (!share.writer) return;
      try {
        await writeChunk(share.writer.stream, chunk);
      } catch (err) {
        // A local tier failing must not fail the write; that tier's copy is deleted at commit instead.
        this.host.logger.warn({ err, key: this.key, tier: share.tier.name }, 'local tier write failed');
        await this.dropLocal(share, err);
      }
    });
    await Promise.all([writeChunk(this.authoritative.stream, chunk), ...local]);
  }

  /** Commits one local copy of the authoritative `meta`, or removes whatever that tier holds. */
  private async commitLocal(share: LocalShare, meta: ObjectMeta): Promise<void> {
    const { tier, writer } = share;
    if (writer) {
      try {
        const local = await writer.commit();
        if (local.etag === meta.etag) return;
        this.host.logger.error({ key: this.key, tier: tier.name }, 'local copy differs from the authoritative bytes');
      } catch (err) {
        this.host.logger.warn({ err, key: this.key, tier: tier.name }, 'local tier commit failed');
        await writer.abort(err);
      }
    }
    try {
      await tier.delete(this.key);
    } catch (err) {
      this.host.logger.error({ err, key: this.key, tier: tier.name }, 'could not remove a stale local copy');
    }
  }

  private async dropLocal(share: LocalShare, reason: unknown): Promise<void> {
    const writer = share.writer;
    share.writer = undefined;
    await writer?.abort(reason);
  }

  private async abortLocals(reason: unknown): Promise<void> {
    await Promise.all(this.locals.map((share) => this.dropLocal(share, reason)));
  }
}
