import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseFrameTable, verifyFrameTable } from './frames.js';
import { BATCH_FRAME_LIMIT, type FrameSource } from './zstd.js';
import { compressFramesNative, nativeZstdVersion } from './zstd-native.js';

const exec = promisify(execFile);

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cachew-zstd-native-'));
  try {
    await mkdir(join(dir, 'scratch'));
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `count` chunks of `size` bytes of compressible but not trivial text (a fixed pseudo-random walk). */
function* text(count: number, size: number, seed: number): Generator<Buffer> {
  let x = seed;
  const words = ['alpha ', 'beta ', 'gamma ', 'delta\n', 'epsilon ', 'zeta ', 'eta\n', 'theta '];
  for (let i = 0; i < count; i++) {
    const parts: string[] = [];
    let length = 0;
    while (length < size) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      const word = words[x >>> 29] + (x & 0xff).toString(16);
      parts.push(word);
      length += word.length;
    }
    yield Buffer.from(parts.join('')).subarray(0, size);
  }
}

/** 16 MiB: two libzstd jobs of 8 MiB. Made once: generating it is the slow part of these tests. */
let heavyText: Buffer[] | undefined;

/** A heavy frame of 16 MiB, an empty one, and two light ones. */
function* sources(): Generator<FrameSource> {
  heavyText ??= [...text(16, 1 << 20, 1)];
  yield { weight: 16 << 20, bytes: heavyText };
  yield { weight: 0, bytes: [] };
  yield { weight: 3000, bytes: text(3, 1000, 2) };
  yield { weight: BATCH_FRAME_LIMIT - 1, bytes: text(1, BATCH_FRAME_LIMIT - 1, 3) };
}

async function* async<T>(items: Iterable<T>): AsyncGenerator<T> {
  yield* items;
}

void test('in-process frames: table, stock zstd reads them, same bytes for any worker count', { skip: nativeZstdVersion() === undefined && 'zstd-napi not built here' }, async () => {
  await withDir(async (dir) => {
    const scratch = join(dir, 'scratch');
    const out = join(dir, 'a.zst');
    const result = await compressFramesNative(async(sources()), out, scratch, undefined, 2);
    const bytes = await readFile(out);
    assert.equal(result.size, bytes.length);
    assert.equal(result.sha256, createHash('sha256').update(bytes).digest('hex'));
    assert.deepEqual(parseFrameTable(bytes), result.frames);
    assert.deepEqual(await verifyFrameTable(out), result.frames);
    assert.deepEqual(result.frames.map((f) => f.size), [16 << 20, 0, 3000, BATCH_FRAME_LIMIT - 1]);
    assert.ok(result.frames[0].length < (16 << 20) / 2, 'the heavy frame is compressed');
    const { stdout } = await exec('sh', ['-c', `zstd -dc '${out}' | sha256sum`], { maxBuffer: 1 << 20 });
    const original = createHash('sha256');
    for (const source of sources()) for (const chunk of source.bytes as Iterable<Buffer>) original.update(chunk);
    assert.equal(stdout.split(' ')[0], original.digest('hex'));
    assert.deepEqual(await readdir(scratch), [], 'the body file is removed');
    // libzstd's multi-threaded mode gives the same bytes for any worker count, as the format needs.
    for (const workers of [1, 4]) {
      const again = await compressFramesNative(async(sources()), join(dir, `w${workers}.zst`), scratch, undefined, workers);
      assert.equal(again.sha256, result.sha256, `${workers} workers`);
    }
    // A frame alone compresses to the same bytes as in company.
    const alone = await compressFramesNative(async([{ weight: 3000, bytes: text(3, 1000, 2) }]), join(dir, 'c.zst'), scratch);
    assert.equal(alone.frames[0].sha256, result.frames[2].sha256);
  });
});

void test('in-process frames: a failing source removes the output and the body file', { skip: nativeZstdVersion() === undefined && 'zstd-napi not built here' }, async () => {
  await withDir(async (dir) => {
    const out = join(dir, 'a.zst');
    async function* failing(): AsyncGenerator<FrameSource> {
      yield { weight: 3000, bytes: text(3, 1000, 2) };
      yield {
        weight: 8 << 20,
        bytes: (function* () {
          yield* text(2, 1 << 20, 5);
          throw new Error('source broke');
        })(),
      };
    }
    await assert.rejects(compressFramesNative(failing(), out, join(dir, 'scratch')), /source broke/);
    await assert.rejects(access(out));
    assert.deepEqual(await readdir(join(dir, 'scratch')), []);
    const aborted = new AbortController();
    aborted.abort();
    await assert.rejects(compressFramesNative(async(sources()), out, join(dir, 'scratch'), aborted.signal), { name: 'AbortedError' });
    await assert.rejects(access(out));
  });
});
