import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { DeleteObjectsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { s3ClientFor, useMotoBucket, type MotoServer } from '../../test/harness/moto.js';
import { DiskCache } from './disk.js';
import { MemoryCache } from './memory.js';
import { S3Cache } from './s3.js';
import { TieredCache } from './tiered.js';
import { runCacheConformance } from './testing/conformance.js';
import { hashStream, pseudoRandomBytes, put, readAll, sha256 } from './testing/data.js';
import { writeStream } from './write.js';
import { AlreadyExistsError } from '../util/errors.js';
import { ManualClock } from '../util/testing/manual-clock.js';

const MiB = 1024 * 1024;
const BUCKET = 'cachew-tiered';
let moto: MotoServer;
let client: S3Client;
let counter = 0;

useMotoBucket(BUCKET, (m, c) => {
  moto = m;
  client = c;
});

async function removeAll(prefix: string): Promise<void> {
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}/`, ContinuationToken: token }));
    const Objects = (page.Contents ?? []).map((entry) => ({ Key: entry.Key }));
    if (Objects.length > 0) await client.send(new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects } }));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
}

interface Replica {
  memory: MemoryCache;
  disk?: DiskCache;
  s3: S3Cache;
  tiered: TieredCache;
  clock: ManualClock;
  close(): Promise<void>;
}

/** One server's view: its own memory (and disk) tiers over the shared S3 prefix. */
async function replica(prefix: string, withDisk: boolean, s3Client: S3Client = client): Promise<Replica> {
  const clock = new ManualClock();
  const memory = new MemoryCache({ limitBytes: 256 * MiB, clock });
  const root = withDisk ? await mkdtemp(join(tmpdir(), 'cachew-tiered-s3-')) : undefined;
  const disk = root ? await DiskCache.open({ root, limitBytes: 1024 * MiB, sweepIntervalMs: 0, clock }) : undefined;
  const s3 = new S3Cache({ client: s3Client, bucket: BUCKET, prefix, partSizeBytes: 5 * MiB, copyPartSizeBytes: 5 * MiB, clock });
  const tiered = new TieredCache(disk ? [memory, disk, s3] : [memory, s3], { clock });
  return {
    clock,
    memory,
    disk,
    s3,
    tiered,
    async close() {
      await tiered.close();
      if (root) await rm(root, { recursive: true, force: true });
    },
  };
}

for (const withDisk of [true, false]) {
  runCacheConformance(`TieredCache([memory, ${withDisk ? 'disk, ' : ''}s3]) conformance`, async () => {
    const prefix = `tiered-${counter++}`;
    const r = await replica(prefix, withDisk);
    return {
      cache: r.tiered,
      clock: r.clock,
      async cleanup() {
        await r.close();
        await removeAll(prefix);
      },
    };
  });
}

void describe('tiered over s3', () => {
  void test('a range of an object only S3 holds is a ranged GET, and a full read backfills', { timeout: 120_000 }, async () => {
    const prefix = `tiered-range-${counter++}`;
    const s3Client = s3ClientFor(moto);
    let getBytes = 0;
    s3Client.middlewareStack.add(
      (next, context) => async (args) => {
        const output = await next(args);
        if (context.commandName === 'GetObjectCommand') {
          const response = output.response as { headers: Record<string, string> };
          getBytes += Number(response.headers['content-length'] ?? 0);
        }
        return output;
      },
      { step: 'finalizeRequest', name: 'countGetBytes' },
    );
    const r = await replica(prefix, true, s3Client);
    try {
      const data = pseudoRandomBytes(24 * MiB, 1);
      await writeStream(r.s3, 'snap/obj', Readable.from([data]));
      getBytes = 0;
      const ranged = await r.tiered.open('snap/obj', { range: { kind: 'bounded', start: 10 * MiB, end: 11 * MiB - 1 } });
      assert.equal(ranged?.source, 's3');
      assert.equal(ranged.status, 206);
      assert.ok((await readAll(ranged.body)).equals(data.subarray(10 * MiB, 11 * MiB)));
      assert.equal(getBytes, MiB, 'only the range came from S3');
      assert.equal(await r.memory.stat('snap/obj'), undefined);

      const full = await r.tiered.open('snap/obj');
      assert.equal(full?.source, 's3');
      assert.deepEqual(await hashStream(full.body), { sha256: sha256(data), size: data.length });
      await r.tiered.whenIdle();
      assert.equal((await r.disk?.stat('snap/obj'))?.etag, sha256(data));
      getBytes = 0;
      const local = await r.tiered.open('snap/obj', { range: { kind: 'suffix', length: 100 } });
      assert.notEqual(local?.source, 's3');
      assert.ok((await readAll(local?.body)).equals(data.subarray(data.length - 100)));
      assert.equal(getBytes, 0);
    } finally {
      await r.close();
      s3Client.destroy();
      await removeAll(prefix);
    }
  });

  void test('two replicas racing create-if-absent: the S3 winner is what both serve', { timeout: 120_000 }, async () => {
    const prefix = `tiered-race-${counter++}`;
    const a = await replica(prefix, true);
    const b = await replica(prefix, true);
    try {
      for (let round = 0; round < 3; round++) {
        const key = `records/host/repo/${round}.json`;
        const bytesA = pseudoRandomBytes(6 * MiB + round, 10 + round);
        const bytesB = pseudoRandomBytes(6 * MiB + round, 20 + round);
        const outcomes = await Promise.allSettled([
          put(a.tiered, key, bytesA, { ifNoneMatch: '*' }),
          put(b.tiered, key, bytesB, { ifNoneMatch: '*' }),
        ]);
        const won = outcomes.map((o) => o.status === 'fulfilled');
        assert.equal(won.filter(Boolean).length, 1, `round ${round}: exactly one replica wins`);
        for (const outcome of outcomes) {
          if (outcome.status === 'rejected') assert.ok(outcome.reason instanceof AlreadyExistsError, String(outcome.reason));
        }
        const winner = won[0] ? bytesA : bytesB;
        for (const r of [a, b]) {
          // Local tiers never hold the loser's bytes.
          for (const local of [r.memory, r.disk]) {
            const meta = await local?.stat(key);
            if (meta) assert.equal(meta.etag, sha256(winner));
          }
          const read = await r.tiered.open(key);
          assert.equal((await hashStream(read?.body)).sha256, sha256(winner));
        }
      }
    } finally {
      await a.close();
      await b.close();
      await removeAll(prefix);
    }
  });
});
