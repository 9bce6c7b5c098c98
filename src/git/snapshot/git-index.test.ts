import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, utimes, writeFile, lstat, symlink, chmod, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGit } from '../command.js';
import { gitIndexChunks, gitIndexSize, sortIndexEntries, type GitIndexEntry } from './git-index.js';
import { listTree } from './tree-list.js';

const STAT_TIME = 1_650_000_000;

async function withRepo(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cachew-index-'));
  try {
    await runGit(['init', '-q', '--initial-branch=main', dir]);
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function indexBytes(entries: GitIndexEntry[]): Buffer {
  return Buffer.concat([...gitIndexChunks(entries, STAT_TIME)]);
}

void test('git reads an index we wrote exactly as the one it writes itself', async () => {
  await withRepo(async (dir) => {
    await mkdir(join(dir, 'a/b'), { recursive: true });
    await writeFile(join(dir, 'a/b/file.txt'), 'hello\n');
    await writeFile(join(dir, 'a-b'), 'dash sorts before slash\n');
    await writeFile(join(dir, 'a.c'), 'dot sorts before slash\n');
    await mkdir(join(dir, 'x'.repeat(200)));
    await writeFile(join(dir, 'x'.repeat(200), 'y'.repeat(200)), 'long name\n');
    await writeFile(join(dir, 'tool.sh'), '#!/bin/sh\n');
    await chmod(join(dir, 'tool.sh'), 0o755);
    await symlink('a/b/file.txt', join(dir, 'sym'));
    await runGit(['add', '-A'], { cwd: dir });
    await runGit(['update-index', '--add', '--cacheinfo', `160000,${'1'.repeat(40)},sub`], { cwd: dir });
    const tree = (await runGit(['write-tree'], { cwd: dir })).trim();
    const theirs = await runGit(['ls-files', '--stage', '-z'], { cwd: dir });

    // Build the same index from the tree (in a shuffled order, to exercise the sort).
    const entries = sortIndexEntries((await listTree(join(dir, '.git'), tree)).reverse());
    const bytes = indexBytes(entries);
    assert.equal(bytes.length, gitIndexSize(entries));
    assert.equal(bytes.subarray(-20).toString('hex'), createHash('sha1').update(bytes.subarray(0, -20)).digest('hex'));
    await writeFile(join(dir, '.git/index'), bytes);
    assert.equal(await runGit(['ls-files', '--stage', '-z'], { cwd: dir }), theirs);
    const debug = await runGit(['ls-files', '--debug', 'tool.sh'], { cwd: dir });
    assert.match(debug, new RegExp(`mtime: ${STAT_TIME}:0`));
    assert.match(debug, /size: 10\b/);
  });
});

void test('with matching mtimes and checkStat=minimal, status is clean without touching the index', async () => {
  await withRepo(async (dir) => {
    await mkdir(join(dir, 'd'));
    await writeFile(join(dir, 'd/one.txt'), 'one\n');
    await writeFile(join(dir, 'two.txt'), 'two\n');
    await symlink('two.txt', join(dir, 'link'));
    await runGit(['add', '-A'], { cwd: dir });
    await runGit(['commit', '-q', '-m', 'c'], { cwd: dir });
    const tree = (await runGit(['rev-parse', 'HEAD^{tree}'], { cwd: dir })).trim();
    await runGit(['config', 'core.checkStat', 'minimal'], { cwd: dir });
    await runGit(['config', 'core.trustctime', 'false'], { cwd: dir });

    const entries = sortIndexEntries(await listTree(join(dir, '.git'), tree));
    const indexPath = join(dir, '.git/index');
    await writeFile(indexPath, indexBytes(entries));
    for (const name of ['d/one.txt', 'two.txt']) await utimes(join(dir, name), STAT_TIME, STAT_TIME);
    // The symlink's own mtime must match as well; node:fs has no lutimes, so use touch -h.
    await new Promise<void>((resolve, reject) =>
      execFile('touch', ['-h', '-d', `@${STAT_TIME}`, join(dir, 'link')], (err) => (err ? reject(err) : resolve())),
    );
    // One second newer than every entry, as in a snapshot: nothing is racily clean.
    await utimes(indexPath, STAT_TIME + 1, STAT_TIME + 1);
    assert.equal((await lstat(join(dir, 'link'))).mtimeMs, STAT_TIME * 1000);

    const before = await readFile(indexPath);
    assert.equal(await runGit(['diff-files', '--name-only'], { cwd: dir }), '');
    assert.equal(await runGit(['status', '--porcelain'], { cwd: dir }), '');
    assert.deepEqual(await readFile(indexPath), before, 'status had nothing to refresh');

    // And the stat data is really consulted: a file with another mtime is reported by diff-files.
    await utimes(join(dir, 'two.txt'), STAT_TIME + 60, STAT_TIME + 60);
    assert.equal(await runGit(['diff-files', '--name-only'], { cwd: dir }), 'two.txt\n');
  });
});

void test('rejects unsorted or duplicate entries, bad modes and bad ids', () => {
  const entry = (path: string, mode = 0o100644, oid = 'a'.repeat(40)): GitIndexEntry => ({
    path: Buffer.from(path),
    mode,
    oid,
    size: 1,
  });
  assert.throws(() => indexBytes([entry('b'), entry('a')]), RangeError);
  assert.throws(() => indexBytes([entry('a'), entry('a')]), RangeError);
  assert.throws(() => indexBytes([entry('a', 0o100664)]), RangeError);
  assert.throws(() => indexBytes([entry('a', 0o100644, 'A'.repeat(40))]), RangeError);
  assert.throws(() => [...gitIndexChunks([], -1)], RangeError);
  // Entries are NUL-padded to a multiple of 8 with at least one NUL: 62+1 → 64, 62+2 → 72.
  assert.equal(gitIndexSize([entry('a')]), 12 + 64 + 20);
  assert.equal(gitIndexSize([entry('ab')]), 12 + 72 + 20);
});
