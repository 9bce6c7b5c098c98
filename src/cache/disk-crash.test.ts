/**
 * Crash safety of DiskCache: a process killed with SIGKILL in the middle of writing (or committing)
 * leaves no visible partial object and no temp files once the cache is opened again.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { DiskCache } from './disk.js';
import { hashStream, pseudoRandomBytes, sha256 } from './testing/conformance.js';

const diskModule = pathToFileURL(join(import.meta.dirname, 'disk.ts')).href;
const conformanceModule = pathToFileURL(join(import.meta.dirname, 'testing', 'conformance.ts')).href;

/**
 * The child: commits `done/obj`, then either writes `crash/obj` slowly forever ("slow") or commits small
 * objects in a tight loop ("loop"), printing READY once the interesting phase is under way.
 */
const CHILD = `
import { DiskCache } from ${JSON.stringify(diskModule)};
import { pseudoRandomBytes, put } from ${JSON.stringify(conformanceModule)};
const [root, mode] = process.argv.slice(-2);
const cache = await DiskCache.open({ root, limitBytes: 1e10 });
await put(cache, 'done/obj', pseudoRandomBytes(100000, 42));
if (mode === 'slow') {
  const writer = await cache.create('crash/obj');
  let written = 0;
  for (let i = 0; ; i++) {
    const chunk = pseudoRandomBytes(1024 * 1024, i);
    if (!writer.stream.write(chunk)) await new Promise((r) => writer.stream.once('drain', r));
    written += chunk.length;
    if (written === 4 * 1024 * 1024) console.log('READY');
    await new Promise((r) => setTimeout(r, 10));
  }
} else {
  for (let i = 0; ; i++) {
    await put(cache, 'loop/' + (i % 20), pseudoRandomBytes(256 * 1024 + i, i));
    if (i === 10) console.log('READY');
  }
}
`;

function startChild(root: string, mode: 'slow' | 'loop'): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD, root, mode], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

async function waitForReady(child: ChildProcess): Promise<void> {
  assert.ok(child.stdout);
  const lines = createInterface({ input: child.stdout });
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`child exited early with ${String(code)}`);
  });
  const ready = (async () => {
    for await (const line of lines) if (line === 'READY') return;
    throw new Error('child closed stdout before READY');
  })();
  await Promise.race([ready, exited]);
  exited.catch(() => undefined);
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

/** Kills the child after `delayMs`, reopens the cache and checks it; returns the temp files the kill left. */
async function crashAndReopen(mode: 'slow' | 'loop', delayMs: number): Promise<number> {
  const root = await mkdtemp(join(tmpdir(), 'cachew-crash-'));
  const child = startChild(root, mode);
  try {
    await waitForReady(child);
    if (mode === 'slow') {
      assert.equal((await readdir(join(root, '.tmp'))).length, 1, 'the write in progress has a temp file');
    }
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    await kill(child);
    assert.equal(child.signalCode, 'SIGKILL');
    const leftovers = (await readdir(join(root, '.tmp'))).length;

    const cache = await DiskCache.open({ root, limitBytes: 1e10 });
    try {
      assert.deepEqual(await readdir(join(root, '.tmp')), [], 'temp files removed at open');
      assert.equal(await cache.stat('crash/obj'), undefined);
      assert.equal((await cache.stat('done/obj'))?.etag, sha256(pseudoRandomBytes(100_000, 42)));
      // Every object that is visible is complete: its bytes hash to its etag.
      let objects = 0;
      for await (const meta of cache.list('')) {
        const result = await cache.open(meta.key);
        assert.ok(result);
        assert.deepEqual(await hashStream(result.body), { sha256: meta.etag, size: meta.size });
        objects++;
      }
      assert.ok(objects >= 1);
    } finally {
      await cache.close();
    }
    return leftovers;
  } finally {
    await kill(child);
    await rm(root, { recursive: true, force: true });
  }
}

void test('SIGKILL in the middle of a slow write leaves no object and no temp file', { timeout: 120_000 }, async () => {
  assert.equal(await crashAndReopen('slow', 50), 1, 'the kill interrupted the write');
});

void test('SIGKILL while committing in a loop leaves only complete objects', { timeout: 120_000 }, async () => {
  let leftovers = 0;
  // Each kill is checked in full; on a loaded machine a kill can land between two commits, so keep going
  // (bounded) until at least one has interrupted a write or a commit.
  const delays = [0, 7, 23, 61, 3, 41, 13, 97];
  for (let i = 0; i < delays.length && (i < 4 || leftovers === 0); i++) leftovers += await crashAndReopen('loop', delays[i]);
  // The kills must have landed inside writes or commits, or this test proves nothing.
  assert.ok(leftovers > 0, 'no kill interrupted a write');
});
