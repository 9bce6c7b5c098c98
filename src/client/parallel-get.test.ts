import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { startSnapshotServer, type Fault, type RequestInfo, type SnapshotServer } from '../../test/harness/snapshot-server.js';
import { immutableSnapshotPath } from '../protocol/routes.js';
import { SnapshotGoneError } from './errors.js';
import { HttpClient } from './http.js';
import { ParallelGet, Starvation } from './parallel-get.js';
import type { FetchContext } from './range-fetch.js';

const COMMIT = 'a'.repeat(40);
const SIZE = 300_000 + 123; // deliberately not a multiple of any chunk size below

let root: string;
let file: string;
let data: Buffer;

before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-pget-'));
  file = path.join(root, 'blob');
  data = randomBytes(SIZE);
  await fs.writeFile(file, data);
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

async function withGetter(
  fault: ((request: RequestInfo) => Fault | undefined) | undefined,
  body: (context: FetchContext, server: SnapshotServer) => Promise<void>,
): Promise<void> {
  const server = await startSnapshotServer({ archive: file, commit: COMMIT, fault });
  const http = new HttpClient({ idleTimeoutMs: 500 });
  try {
    const url = new URL(immutableSnapshotPath('127.0.0.1:9', 'org/repo', COMMIT), server.url);
    await body({ http, source: { url, etag: server.digest, size: server.size }, backoffMs: 5, stats: { requests: 0, retries: 0 } }, server);
  } finally {
    http.close();
    await server.close();
  }
}

async function collect(getter: ParallelGet, onPiece?: (piece: Buffer) => Promise<void>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const piece of getter.pieces()) {
    parts.push(piece);
    await onPiece?.(piece);
  }
  return Buffer.concat(parts);
}

void describe('ParallelGet', () => {
  for (const [chunkSize, concurrency, start] of [
    [4096, 1, 0],
    [10_000, 4, 0],
    [65_536, 8, 1234],
    [1_000_000, 3, 0],
  ] as const) {
    void it(`delivers bytes ${start}.. in order (chunk ${chunkSize}, concurrency ${concurrency})`, async () => {
      await withGetter(undefined, async (context, server) => {
        const getter = new ParallelGet(context, { start, chunkSize, concurrency });
        const got = await collect(getter);
        assert.ok(got.equals(data.subarray(start)));
        // One request per chunk, plus one per retry (a loaded machine can trip the 500 ms idle timeout).
        assert.equal(server.requests.length, Math.ceil((SIZE - start) / chunkSize) + getter.stats.retries);
        assert.equal(getter.stats.fellBack, false);
      });
    });
  }

  void it('delivers bytes in order through a ramp of growing chunks, one request each', async () => {
    await withGetter(undefined, async (context, server) => {
      const getter = new ParallelGet(context, { start: 0, chunkSize: 65_536, firstChunkSize: 16_384, rampStep: 8192, concurrency: 4 });
      assert.ok((await collect(getter)).equals(data));
      assert.equal(getter.stats.retries, 0);
      const requested = server.requests
        .map((request) => /^bytes=(\d+)-(\d+)$/.exec(request.range ?? ''))
        .map((match) => (match ? [Number(match[1]), Number(match[2])] : undefined))
        .filter((range) => range !== undefined)
        .sort((a, b) => a[0] - b[0]);
      const lengths = requested.map(([first, last]) => last - first + 1);
      // 16, 24, 32, … KiB up to 64 KiB, then 64 KiB chunks, the last one short.
      assert.deepEqual(lengths, [16_384, 24_576, 32_768, 40_960, 49_152, 57_344, 65_536, SIZE - 286_720]);
    });
  });

  void it('keeps at most `concurrency` chunks buffered and requested ahead of a slow consumer', async () => {
    await withGetter(undefined, async (context, server) => {
      const chunkSize = 8192;
      const concurrency = 3;
      const getter = new ParallelGet(context, { start: 0, chunkSize, concurrency });
      let consumed = 0;
      let maxAhead = 0;
      const got = await collect(getter, async (piece) => {
        consumed += piece.length;
        await sleep(1);
        // Requests issued so far minus chunks fully handed over: never more than the window.
        maxAhead = Math.max(maxAhead, server.requests.length - Math.floor(consumed / chunkSize));
      });
      assert.ok(got.equals(data));
      assert.ok(getter.stats.maxBufferedBytes <= concurrency * chunkSize, `buffered ${getter.stats.maxBufferedBytes}`);
      assert.ok(getter.stats.maxBufferedBytes >= chunkSize, 'the bound is not vacuous');
      assert.ok(maxAhead <= concurrency + 1, `requested ${maxAhead} chunks ahead`);
    });
  });

  void it('resumes dropped and stalled chunks', async () => {
    const fault = (request: RequestInfo): Fault | undefined => (request.index % 4 === 1 ? 'drop' : request.index === 6 ? 'stall' : undefined);
    await withGetter(fault, async (context) => {
      const getter = new ParallelGet(context, { start: 0, chunkSize: 20_000, concurrency: 4 });
      assert.ok((await collect(getter)).equals(data));
      assert.ok(getter.stats.retries >= 3, `retries ${getter.stats.retries}`);
    });
  });

  void it('falls back to one full response when the server ignores Range', async () => {
    const fault = (request: RequestInfo): Fault | undefined => (request.index >= 2 ? 'ignore-range' : undefined);
    await withGetter(fault, async (context) => {
      const getter = new ParallelGet(context, { start: 100, chunkSize: 16_384, concurrency: 2 });
      assert.ok((await collect(getter)).equals(data.subarray(100)));
      assert.equal(getter.stats.fellBack, true);
    });
  });

  void it('reports a vanished snapshot as SnapshotGoneError without retrying', async () => {
    await withGetter((request) => (request.index === 3 ? 'not-found' : undefined), async (context, server) => {
      const getter = new ParallelGet(context, { start: 0, chunkSize: 16_384, concurrency: 2 });
      await assert.rejects(collect(getter), SnapshotGoneError);
      assert.ok(server.requests.length <= 6);
    });
  });

  void it('stops outstanding requests when the consumer stops early', async () => {
    await withGetter((request) => (request.index === 1 ? 'stall' : undefined), async (context) => {
      const getter = new ParallelGet(context, { start: 0, chunkSize: 16_384, concurrency: 4 });
      getter.prefetch();
      for await (const piece of getter.pieces()) {
        assert.ok(piece.length > 0);
        break;
      }
      // A stalled request that was not cancelled would only settle after timing out and retrying.
      await getter.settled();
      assert.equal(getter.stats.requests, 4);
      assert.equal(getter.stats.retries, 0);
    });
  });

  void it('holds a chunk ahead of the consumer at aheadBytes while narrow, and reads it on when its turn comes', async () => {
    // Chunks much larger than any read (a receive slab is 1 MiB), so a chunk that did not hold would
    // show more than aheadBytes + one piece waiting when the consumer reaches it.
    const chunkSize = 2 * 1024 * 1024;
    const big = randomBytes(3 * chunkSize + 777);
    const bigFile = path.join(root, 'big');
    await fs.writeFile(bigFile, big);
    const server = await startSnapshotServer({ archive: bigFile, commit: COMMIT });
    const http = new HttpClient({ idleTimeoutMs: 5000 });
    try {
      const url = new URL(immutableSnapshotPath('127.0.0.1:9', 'org/repo', COMMIT), server.url);
      const context: FetchContext = { http, source: { url, etag: server.digest, size: server.size }, backoffMs: 5, stats: { requests: 0, retries: 0 } };
      const aheadBytes = 64 * 1024;
      // A clock that stands still: the download never widens, so the hold applies throughout.
      const getter = new ParallelGet(context, { start: 0, chunkSize, concurrency: 4, initialConcurrency: 2, aheadBytes, now: () => 0 });
      let consumed = 0;
      let maxPiece = 0;
      const waitingAtTurns: number[] = [];
      const got = await collect(getter, async (piece) => {
        consumed += piece.length;
        maxPiece = Math.max(maxPiece, piece.length);
        // The consumer is slow: the next chunk has all the time it needs to arrive, or to hold.
        await sleep(1);
        if (consumed % chunkSize === 0) waitingAtTurns.push(getter.stats.bufferedBytes);
      });
      assert.ok(got.equals(big));
      assert.equal(waitingAtTurns.length, 3);
      for (const waiting of waitingAtTurns) assert.ok(waiting <= aheadBytes + maxPiece, `${waiting} bytes of the next chunk were waiting (piece ≤ ${maxPiece})`);
      assert.ok(aheadBytes + maxPiece < chunkSize, 'the bound is below a whole chunk');
    } finally {
      http.close();
      await server.close();
    }
  });

  void it('delivers every byte however often chunks hold, and a cancel releases held chunks', async () => {
    await withGetter(undefined, async (context) => {
      // Holding after every piece: the most hand-overs between consumer and downloads.
      const getter = new ParallelGet(context, { start: 0, chunkSize: 50_000, concurrency: 4, initialConcurrency: 3, aheadBytes: 1, now: () => 0 });
      assert.ok((await collect(getter, () => sleep(0))).equals(data));
    });
    await withGetter(undefined, async (context) => {
      const getter = new ParallelGet(context, { start: 0, chunkSize: 50_000, concurrency: 4, initialConcurrency: 3, aheadBytes: 1, now: () => 0 });
      getter.prefetch();
      for await (const piece of getter.pieces()) {
        assert.ok(piece.length > 0);
        break; // the chunks ahead are held now, or soon: stopping must still end them all
      }
      await getter.settled();
    });
  });

  /** Downloads with `initialConcurrency` 2 of 6 under `clock`; the most chunks requested ahead of the consumer. */
  async function widthUnder(clock: () => number): Promise<number> {
    let maxAhead = 0;
    await withGetter(undefined, async (context) => {
      const chunkSize = 8192;
      const getter = new ParallelGet(context, { start: 0, chunkSize, concurrency: 6, initialConcurrency: 2, now: clock });
      let consumed = 0;
      const got = await collect(getter, async (piece) => {
        consumed += piece.length;
        // Requests are counted when issued (synchronously), so this is exact; retries are not new chunks.
        const chunksIssued = getter.stats.requests - getter.stats.retries;
        maxAhead = Math.max(maxAhead, chunksIssued - Math.floor(consumed / chunkSize));
      });
      assert.ok(got.equals(data));
    });
    return maxAhead;
  }

  void it('keeps to initialConcurrency while the consumer never starves', async () => {
    // A clock that stands still: no wait ever lasts, as with a source faster than the consumer.
    assert.ok((await widthUnder(() => 0)) <= 2);
  });

  void it('widens to full concurrency once the consumer starves', async () => {
    // Every reading 100 ms later: each wait for the next bytes counts as long.
    let time = 0;
    const ahead = await widthUnder(() => (time += 100));
    assert.ok(ahead >= 5, `requested ${ahead} chunks ahead`);
  });
});

void describe('Starvation', () => {
  function starvation(): { watch: Starvation; at: (ms: number) => void } {
    let time = 0;
    const watch = new Starvation(() => time);
    return { watch, at: (ms) => (time = ms) };
  }

  void it('counts a long share of waiting as starving', () => {
    const { watch, at } = starvation();
    watch.start();
    at(10);
    const since = watch.now();
    at(60);
    assert.equal(watch.waited(since), true, '50 of 60 ms waiting');
  });

  void it('counts a quarter of the time waiting, once long enough, as starving', () => {
    const { watch, at } = starvation();
    watch.start();
    at(150);
    const since = watch.now();
    at(200);
    assert.equal(watch.waited(since), true, '50 of 200 ms waiting');
  });

  void it('ignores waits too short in total, however large their share', () => {
    const { watch, at } = starvation();
    watch.start();
    at(30);
    assert.equal(watch.waited(0), false, '30 ms: under the threshold');
  });

  void it('ignores brief waits spread over a long download', () => {
    const { watch, at } = starvation();
    watch.start();
    // 10 ms of every 100 ms waiting: a fast source's hiccups, not a slow link.
    for (let t = 0; t < 2000; t += 100) {
      at(t + 90);
      const since = watch.now();
      at(t + 100);
      assert.equal(watch.waited(since), false, `at ${t + 100} ms`);
    }
  });
});
