/**
 * The shared Cache conformance suite: every MUST of src/cache/cache.ts as a test, run against every
 * backend (memory, disk, S3, tiered). A backend test file calls {@link runCacheConformance} once.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import type { Cache, CacheWriter, ObjectMeta, OpenResult } from '../cache.js';
import { blobKey, putBlob, writeStream } from '../write.js';
import {
  AlreadyExistsError,
  DigestMismatchError,
  PreconditionFailedError,
  RangeNotSatisfiableError,
} from '../../util/errors.js';
import { generatedStream, hashStream, pseudoRandomBytes, put, readAll, sha256 } from './data.js';
import type { ManualClock } from '../../util/testing/manual-clock.js';

export { generatedStream, hashStream, pseudoRandomBytes, put, readAll, sha256 };

/** A fresh cache to test, and how to dispose of it (close it, remove its files or bucket). */
export interface ConformanceTarget {
  cache: Cache;
  /** The clock every part of `cache` reads (the TTL rule is tested by advancing it). */
  clock: ManualClock;
  cleanup(): Promise<void>;
}

export interface ConformanceOptions {
  /** false for backends whose TTL can't be tested quickly */
  ttl?: boolean;
}

const TEST_TIMEOUT_MS = 60_000;
const LARGE_TIMEOUT_MS = 170_000;

async function openFull(cache: Cache, key: string): Promise<Buffer | undefined> {
  const result = await cache.open(key);
  if (!result) return undefined;
  assert.equal(result.status, 200);
  return readAll(result.body);
}

async function assertAbsent(cache: Cache, key: string): Promise<void> {
  assert.equal(await cache.stat(key), undefined, `stat(${key}) should miss`);
  const opened = await cache.open(key);
  opened?.body?.destroy();
  assert.equal(opened, undefined, `open(${key}) should miss`);
}

function drain(result: OpenResult | undefined): void {
  result?.body?.destroy();
}

/**
 * Registers `describe(name)` with one test per contract rule. Each test gets a fresh target from
 * `make` and always calls its cleanup.
 */
export function runCacheConformance(
  name: string,
  make: () => Promise<ConformanceTarget>,
  options: ConformanceOptions = {},
): void {
  const it = (title: string, body: (cache: Cache, target: ConformanceTarget) => Promise<void>, timeout = TEST_TIMEOUT_MS): void => {
    void test(title, { timeout }, async () => {
      const target = await make();
      try {
        await body(target.cache, target);
      } finally {
        await target.cleanup();
      }
    });
  };

  void describe(name, () => {
    it('writes, commits and reads back the whole object', async (cache) => {
      const data = pseudoRandomBytes(100_000, 1);
      const before = Date.now();
      const meta = await put(cache, 'a/b/c.bin', data);
      assert.equal(meta.key, 'a/b/c.bin');
      assert.equal(meta.size, data.length);
      assert.equal(meta.etag, sha256(data));
      assert.ok(meta.lastModified.getTime() >= before - 1000 && meta.lastModified.getTime() <= Date.now() + 1000);
      const result = await cache.open('a/b/c.bin');
      assert.ok(result);
      assert.equal(result.status, 200);
      assert.equal(typeof result.source, 'string');
      assert.equal(result.meta.etag, meta.etag);
      assert.ok((await readAll(result.body)).equals(data));
    });

    it('stat returns the committed metadata and misses on unknown keys', async (cache) => {
      const meta = await put(cache, 'stat/one', 'hello');
      const stat = await cache.stat('stat/one');
      assert.ok(stat);
      assert.equal(stat.key, 'stat/one');
      assert.equal(stat.size, 5);
      assert.equal(stat.etag, meta.etag);
      assert.equal(stat.etag, sha256('hello'));
      assert.equal(stat.expiresAt, undefined);
      // Backends may keep their own clock (S3 has one-second precision, a tiered copy is committed a
      // moment later), so lastModified only has to agree roughly.
      assert.ok(Math.abs(stat.lastModified.getTime() - meta.lastModified.getTime()) < 2000);
      await assertAbsent(cache, 'stat/none');
    });

    it('round-trips user metadata through stat, open and list', async (cache) => {
      const metadata = { 'content-type': 'application/zstd', 'x-cachew-commit': 'abc123' };
      await put(cache, 'meta/obj', 'payload', { metadata });
      assert.deepEqual((await cache.stat('meta/obj'))?.metadata, metadata);
      const opened = await cache.open('meta/obj', { headOnly: true });
      assert.deepEqual(opened?.meta.metadata, metadata);
      const listed: ObjectMeta[] = [];
      for await (const m of cache.list('meta/')) listed.push(m);
      assert.equal(listed.length, 1);
      assert.deepEqual(listed[0].metadata, metadata);
    });

    it('stores the empty object', async (cache) => {
      const meta = await put(cache, 'empty', Buffer.alloc(0));
      assert.equal(meta.size, 0);
      assert.equal(meta.etag, sha256(''));
      const data = await openFull(cache, 'empty');
      assert.equal(data?.length, 0);
      await assert.rejects(cache.open('empty', { range: { kind: 'bounded', start: 0, end: 0 } }), RangeNotSatisfiableError);
    });

    it('is not readable before commit, even after the stream ended', async (cache) => {
      const writer = await cache.create('pending/obj');
      // Wait until the backend has taken the bytes in, not for some time to pass.
      await new Promise<void>((resolve, reject) =>
        writer.stream.write(pseudoRandomBytes(10_000, 2), (err?: Error | null) => (err ? reject(err) : resolve())),
      );
      await assertAbsent(cache, 'pending/obj');
      await new Promise<void>((resolve, reject) => writer.stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
      await assertAbsent(cache, 'pending/obj');
      const meta = await writer.commit();
      assert.equal(meta.size, 10_000);
      assert.equal((await cache.stat('pending/obj'))?.etag, meta.etag);
    });

    it('abort leaves nothing visible, is idempotent, and commit then rejects', async (cache) => {
      const writer = await cache.create('aborted/obj');
      writer.stream.write('some bytes');
      await writer.abort(new Error('changed my mind'));
      await writer.abort();
      await assert.rejects(writer.commit());
      await assertAbsent(cache, 'aborted/obj');
      const listed: ObjectMeta[] = [];
      for await (const m of cache.list('aborted/')) listed.push(m);
      assert.equal(listed.length, 0);
    });

    it('a failing source stream is never committed', async (cache) => {
      const writer = await cache.create('broken/source');
      const source = new Readable({
        read() {
          this.push(pseudoRandomBytes(64 * 1024, 3));
          this.destroy(new Error('source failed'));
        },
      });
      await assert.rejects(pipeline(source, writer.stream), /source failed/);
      await assert.rejects(writer.commit());
      await writer.abort();
      await assertAbsent(cache, 'broken/source');
    });

    it('a destroyed writer stream makes commit reject', async (cache) => {
      const writer = await cache.create('broken/stream');
      writer.stream.write('partial');
      writer.stream.destroy(new Error('boom'));
      await assert.rejects(writer.commit());
      await assertAbsent(cache, 'broken/stream');
      // writeStream() on a source that errors publishes nothing and rethrows.
      const failing = Readable.from(
        (async function* () {
          yield Buffer.from('partial');
          // Fail on a later turn of the event loop, after the first chunk has been handed on.
          await new Promise((resolve) => setImmediate(resolve));
          throw new Error('generator failed');
        })(),
      );
      await assert.rejects(writeStream(cache, 'broken/helper', failing), /generator failed/);
      await assertAbsent(cache, 'broken/helper');
    });

    it('an AbortSignal aborts writes and reads', async (cache) => {
      const controller = new AbortController();
      const writer = await cache.create('signal/write', { signal: controller.signal });
      writer.stream.write(pseudoRandomBytes(1000, 4));
      controller.abort();
      await assert.rejects(writer.commit());
      await writer.abort();
      await assertAbsent(cache, 'signal/write');

      const aborted = AbortSignal.abort();
      await assert.rejects(
        (async () => {
          const w = await cache.create('signal/pre', { signal: aborted });
          w.stream.end('x');
          await w.commit();
        })(),
      );
      await assertAbsent(cache, 'signal/pre');

      await put(cache, 'signal/read', pseudoRandomBytes(4 * 1024 * 1024, 5));
      const readController = new AbortController();
      const result = await cache.open('signal/read', { signal: readController.signal });
      assert.ok(result?.body);
      const body = result.body;
      await assert.rejects(
        (async () => {
          for await (const _chunk of body) readController.abort();
        })(),
      );
    });

    it('replaces an existing key; readers see the old or the new bytes, never a mix', async (cache) => {
      const a = pseudoRandomBytes(2 * 1024 * 1024, 6);
      const b = pseudoRandomBytes(2 * 1024 * 1024, 7);
      await put(cache, 'replace/obj', a);
      const before = await cache.open('replace/obj');
      assert.ok(before?.body);
      const iterator = before.body[Symbol.asyncIterator]();
      const first = await iterator.next(); // a reader in the middle of the old version
      const metaB = await put(cache, 'replace/obj', b);
      assert.equal(metaB.etag, sha256(b));
      const chunks = [Buffer.from(first.value as Uint8Array)];
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
        chunks.push(Buffer.from(next.value as Uint8Array));
      }
      assert.equal(sha256(Buffer.concat(chunks)), sha256(a));
      assert.ok((await openFull(cache, 'replace/obj'))?.equals(b));

      // Concurrent replaces and reads: every read is one complete version matching its meta.
      const versions = new Map([sha256(a), sha256(b)].map((h) => [h, true]));
      const writers = Array.from({ length: 6 }, (_, i) => put(cache, 'replace/obj', i % 2 ? a : b));
      const readers = Array.from({ length: 12 }, async () => {
        const result = await cache.open('replace/obj');
        assert.ok(result);
        const got = await hashStream(result.body);
        assert.equal(got.sha256, result.meta.etag);
        assert.ok(versions.has(got.sha256));
      });
      await Promise.all([...writers, ...readers]);
    });

    it('deletes', async (cache) => {
      await put(cache, 'del/obj', 'x');
      assert.equal(await cache.delete('del/obj'), true);
      await assertAbsent(cache, 'del/obj');
      assert.equal(await cache.delete('del/obj'), false);
      assert.equal(await cache.delete('del/never'), false);
    });

    it('lists committed objects by prefix', async (cache) => {
      const keys = ['list/x/1', 'list/x/2', 'list/y/1', 'other/1'];
      for (const key of keys) await put(cache, key, key);
      const collect = async (prefix: string): Promise<string[]> => {
        const out: string[] = [];
        for await (const meta of cache.list(prefix)) {
          assert.equal(meta.etag, sha256(meta.key));
          assert.equal(meta.size, meta.key.length);
          out.push(meta.key);
        }
        return out.sort();
      };
      assert.deepEqual(await collect('list/x/'), ['list/x/1', 'list/x/2']);
      assert.deepEqual(await collect('list/'), ['list/x/1', 'list/x/2', 'list/y/1']);
      assert.deepEqual(await collect(''), [...keys].sort());
      assert.deepEqual(await collect('nothing/'), []);
    });

    if (options.ttl !== false) {
      it('expires objects after their TTL', async (cache, { clock }) => {
        const meta = await put(cache, 'ttl/short', 'short-lived', { ttlMs: 300 });
        await put(cache, 'ttl/forever', 'stays');
        assert.ok(meta.expiresAt);
        assert.equal(meta.expiresAt.getTime() - meta.lastModified.getTime(), 300);
        assert.equal((await cache.stat('ttl/short'))?.expiresAt?.getTime(), meta.expiresAt.getTime());
        await clock.advance(299);
        assert.equal((await openFull(cache, 'ttl/short'))?.toString(), 'short-lived');
        await clock.advance(1);
        await assertAbsent(cache, 'ttl/short');
        const listed: string[] = [];
        for await (const m of cache.list('ttl/')) listed.push(m.key);
        assert.deepEqual(listed, ['ttl/forever']);
        // An expired key is absent for create-if-absent too.
        await put(cache, 'ttl/short', 'again', { ifNoneMatch: '*' });
        assert.equal((await openFull(cache, 'ttl/short'))?.toString(), 'again');
      });
    }

    it('serves byte ranges', async (cache) => {
      const data = pseudoRandomBytes(1000, 8);
      await put(cache, 'range/obj', data);
      const check = async (range: Parameters<Cache['open']>[1], start: number, end: number): Promise<void> => {
        const result = await cache.open('range/obj', range);
        assert.ok(result);
        assert.equal(result.status, 206);
        assert.deepEqual(result.range, { start, end });
        assert.equal(result.meta.size, 1000);
        assert.ok((await readAll(result.body)).equals(data.subarray(start, end + 1)));
      };
      await check({ range: { kind: 'bounded', start: 10, end: 19 } }, 10, 19);
      await check({ range: { kind: 'bounded', start: 0, end: 0 } }, 0, 0);
      await check({ range: { kind: 'bounded', start: 995, end: 5000 } }, 995, 999);
      await check({ range: { kind: 'open', start: 990 } }, 990, 999);
      await check({ range: { kind: 'suffix', length: 5 } }, 995, 999);
      await check({ range: { kind: 'suffix', length: 5000 } }, 0, 999);
      for (const range of [
        { kind: 'open', start: 1000 },
        { kind: 'bounded', start: 2000, end: 3000 },
        { kind: 'suffix', length: 0 },
      ] as const) {
        await assert.rejects(cache.open('range/obj', { range }), (err: unknown) => {
          assert.ok(err instanceof RangeNotSatisfiableError);
          assert.equal(err.size, 1000);
          return true;
        });
      }
    });

    it('evaluates conditionals in RFC 9110 order', async (cache) => {
      const data = pseudoRandomBytes(500, 9);
      const { etag } = await put(cache, 'cond/obj', data);
      const range = { kind: 'bounded', start: 0, end: 9 } as const;
      const other = [{ tag: sha256('other'), weak: false }];
      const same = [{ tag: etag, weak: false }];

      await assert.rejects(cache.open('cond/obj', { ifMatch: other, range }), PreconditionFailedError);
      await assert.rejects(cache.open('cond/obj', { ifMatch: [{ tag: etag, weak: true }] }), PreconditionFailedError);
      await assert.rejects(cache.open('cond/obj', { ifMatch: other, range: { kind: 'open', start: 9999 } }), PreconditionFailedError);
      const matched = await cache.open('cond/obj', { ifMatch: same });
      assert.equal(matched?.status, 200);
      assert.ok((await readAll(matched.body)).equals(data));
      const star = await cache.open('cond/obj', { ifMatch: '*', range });
      assert.equal(star?.status, 206);
      drain(star);

      const notModified = await cache.open('cond/obj', { ifNoneMatch: same, range });
      assert.equal(notModified?.status, 304);
      assert.equal(notModified.body, undefined);
      const weakNotModified = await cache.open('cond/obj', { ifNoneMatch: [{ tag: etag, weak: true }] });
      assert.equal(weakNotModified?.status, 304);
      assert.equal((await cache.open('cond/obj', { ifNoneMatch: '*' }))?.status, 304);
      const modified = await cache.open('cond/obj', { ifNoneMatch: other });
      assert.equal(modified?.status, 200);
      drain(modified);

      const rangeMismatch = await cache.open('cond/obj', { ifRange: other[0], range });
      assert.equal(rangeMismatch?.status, 200);
      assert.equal(rangeMismatch.range, undefined);
      assert.ok((await readAll(rangeMismatch.body)).equals(data));
      const rangeMatch = await cache.open('cond/obj', { ifRange: same[0], range });
      assert.equal(rangeMatch?.status, 206);
      assert.ok((await readAll(rangeMatch.body)).equals(data.subarray(0, 10)));

      const head = await cache.open('cond/obj', { headOnly: true });
      assert.equal(head?.status, 200);
      assert.equal(head.body, undefined);
      assert.equal(head.meta.etag, etag);
      const headRange = await cache.open('cond/obj', { headOnly: true, range });
      assert.equal(headRange?.status, 206);
      assert.deepEqual(headRange.range, { start: 0, end: 9 });
      assert.equal(headRange.body, undefined);
    });

    it('create-if-absent fails on an existing key and keeps the first bytes', async (cache) => {
      await put(cache, 'once/obj', 'first', { ifNoneMatch: '*' });
      await assert.rejects(put(cache, 'once/obj', 'second', { ifNoneMatch: '*' }), AlreadyExistsError);
      assert.equal((await openFull(cache, 'once/obj'))?.toString(), 'first');
      // A writer started before the key existed fails at commit.
      const late = await cache.create('once/race', { ifNoneMatch: '*' });
      await put(cache, 'once/race', 'winner', { ifNoneMatch: '*' });
      late.stream.end('loser');
      await assert.rejects(late.commit(), AlreadyExistsError);
      await late.abort();
      assert.equal((await openFull(cache, 'once/race'))?.toString(), 'winner');
    });

    it('16 concurrent create-if-absent writers: exactly one wins and its bytes are stored', async (cache) => {
      const contents = Array.from({ length: 16 }, (_, i) => pseudoRandomBytes(64 * 1024 + i, 100 + i));
      const writers = await Promise.all(contents.map(() => cache.create('race/obj', { ifNoneMatch: '*' })));
      const outcomes = await commitAll(writers, (i) => [contents[i].subarray(0, 1000), contents[i].subarray(1000)]);
      const winners = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [i] : []));
      assert.equal(winners.length, 1, `exactly one winner, got ${winners.length}`);
      for (const outcome of outcomes) {
        if (outcome.status === 'rejected') assert.ok(outcome.reason instanceof AlreadyExistsError, String(outcome.reason));
      }
      const stored = await openFull(cache, 'race/obj');
      assert.equal(sha256(stored ?? ''), sha256(contents[winners[0]]));
      assert.equal((await cache.stat('race/obj'))?.etag, sha256(contents[winners[0]]));
    });

    it('compare-and-swap replaces only the expected version', async (cache) => {
      const base = await put(cache, 'cas/obj', 'v1');
      const v2 = await put(cache, 'cas/obj', 'v2', { ifMatch: base.etag });
      assert.equal(v2.etag, sha256('v2'));
      await assert.rejects(put(cache, 'cas/obj', 'v3', { ifMatch: base.etag }), PreconditionFailedError);
      assert.equal((await openFull(cache, 'cas/obj'))?.toString(), 'v2');
      await assert.rejects(put(cache, 'cas/absent', 'v1', { ifMatch: base.etag }), PreconditionFailedError);
      await assertAbsent(cache, 'cas/absent');
    });

    it('8 concurrent compare-and-swaps from the same base: exactly one wins', async (cache) => {
      const base = await put(cache, 'cas/race', 'base');
      const contents = Array.from({ length: 8 }, (_, i) => `version-${i}-`.repeat(1000 + i));
      const writers = await Promise.all(contents.map(() => cache.create('cas/race', { ifMatch: base.etag })));
      const outcomes = await commitAll(writers, (i) => [Buffer.from(contents[i])]);
      const winners = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [i] : []));
      assert.equal(winners.length, 1, `exactly one winner, got ${winners.length}`);
      for (const outcome of outcomes) {
        if (outcome.status === 'rejected') assert.ok(outcome.reason instanceof PreconditionFailedError, String(outcome.reason));
      }
      assert.equal((await openFull(cache, 'cas/race'))?.toString(), contents[winners[0]]);
    });

    it('rejects a digest mismatch at commit and publishes nothing', async (cache) => {
      await assert.rejects(put(cache, 'digest/obj', 'actual', { expectedSha256: sha256('expected') }), DigestMismatchError);
      await assertAbsent(cache, 'digest/obj');
      await put(cache, 'digest/kept', 'old');
      await assert.rejects(put(cache, 'digest/kept', 'new', { expectedSha256: sha256('not new') }), DigestMismatchError);
      assert.equal((await openFull(cache, 'digest/kept'))?.toString(), 'old');
      const ok = await put(cache, 'digest/ok', 'right', { expectedSha256: sha256('right') });
      assert.equal(ok.etag, sha256('right'));
    });

    it('putBlob stores by digest and returns the existing blob on a second put', async (cache) => {
      const data = pseudoRandomBytes(20_000, 10);
      const hex = sha256(data);
      const { meta, created } = await putBlob(cache, hex, Readable.from([data]));
      assert.equal(meta.key, blobKey(hex));
      assert.equal(meta.etag, hex);
      const { meta: again, created: createdAgain } = await putBlob(cache, hex, Readable.from([data]));
      assert.equal(again.etag, hex);
      assert.deepEqual([created, createdAgain], [true, false], 'only the first put creates the blob');
      assert.ok((await openFull(cache, blobKey(hex)))?.equals(data));
      await assert.rejects(putBlob(cache, sha256('x'), Readable.from([data])), DigestMismatchError);
      await assertAbsent(cache, blobKey(sha256('x')));
    });

    it(
      'streams a 64 MiB object through, checked by sha256',
      async (cache) => {
        const size = 64 * 1024 * 1024;
        const source = generatedStream(size, 11);
        const meta = await writeStream(cache, 'large/obj', source);
        assert.equal(meta.size, size);
        assert.equal(meta.etag, source.digest());
        const result = await cache.open('large/obj');
        assert.ok(result);
        const read = await hashStream(result.body);
        assert.deepEqual(read, { sha256: meta.etag, size });
        const tail = await cache.open('large/obj', { range: { kind: 'open', start: size - 1000 } });
        assert.equal(tail?.status, 206);
        assert.equal((await readAll(tail.body)).length, 1000);
      },
      LARGE_TIMEOUT_MS,
    );
  });
}

/**
 * Feeds writer i the pieces `piecesOf(i)` and commits, all writers at once (they were all created
 * before any commits, so the precondition is decided at commit); a failed writer is aborted.
 */
function commitAll(writers: CacheWriter[], piecesOf: (i: number) => Buffer[]): Promise<Array<PromiseSettledResult<ObjectMeta>>> {
  return Promise.allSettled(
    writers.map(async (writer, i) => {
      try {
        await pipeline(Readable.from(piecesOf(i)), writer.stream);
        return await writer.commit();
      } catch (err) {
        await writer.abort(err);
        throw err;
      }
    }),
  );
}
