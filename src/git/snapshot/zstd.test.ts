import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseFrameTable, verifyFrameTable } from './frames.js';
import { BATCH_FRAME_LIMIT, compressFrames, zstdVersion, type FrameSource } from './zstd.js';

const exec = promisify(execFile);

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cachew-zstd-'));
  try {
    await mkdir(join(dir, 'scratch'));
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function* chunks(count: number, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < count; i++) yield Buffer.alloc(size, `chunk ${i % 7} `);
}

const gone = (path: string): Promise<boolean> => access(path).then(() => false, () => true);

/** Three segments of different lengths (one empty), as compressFrames takes them. */
async function* segments(): AsyncGenerator<FrameSource> {
  yield { weight: 64 * 64 * 1024, bytes: chunks(64, 64 * 1024) };
  yield { weight: 0, bytes: [] };
  yield { weight: 3000, bytes: chunks(3, 1000) };
}

void test('compresses each segment to its own frame behind a frame table, read by stock zstd', async () => {
  await withDir(async (dir) => {
    const out = join(dir, 'a.zst');
    const result = await compressFrames(segments(), out, join(dir, 'scratch'));
    const bytes = await readFile(out);
    assert.equal(result.size, bytes.length);
    assert.equal(result.sha256, createHash('sha256').update(bytes).digest('hex'));
    assert.deepEqual(parseFrameTable(bytes), result.frames);
    assert.deepEqual(await verifyFrameTable(out), result.frames);
    assert.deepEqual(result.frames.map((f) => f.size), [64 * 64 * 1024, 0, 3000]);
    const { stdout } = await exec('sh', ['-c', `zstd -dc '${out}' | sha256sum`]);
    const original = createHash('sha256');
    for await (const c of chunks(64, 64 * 1024)) original.update(c);
    for await (const c of chunks(3, 1000)) original.update(c);
    assert.equal(stdout.split(' ')[0], original.digest('hex'));
    assert.deepEqual(await readdir(join(dir, 'scratch')), [], 'frame files are removed');
    // Same input, same bytes (no timestamps or names in the frames), and the frames stand alone.
    const again = await compressFrames(segments(), join(dir, 'b.zst'), join(dir, 'scratch'));
    assert.equal(again.sha256, result.sha256);
    const alone = await compressFrames((async function* () { yield { weight: 3000, bytes: chunks(3, 1000) }; })(), join(dir, 'c.zst'), join(dir, 'scratch'));
    assert.equal(alone.frames[0].sha256, result.frames[2].sha256);
    assert.match(await zstdVersion(), /^\d+\.\d+\.\d+$/);
  });
});

void test('light frames are compressed in batches, each a frame of its own, in order', async () => {
  await withDir(async (dir) => {
    const count = 700; // more than one batch
    const content = (i: number): Buffer => Buffer.from(`frame ${i} `.repeat(1 + (i % 50)));
    async function* many(): AsyncGenerator<FrameSource> {
      for (let i = 0; i < count; i++) {
        yield { weight: content(i).length, bytes: [content(i)] };
        if (i === 300) yield { weight: BATCH_FRAME_LIMIT, bytes: chunks(20, 64 * 1024) };
      }
    }
    const out = join(dir, 'many.zst');
    const result = await compressFrames(many(), out, join(dir, 'scratch'));
    assert.equal(result.frames.length, count + 1);
    assert.deepEqual(await verifyFrameTable(out), result.frames);
    const bytes = await readFile(out);
    for (const [i, frame] of result.frames.entries()) {
      const expected = i === 301 ? 20 * 64 * 1024 : content(i > 301 ? i - 1 : i).length;
      assert.equal(frame.size, expected);
      const { stdout } = await exec('sh', ['-c', `tail -c +${frame.offset + 1} '${out}' | head -c ${frame.length} | zstd -dc | wc -c`]);
      if (i % 97 === 0 || i === 301) assert.equal(Number(stdout.trim()), expected, `frame ${i} decodes alone`);
    }
    assert.equal(bytes.length, result.size);
    assert.deepEqual(await readdir(join(dir, 'scratch')), [], 'raw and frame files are removed');
    const again = await compressFrames(many(), join(dir, 'again.zst'), join(dir, 'scratch'));
    assert.equal(again.sha256, result.sha256);
  });
});

void test('a damaged archive fails frame table verification', async () => {
  await withDir(async (dir) => {
    const out = join(dir, 'a.zst');
    await compressFrames(segments(), out, join(dir, 'scratch'));
    const bytes = await readFile(out);
    bytes[bytes.length - 5] ^= 0xff;
    await writeFile(join(dir, 'bad.zst'), bytes);
    await assert.rejects(verifyFrameTable(join(dir, 'bad.zst')), /does not match its sha256/);
    await writeFile(join(dir, 'short.zst'), bytes.subarray(0, bytes.length - 1));
    await assert.rejects(verifyFrameTable(join(dir, 'short.zst')), /sha256|end/);
  });
});

void test('a failing source removes the output and surfaces the error', async () => {
  await withDir(async (dir) => {
    const out = join(dir, 'fail.zst');
    async function* broken(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(1024 * 1024, 1);
      throw new Error('source broke');
    }
    // A light frame breaks while written for its batch, a heavy one while fed to its own zstd.
    for (const weight of [1000, BATCH_FRAME_LIMIT]) {
      async function* segmentsBreaking(): AsyncGenerator<FrameSource> {
        yield { weight: 4000, bytes: chunks(4, 1000) };
        yield { weight, bytes: broken() };
      }
      const scratch = join(dir, `scratch-${weight}`);
      await mkdir(scratch);
      await assert.rejects(compressFrames(segmentsBreaking(), out, scratch), /source broke/);
      assert.ok(await gone(out));
    }
  });
});

void test('abort mid-stream kills zstd and removes the output', async () => {
  await withDir(async (dir) => {
    const out = join(dir, 'abort.zst');
    const controller = new AbortController();
    async function* endless(): AsyncGenerator<Buffer> {
      for (let i = 0; ; i++) {
        if (i === 20) controller.abort();
        yield Buffer.alloc(64 * 1024, i % 251);
        await sleep(1);
      }
    }
    async function* one(): AsyncGenerator<FrameSource> {
      yield { weight: 1 << 30, bytes: endless() };
    }
    await assert.rejects(compressFrames(one(), out, join(dir, 'scratch'), controller.signal), (err: Error) => err.name === 'AbortedError');
    assert.ok(await gone(out));
  });
});
