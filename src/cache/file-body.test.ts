import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, truncate, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileRangeBody } from './file-body.js';
import { ReadBufferPool } from './read-buffers.js';
import { isDirectBody, type ByteSink } from '../util/direct-body.js';

const DATA = randomBytes(100_003);

async function withFile(fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cachew-file-body-'));
  try {
    const path = join(dir, 'object');
    await writeFile(path, DATA);
    await fn(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Resolves once `body` emitted 'close' (errors included: the tests look at what the caller got). */
function closed(body: FileRangeBody): Promise<void> {
  return body.closed ? Promise.resolve() : new Promise((resolve) => body.once('close', () => resolve()));
}

function afterTurns(turns: number, fn: () => void): void {
  setImmediate(() => (turns > 1 ? afterTurns(turns - 1, fn) : fn()));
}

/**
 * A sink that, like a slow socket, holds each chunk for a few turns of the event loop, and remembers
 * which buffers it still holds.
 */
function slowSink(): ByteSink & { received: Buffer[]; held: Set<ArrayBufferLike>; heldAtOnce: number } {
  const pending: Array<{ chunk: Buffer; callback: () => void }> = [];
  const sink = {
    received: [] as Buffer[],
    held: new Set<ArrayBufferLike>(),
    heldAtOnce: 0,
    write(chunk: Buffer, callback: (error?: Error | null) => void): boolean {
      pending.push({ chunk, callback });
      sink.held.add(chunk.buffer);
      sink.heldAtOnce = Math.max(sink.heldAtOnce, pending.length);
      // Three turns of the loop: slower than the fake handle's one-turn read, so an early reuse shows.
      afterTurns(3, () => {
        const next = pending.shift();
        if (!next) return;
        sink.received.push(Buffer.from(next.chunk));
        sink.held.delete(next.chunk.buffer);
        next.callback();
      });
      return false;
    },
  };
  return sink;
}

/** A file handle over DATA that fails the test if it is asked to read into a buffer the sink still holds. */
function guardedHandle(sink: { held: Set<ArrayBufferLike> }): FileHandle & { closed: boolean } {
  const fake = {
    closed: false,
    fd: 99,
    async read(buffer: Buffer, offset: number, length: number, position: number) {
      assert.ok(!sink.held.has(buffer.buffer), 'read into a buffer the sink had not released yet');
      await new Promise((resolve) => setImmediate(resolve));
      const bytesRead = DATA.copy(buffer, offset, position, Math.min(DATA.length, position + length));
      return { bytesRead, buffer };
    },
    async close() {
      fake.closed = true;
    },
  };
  return fake as unknown as FileHandle & { closed: boolean };
}

test('as a Readable: exactly the requested range, in chunks, and the file is closed at the end', async () => {
  await withFile(async (path) => {
    const handle = await open(path, 'r');
    const body = new FileRangeBody(handle, 10, 90_009, { chunkBytes: 4096 });
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    assert.deepEqual(Buffer.concat(chunks), DATA.subarray(10, 90_010));
    assert.ok(chunks.length > 20);
    await closed(body);
    assert.equal(handle.fd, -1);
  });
});

test('writeTo: same bytes, at most two buffers in flight, none reused before the sink released it', async () => {
  await withFile(async (path) => {
    const handle = await open(path, 'r');
    const body = new FileRangeBody(handle, 1, DATA.length - 1, { chunkBytes: 8192 });
    assert.ok(isDirectBody(body));
    const sink = slowSink();
    const sent = await body.writeTo(sink);
    assert.equal(sent, DATA.length - 1);
    assert.deepEqual(Buffer.concat(sink.received), DATA.subarray(1));
    assert.ok(sink.heldAtOnce <= 2, `held ${sink.heldAtOnce} chunks at once`);
    await closed(body);
    assert.equal(handle.fd, -1);
    assert.equal(isDirectBody(body), false, 'a consumed body no longer offers writeTo');
  });
  // The same through a handle that checks every read's target buffer.
  const sink = slowSink();
  const handle = guardedHandle(sink);
  const body = new FileRangeBody(handle, 0, DATA.length - 1, { chunkBytes: 4096 });
  assert.equal(await body.writeTo(sink), DATA.length);
  assert.deepEqual(Buffer.concat(sink.received), DATA);
  await closed(body);
  assert.ok(handle.closed);
});

test('writeTo of an empty range sends nothing', async () => {
  await withFile(async (path) => {
    const handle = await open(path, 'r');
    const body = new FileRangeBody(handle, 5, 4, { chunkBytes: 8192 });
    const sink = slowSink();
    assert.equal(await body.writeTo(sink), 0);
    assert.equal(sink.received.length, 0);
  });
});

test('writeTo rejects and closes the file when the signal aborts or the sink fails', async () => {
  await withFile(async (path) => {
    const controller = new AbortController();
    const handle = await open(path, 'r');
    const body = new FileRangeBody(handle, 0, DATA.length - 1, { chunkBytes: 1024, signal: controller.signal });
    let writes = 0;
    const stalled: ByteSink = {
      write() {
        // Never calls back, like a socket torn down mid-write; the abort must still end writeTo.
        if (++writes === 2) controller.abort();
        return false;
      },
    };
    await assert.rejects(body.writeTo(stalled, controller.signal), (err: Error) => /abort|destroyed/i.test(err.message));
    await closed(body);
    assert.equal(handle.fd, -1);

    const second = await open(path, 'r');
    const failing: ByteSink = {
      write(_chunk, callback) {
        setImmediate(() => callback(new Error('socket reset')));
        return false;
      },
    };
    await assert.rejects(new FileRangeBody(second, 0, DATA.length - 1, { chunkBytes: 1024 }).writeTo(failing), /socket reset/);
  });
});

test('a file shorter than the range is an error, not a short body that looks complete', async () => {
  await withFile(async (path) => {
    const handle = await open(path, 'r');
    await truncate(path, 50_000);
    const body = new FileRangeBody(handle, 0, DATA.length - 1, { chunkBytes: 16_384 });
    await assert.rejects(body.writeTo(slowSink()), /ended \d+ bytes early/);

    const again = await open(path, 'r');
    const readable = new FileRangeBody(again, 0, DATA.length - 1, { chunkBytes: 16_384 });
    await assert.rejects(async () => {
      for await (const chunk of readable) void chunk;
    }, /ended \d+ bytes early/);
  });
});

test('writeTo takes its buffers from the pool and gives them back after a clean finish, never after a failure', async () => {
  const pool = new ReadBufferPool(4096, 8);
  // Two downloads in a row: the second reads into the first one's buffers, and the bytes are right.
  const first = slowSink();
  assert.equal(await new FileRangeBody(guardedHandle(first), 0, DATA.length - 1, { chunkBytes: 4096, buffers: pool }).writeTo(first), DATA.length);
  assert.equal(pool.idleCount, 2);
  const pooled = [pool.take(4096), pool.take(4096)];
  pooled.forEach((buffer) => pool.give(buffer));
  const second = slowSink();
  const handle = guardedHandle(second);
  const seen = new Set<ArrayBufferLike>();
  const read = handle.read.bind(handle);
  handle.read = (async (buffer: Buffer, ...rest: [number, number, number]) => {
    seen.add(buffer.buffer);
    return read(buffer, ...rest);
  }) as typeof handle.read;
  assert.equal(await new FileRangeBody(handle, 0, DATA.length - 1, { chunkBytes: 4096, buffers: pool }).writeTo(second), DATA.length);
  assert.deepEqual(Buffer.concat(second.received), DATA);
  assert.ok(pooled.every((buffer) => seen.has(buffer.buffer)), 'the second download reused both pooled buffers');
  assert.equal(pool.idleCount, 2);

  // A sink that fails mid-download may still hold a buffer: the pool gets none back.
  const failing: ByteSink = {
    write(_chunk, callback) {
      setImmediate(() => callback(new Error('socket reset')));
      return false;
    },
  };
  const before = pool.idleCount;
  await assert.rejects(new FileRangeBody(guardedHandle(slowSink()), 0, DATA.length - 1, { chunkBytes: 4096, buffers: pool }).writeTo(failing), /socket reset/);
  assert.equal(pool.idleCount, before - 2, 'the failed download kept the two buffers it took');
  assert.equal(pool.lentCount, 0, 'and freed their share of the budget');
});

test('writeTo reads short ranges and a range\'s last part into pooled buffers too (no fresh memory per request)', async () => {
  const pool = new ReadBufferPool(4096, 8);
  // 1000 bytes (shorter than one buffer), then 4096 + 1000 (a whole buffer and a short last part).
  for (const [start, end] of [
    [0, 999],
    [100, 100 + 4096 + 999],
  ] as const) {
    const sink = slowSink();
    const handle = guardedHandle(sink);
    const sizes: number[] = [];
    const read = handle.read.bind(handle);
    handle.read = (async (buffer: Buffer, ...rest: [number, number, number]) => {
      sizes.push(buffer.buffer.byteLength);
      return read(buffer, ...rest);
    }) as typeof handle.read;
    assert.equal(await new FileRangeBody(handle, start, end, { chunkBytes: 4096, buffers: pool }).writeTo(sink), end - start + 1);
    assert.deepEqual(Buffer.concat(sink.received), DATA.subarray(start, end + 1));
    assert.ok(sizes.every((size) => size === 4096), `read into buffers of ${sizes.join(', ')} bytes`);
    assert.equal(pool.lentCount, 0);
  }
  assert.equal(pool.idleCount, 2, 'the same two buffers served both ranges');
});

test('the read-buffer pool keeps only buffers of its size, at most maxIdle of them', () => {
  const pool = new ReadBufferPool(1024, 2, { budgetBytes: 4096 });
  const buffers = [pool.take(1024), pool.take(1024), pool.take(1024)];
  pool.give(pool.take(100)); // another size: not kept
  buffers.forEach((buffer) => pool.give(buffer));
  pool.give(buffers[0]); // given twice: kept once
  assert.equal(pool.idleCount, 2);
  assert.equal(pool.take(1024).length, 1024);
  assert.equal(pool.idleCount, 1);
});

test('the read-buffer pool lends at most its budget in buffers of its size, smaller ones beyond it', () => {
  const pool = new ReadBufferPool(1024, 2, { budgetBytes: 3072, overflowBytes: 256 });
  const full = [pool.take(1024), pool.take(1024), pool.take(1024)];
  assert.deepEqual(full.map((b) => b.length), [1024, 1024, 1024]);
  assert.equal(pool.lentCount, 3);
  const beyond = pool.take(1024);
  assert.equal(beyond.length, 256, 'over the budget: a smaller buffer');
  pool.give(beyond); // not one of the pool's: changes nothing
  assert.equal(pool.lentCount, 3);
  // A dropped buffer (a failed download may still hold it) frees its share without being reused.
  pool.drop(full[0]);
  const again = pool.take(1024);
  assert.equal(again.length, 1024);
  assert.notEqual(again, full[0]);
  // Given back: kept for reuse, at most maxIdle of them.
  [full[1], full[2], again].forEach((buffer) => pool.give(buffer));
  assert.equal(pool.idleCount, 2, 'at most maxIdle kept');
  assert.equal(pool.lentCount, 0);
  assert.ok([full[1], full[2], again].includes(pool.take(1024)));
});
