/**
 * Crash safety of S3Cache: a writer process killed with SIGKILL mid-upload (or mid-commit) never leaves
 * a visible final object, partial or otherwise; what it does leave (incomplete multipart uploads, temp
 * objects) is invisible to readers and removed by sweep().
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { useMotoBucket, type MotoServer } from '../../test/harness/moto.js';
import { S3Cache, type SweepResult } from './s3.js';
import { hashStream, pseudoRandomBytes, sha256 } from './testing/data.js';

const BUCKET = 'cachew-crash';
const url = (...parts: string[]): string => pathToFileURL(join(import.meta.dirname, ...parts)).href;

/**
 * The child: commits `done/obj`, then
 * - "slow": streams `crash/obj` (digest unknown: temp-key upload) forever, READY after two parts;
 * - "blob": the same for a blob with a known digest (multipart upload straight to the final key);
 * - "loop": commits 6 MiB objects (temp upload + copy) in a loop, READY after the first.
 */
const CHILD = `
import { S3Cache } from ${JSON.stringify(url('s3.ts'))};
import { pseudoRandomBytes, put } from ${JSON.stringify(url('testing', 'data.ts'))};
import { s3ClientFor } from ${JSON.stringify(url('..', '..', 'test', 'harness', 'moto.ts'))};
const [endpoint, bucket, prefix, mode] = process.argv.slice(-4);
const client = s3ClientFor({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
const cache = new S3Cache({ client, bucket, prefix, partSizeBytes: 5 * 1024 * 1024, copyPartSizeBytes: 5 * 1024 * 1024 });
await put(cache, 'done/obj', pseudoRandomBytes(100000, 42));
if (mode === 'loop') {
  // Generated up front, so the loop spends its time uploading (where a kill must land), not hashing.
  const bodies = [0, 1, 2].map((i) => pseudoRandomBytes(6 * 1024 * 1024 + i, i));
  for (let i = 0; ; i++) {
    await put(cache, 'loop/' + (i % 3), bodies[i % 3]);
    if (i === 0) console.log('READY');
  }
} else {
  const key = mode === 'blob' ? 'blobs/sha256/' + 'ab'.repeat(32) : 'crash/obj';
  const writer = await cache.create(key, mode === 'blob' ? { expectedSha256: 'ab'.repeat(32), ifNoneMatch: '*' } : {});
  let written = 0;
  for (let i = 0; ; i++) {
    const chunk = pseudoRandomBytes(1024 * 1024, i);
    if (!writer.stream.write(chunk)) await new Promise((r) => writer.stream.once('drain', r));
    written += chunk.length;
    if (written === 12 * 1024 * 1024) console.log('READY');
    if (written >= 12 * 1024 * 1024) await new Promise((r) => setTimeout(r, 50));
  }
}
`;

type Mode = 'slow' | 'blob' | 'loop';

let moto: MotoServer;
let client: S3Client;
let counter = 0;

useMotoBucket(BUCKET, (m, c) => {
  moto = m;
  client = c;
});

function startChild(prefix: string, mode: Mode): ChildProcess {
  return spawn(process.execPath, ['--no-warnings', '--import', 'tsx', '--input-type=module', '-e', CHILD, moto.endpoint, BUCKET, prefix, mode], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

async function waitForReady(child: ChildProcess): Promise<void> {
  assert.ok(child.stdout);
  const lines = createInterface({ input: child.stdout });
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`child exited early with ${String(code)}`);
  });
  exited.catch(() => undefined);
  const ready = (async () => {
    for await (const line of lines) if (line === 'READY') return;
    throw new Error('child closed stdout before READY');
  })();
  await Promise.race([ready, exited]);
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

async function rawKeys(prefix: string): Promise<string[]> {
  const page = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}/` }));
  return (page.Contents ?? []).map((entry) => entry.Key ?? '').sort();
}

async function pendingUploads(prefix: string): Promise<number> {
  const page = await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: `${prefix}/` }));
  return page.Uploads?.length ?? 0;
}

/** Every visible object is complete: its bytes hash to its recorded sha256. Returns the keys. */
async function assertAllComplete(cache: S3Cache): Promise<string[]> {
  const keys: string[] = [];
  for await (const meta of cache.list('')) {
    const result = await cache.open(meta.key);
    assert.ok(result, `${meta.key} listed but not readable`);
    assert.deepEqual(await hashStream(result.body), { sha256: meta.etag, size: meta.size }, meta.key);
    keys.push(meta.key);
  }
  return keys.sort();
}

async function crash(mode: Mode, delayMs: number): Promise<SweepResult> {
  const prefix = `crash-${counter++}`;
  const child = startChild(prefix, mode);
  const cache = new S3Cache({ client, bucket: BUCKET, prefix });
  try {
    await waitForReady(child);
    if (mode !== 'loop') assert.ok((await pendingUploads(prefix)) >= 1, 'the write in progress is a multipart upload');
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    await kill(child);
    assert.equal(child.signalCode, 'SIGKILL');

    assert.equal((await cache.stat('done/obj'))?.etag, sha256(pseudoRandomBytes(100_000, 42)));
    const visible = await assertAllComplete(cache);
    if (mode !== 'loop') {
      const key = mode === 'blob' ? `blobs/sha256/${'ab'.repeat(32)}` : 'crash/obj';
      assert.equal(await cache.stat(key), undefined);
      assert.deepEqual(visible, ['done/obj']);
      // Not even a raw S3 object under the final key.
      await assert.rejects(client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}/${key}` })), /NotFound|404/);
    } else {
      for (const key of visible) assert.match(key, /^(done\/obj|loop\/[0-2])$/);
    }

    // What the crash left behind is swept away, and the completed objects stay.
    const swept = await cache.sweep(0);
    if (mode !== 'loop') assert.ok(swept.abortedUploads >= 1);
    assert.equal(await pendingUploads(prefix), 0);
    const raw = await rawKeys(prefix);
    assert.ok(raw.every((key) => !key.includes('/.tmp/')), `temp objects left: ${raw.join(', ')}`);
    assert.deepEqual(await assertAllComplete(cache), visible);
    return swept;
  } finally {
    await kill(child);
  }
}

void test('SIGKILL mid-upload (digest unknown) leaves no visible object', { timeout: 120_000 }, async () => {
  await crash('slow', 50);
});

void test('SIGKILL mid-upload of a blob with a known digest leaves no visible object', { timeout: 120_000 }, async () => {
  await crash('blob', 50);
});

void test('SIGKILL while committing in a loop leaves only complete objects', { timeout: 300_000 }, async () => {
  let leftovers = 0;
  // Each kill is checked in full; on a loaded machine a kill can land between two uploads, so keep going
  // (bounded) until at least one has interrupted an upload.
  const delays = [0, 40, 150, 400, 90, 250, 20, 600];
  for (let i = 0; i < delays.length && (i < 4 || leftovers === 0); i++) {
    const swept = await crash('loop', delays[i]);
    leftovers += swept.abortedUploads + swept.deletedTempObjects;
  }
  // The kills must have landed inside uploads or commits, or this test proves nothing.
  assert.ok(leftovers > 0, 'no kill interrupted an upload');
});
