import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import {
  DeleteObjectsCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { s3ClientFor, useMotoBucket, type MotoServer } from '../../test/harness/moto.js';
import { S3Cache, type S3CacheOptions } from './s3.js';
import { runCacheConformance } from './testing/conformance.js';
import { generatedStream, hashStream, pseudoRandomBytes, readAll, sha256 } from './testing/data.js';
import { putBlob, writeStream } from './write.js';
import { AlreadyExistsError, BadRequestError, DigestMismatchError, UnavailableError } from '../util/errors.js';
import { ManualClock } from '../util/testing/manual-clock.js';

const MiB = 1024 * 1024;
const BUCKET = 'cachew-test';
let moto: MotoServer;
let client: S3Client;
let counter = 0;

useMotoBucket(BUCKET, (m, c) => {
  moto = m;
  client = c;
});

/** Everything under `prefix/` (including temp objects), as full object keys. */
async function objectsUnder(prefix: string): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}/`, ContinuationToken: token }));
    for (const entry of page.Contents ?? []) if (entry.Key) out.push(entry.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

async function uploadsUnder(prefix: string): Promise<string[]> {
  const page = await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: `${prefix}/` }));
  return (page.Uploads ?? []).map((upload) => upload.Key ?? '');
}

async function removeAll(prefix: string): Promise<void> {
  const keys = await objectsUnder(prefix);
  for (let i = 0; i < keys.length; i += 500) {
    const Objects = keys.slice(i, i + 500).map((Key) => ({ Key }));
    await client.send(new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects } }));
  }
}

function makeCache(prefix: string, options: Partial<S3CacheOptions> = {}, s3 = client): S3Cache {
  return new S3Cache({ client: s3, bucket: BUCKET, prefix, partSizeBytes: 5 * MiB, copyPartSizeBytes: 5 * MiB, ...options });
}

runCacheConformance('s3', async () => {
  const prefix = `conformance-${counter++}`;
  const clock = new ManualClock();
  const cache = makeCache(prefix, { clock });
  return {
    cache,
    clock,
    async cleanup() {
      await cache.close();
      await removeAll(prefix);
    },
  };
});

interface Recorded {
  command: string;
  range?: string;
  status: number;
  contentLength: number;
  requestLength: number;
}

/**
 * A client whose requests are recorded (command, Range header, response length, concurrency);
 * `settled()` resolves once no request is in flight.
 */
function recordingClient(): { s3: S3Client; log: Recorded[]; peak(): number; settled(): Promise<void> } {
  const s3 = s3ClientFor(moto);
  const log: Recorded[] = [];
  let inFlight = 0;
  let peak = 0;
  let waiters: Array<() => void> = [];
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers: Record<string, string> };
      // Recorded when sent, so requests cancelled by an abort count too.
      const entry: Recorded = {
        command: context.commandName ?? '',
        range: request.headers.range ?? request.headers.Range,
        status: 0,
        contentLength: 0,
        requestLength: Number(request.headers['content-length'] ?? request.headers['Content-Length'] ?? 0),
      };
      log.push(entry);
      inFlight++;
      peak = Math.max(peak, inFlight);
      try {
        const output = await next(args);
        const response = output.response as { statusCode: number; headers: Record<string, string> };
        entry.status = response.statusCode;
        entry.contentLength = Number(response.headers['content-length'] ?? 0);
        return output;
      } finally {
        inFlight--;
        if (inFlight === 0) {
          for (const wake of waiters) wake();
          waiters = [];
        }
      }
    },
    { step: 'finalizeRequest', name: 'testRecorder' },
  );
  const settled = (): Promise<void> => (inFlight === 0 ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve)));
  return { s3, log, peak: () => peak, settled };
}

void describe('s3 specifics', () => {
  void test('stores human-readable keys with the sha256 as user metadata and skips temp objects', { timeout: 60_000 }, async () => {
    const prefix = `layout-${counter++}`;
    const cache = makeCache(`/${prefix}/`);
    try {
      const meta = await writeStream(cache, 'records/github.com/org/repo/abc.json', [Buffer.from('{"x":1}')], {
        metadata: { 'Content-Type': 'application/json', note: 'ünïcode' },
      });
      const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}/records/github.com/org/repo/abc.json` }));
      assert.equal(head.Metadata?.sha256, meta.etag);
      assert.equal(head.Metadata?.sha256, sha256('{"x":1}'));
      assert.deepEqual((await cache.stat('records/github.com/org/repo/abc.json'))?.metadata, {
        'Content-Type': 'application/json',
        note: 'ünïcode',
      });
      // A leftover temp object (a crashed writer's) is never listed.
      const crashed = await cache.create('big/obj');
      // More than a part: the write callback comes once that part is uploaded (under a temp key).
      await new Promise<void>((resolve, reject) =>
        crashed.stream.write(pseudoRandomBytes(6 * MiB, 1), (err?: Error | null) => (err ? reject(err) : resolve())),
      );
      const listed: string[] = [];
      for await (const entry of cache.list('')) listed.push(entry.key);
      assert.deepEqual(listed, ['records/github.com/org/repo/abc.json']);
      await crashed.abort();
      await assert.rejects(cache.stat('../escape'), /invalid cache key/);
      await assert.rejects(cache.create('too/much', { metadata: { big: 'x'.repeat(3000) } }), BadRequestError);
    } finally {
      await removeAll(prefix);
    }
  });

  void test('aborted and failed big writes leave no object and no multipart upload', { timeout: 120_000 }, async () => {
    const prefix = `abort-${counter++}`;
    const { s3, log } = recordingClient();
    const cache = makeCache(prefix, {}, s3);
    try {
      // Temp-key path (digest unknown): abort after several parts went up.
      const writer = await cache.create('snap/obj');
      const source = generatedStream(14 * MiB, 2);
      for await (const chunk of source) {
        if (!writer.stream.write(chunk)) await new Promise((resolve) => writer.stream.once('drain', resolve));
      }
      assert.ok((await uploadsUnder(prefix)).length >= 1, 'a multipart upload should be in progress');
      await writer.abort(new Error('cancelled'));
      assert.deepEqual(await uploadsUnder(prefix), []);
      assert.deepEqual(await objectsUnder(prefix), []);

      // Bounded memory: no part is much larger than the part size.
      const parts = log.filter((entry) => entry.command === 'UploadPartCommand');
      assert.ok(parts.length >= 2);
      for (const part of parts) assert.ok(part.requestLength > 0 && part.requestLength <= 6 * MiB, `part of ${part.requestLength} bytes`);

      // Direct path (digest known) with the wrong digest: verified before completing, nothing published.
      await assert.rejects(
        writeStream(cache, 'blobs/wrong', generatedStream(12 * MiB, 3), { expectedSha256: sha256('something else') }),
        DigestMismatchError,
      );
      // A create-if-absent loser that uploaded everything before losing.
      await writeStream(cache, 'snap/taken', [Buffer.from('winner')], { ifNoneMatch: '*' });
      const late = await cache.create('snap/loser', { ifNoneMatch: '*' });
      await writeStream(cache, 'snap/loser', [Buffer.from('first')], { ifNoneMatch: '*' });
      await assert.rejects(
        (async () => {
          try {
            await pipeline(generatedStream(11 * MiB, 4), late.stream);
            await late.commit();
          } finally {
            await late.abort();
          }
        })(),
        AlreadyExistsError,
      );
      assert.deepEqual(await uploadsUnder(prefix), []);
      assert.deepEqual((await objectsUnder(prefix)).sort(), [`${prefix}/snap/loser`, `${prefix}/snap/taken`]);
      assert.equal((await readAll((await cache.open('snap/loser'))?.body)).toString(), 'first');
    } finally {
      s3.destroy();
      await removeAll(prefix);
    }
  });

  void test('a blob with a known digest is uploaded straight to its key, without a copy', { timeout: 120_000 }, async () => {
    const prefix = `blob-${counter++}`;
    const { s3, log } = recordingClient();
    const cache = makeCache(prefix, {}, s3);
    try {
      const data = pseudoRandomBytes(12 * MiB, 5);
      const hex = sha256(data);
      const { meta } = await putBlob(cache, hex, Readable.from([data.subarray(0, 7 * MiB), data.subarray(7 * MiB)]));
      assert.equal(meta.etag, hex);
      assert.equal(meta.size, data.length);
      assert.equal(log.filter((entry) => entry.command === 'UploadPartCopyCommand').length, 0);
      assert.deepEqual(await objectsUnder(prefix), [`${prefix}/blobs/sha256/${hex}`]);
      const read = await hashStream((await cache.open(`blobs/sha256/${hex}`))?.body);
      assert.deepEqual(read, { sha256: hex, size: data.length });
    } finally {
      s3.destroy();
      await removeAll(prefix);
    }
  });

  void test('ranges of a 40 MiB object are served by ranged GETs, never a full download', { timeout: 170_000 }, async () => {
    const prefix = `range-${counter++}`;
    const { s3, log, peak, settled } = recordingClient();
    const cache = makeCache(prefix, { rangeParallelism: 4, rangeChunkBytes: 4 * MiB }, s3);
    try {
      const size = 40 * MiB;
      const data = pseudoRandomBytes(size, 6);
      await writeStream(cache, 'snap/big', Readable.from([data]), {});
      log.length = 0;

      // A small range: exactly one GET for exactly those bytes.
      const small = await cache.open('snap/big', { range: { kind: 'bounded', start: 20 * MiB, end: 21 * MiB - 1 } });
      assert.equal(small?.status, 206);
      assert.ok((await readAll(small.body)).equals(data.subarray(20 * MiB, 21 * MiB)));
      let gets = log.filter((entry) => entry.command === 'GetObjectCommand');
      assert.equal(gets.length, 1);
      assert.equal(gets[0].range, `bytes=${20 * MiB}-${21 * MiB - 1}`);
      assert.equal(gets[0].contentLength, MiB);

      // A large range: parallel 4 MiB GETs, in order, adding up to the range and no more.
      log.length = 0;
      const start = 3 * MiB + 17;
      const end = 37 * MiB;
      const large = await cache.open('snap/big', { range: { kind: 'bounded', start, end } });
      assert.equal(large?.status, 206);
      const got = await hashStream(large.body);
      assert.deepEqual(got, { sha256: sha256(data.subarray(start, end + 1)), size: end - start + 1 });
      gets = log.filter((entry) => entry.command === 'GetObjectCommand');
      assert.ok(gets.length >= 8, `expected chunked GETs, got ${gets.length}`);
      assert.ok(gets.every((entry) => entry.range !== undefined && entry.contentLength <= 4 * MiB));
      assert.equal(
        gets.reduce((sum, entry) => sum + entry.contentLength, 0),
        end - start + 1,
      );
      assert.ok(peak() > 1 && peak() <= 4 + 1, `parallel GETs within the limit, peak ${peak()}`);

      // Abandoning a large read early stops fetching.
      log.length = 0;
      const abandoned = await cache.open('snap/big');
      assert.ok(abandoned?.body);
      for await (const _chunk of abandoned.body) break;
      // Once the body is closed the reader starts nothing new; wait for what it had in flight.
      const body = abandoned.body;
      if (!body.closed) await new Promise((resolve) => body.once('close', resolve));
      await settled();
      const fetched = log.filter((entry) => entry.command === 'GetObjectCommand').reduce((sum, entry) => sum + entry.contentLength, 0);
      assert.ok(fetched <= 5 * 4 * MiB, `abandoned read fetched ${fetched} bytes`);
    } finally {
      s3.destroy();
      await removeAll(prefix);
    }
  });

  void test('an unreachable S3 throws instead of reporting a miss', { timeout: 60_000 }, async () => {
    const down = new S3Client({
      endpoint: 'http://127.0.0.1:9',
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      forcePathStyle: true,
      maxAttempts: 1,
    });
    const cache = new S3Cache({ client: down, bucket: BUCKET });
    try {
      await assert.rejects(cache.stat('a/b'), UnavailableError);
      await assert.rejects(cache.open('a/b'), UnavailableError);
      await assert.rejects(writeStream(cache, 'a/b', [Buffer.from('x')]), UnavailableError);
      await assert.rejects(
        (async () => {
          for await (const _entry of cache.list('')) break;
        })(),
        UnavailableError,
      );
    } finally {
      down.destroy();
    }
  });
});
