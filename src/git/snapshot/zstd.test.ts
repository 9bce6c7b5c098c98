import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { compressToFile, zstdVersion } from './zstd.js';

const exec = promisify(execFile);

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cachew-zstd-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function* chunks(count: number, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < count; i++) yield Buffer.alloc(size, `chunk ${i % 7} `);
}

const gone = (path: string): Promise<boolean> => access(path).then(() => false, () => true);

void test('compresses to a valid zstd file and reports its sha256 and size', async () => {
  await withDir(async (dir) => {
    const out = join(dir, 'a.zst');
    const result = await compressToFile(chunks(64, 64 * 1024), out);
    const bytes = await readFile(out);
    assert.equal(result.size, bytes.length);
    assert.equal(result.sha256, createHash('sha256').update(bytes).digest('hex'));
    const { stdout } = await exec('sh', ['-c', `zstd -dc '${out}' | sha256sum`]);
    const original = createHash('sha256');
    for await (const c of chunks(64, 64 * 1024)) original.update(c);
    assert.equal(stdout.split(' ')[0], original.digest('hex'));
    // Same input, same bytes (no timestamps or names in the frame).
    const again = await compressToFile(chunks(64, 64 * 1024), join(dir, 'b.zst'));
    assert.equal(again.sha256, result.sha256);
    assert.match(await zstdVersion(), /^\d+\.\d+\.\d+$/);
  });
});

void test('a failing source removes the output and surfaces the error', async () => {
  await withDir(async (dir) => {
    const out = join(dir, 'fail.zst');
    async function* broken(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(1024 * 1024, 1);
      throw new Error('source broke');
    }
    await assert.rejects(compressToFile(broken(), out), /source broke/);
    assert.ok(await gone(out));
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
    await assert.rejects(compressToFile(endless(), out, controller.signal), (err: Error) => err.name === 'AbortedError');
    assert.ok(await gone(out));
  });
});
