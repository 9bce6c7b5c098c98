/**
 * Checkpoint packs (checkpoint.ts, pack-cache.ts): the pack plan follows the first-parent rule, and
 * snapshot bytes stay a pure function of the commit whether the checkpoint pack is computed, taken
 * from a warm cache, or recomputed after the cache was damaged, on independent mirrors.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanGitEnv, runGit } from '../command.js';
import { generateSnapshot, type SnapshotResult } from './archive.js';
import { checkpointDepth, planPacks } from './checkpoint.js';
import { SNAPSHOT_CHECKPOINT_INTERVAL as K } from './format.js';
import { pseudoText } from './testing/archive-fixture.js';

const URL = 'https://example.com/org/checkpoints.git';
const MAIN_COMMITS = 140;
const SIDE_COMMITS = 3;
const MERGE_AT = 100;

/**
 * A bare upstream built by one `git fast-import`: MAIN_COMMITS first-parent commits on main that edit
 * a large file (so packs have deltas) and add small ones, plus a side branch merged at MERGE_AT (its
 * commits are reachable but do not count towards first-parent depth).
 */
async function buildUpstream(bareDir: string): Promise<void> {
  await runGit(['init', '-q', '--bare', '--initial-branch=main', bareDir]);
  const child = spawn('git', ['fast-import', '--quiet', '--done'], { cwd: bareDir, env: cleanGitEnv(), stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const closed = once(child, 'close');
  const parts: string[] = [];
  const data = (text: string): string => `data ${Buffer.byteLength(text)}\n${text}\n`;
  const file = (mode: string, path: string, text: string): string => `M ${mode} inline ${path}\n${data(text)}`;
  const header = (ref: string, mark: number, time: number, message: string): string =>
    `commit ${ref}\nmark :${mark}\nauthor A U Thor <a@example.com> ${time} +0000\ncommitter C O Mitter <c@example.com> ${time} +0000\n${data(message)}`;
  const big = pseudoText(1, 3000).split('\n');
  for (let i = 1; i <= MAIN_COMMITS; i++) {
    if (i === MERGE_AT) {
      for (let s = 1; s <= SIDE_COMMITS; s++) {
        parts.push(header('refs/heads/side', 1000 + s, 1_600_000_000 + i * 60 + s, `side ${s}\n`));
        if (s === 1) parts.push(`from :${MERGE_AT - 10}\n`);
        parts.push(file('100644', `side/${s}.txt`, pseudoText(500 + s, 20)));
      }
    }
    parts.push(header('refs/heads/main', i, 1_600_000_000 + i * 60, `commit ${i}\n`));
    if (i === MERGE_AT) parts.push(`merge :${1000 + SIDE_COMMITS}\n`, file('100644', 'side/merged.txt', 'merged\n'));
    big[(i * 37) % big.length] = `edited in ${i}`;
    parts.push(file('100644', 'big.txt', big.join('\n')));
    parts.push(file('100644', `log/${i % 50}/${i}.txt`, pseudoText(i, 5)));
    if (i === 1) {
      parts.push(file('100755', 'run.sh', '#!/bin/sh\necho hi\n'));
      parts.push(file('120000', 'link', 'big.txt'));
    }
    parts.push('\n');
  }
  parts.push('done\n');
  child.stdin.end(parts.join(''));
  const [code] = (await closed) as [number | null];
  assert.equal(code, 0, `fast-import failed: ${stderr}`);
}

void describe('checkpoint packs', { timeout: 170_000 }, () => {
  let root: string;
  let upstream: string;
  let plain: string;
  let repacked: string;
  /** main's first-parent chain, oldest first: mainline[d - 1] has depth d. */
  let mainline: string[];
  let outputs = 0;

  async function snapshot(mirror: string, commit: string, packCacheDir?: string): Promise<SnapshotResult> {
    const dir = join(root, `out-${outputs++}`);
    await mkdir(dir);
    try {
      return await generateSnapshot({ gitDir: mirror, commit, upstreamUrl: URL, defaultBranch: 'main' }, join(dir, 'snap.tar.zst'), { packCacheDir });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** The only checkpoint directory in `cacheDir` and its pack file. */
  async function cachedPack(cacheDir: string): Promise<{ checkpoint: string; packPath: string; idxPath: string }> {
    const names = (await readdir(cacheDir)).filter((n) => !n.startsWith('.'));
    assert.equal(names.length, 1, `one checkpoint per cache dir, got ${names.join(', ')}`);
    const files = await readdir(join(cacheDir, names[0]));
    const pack = files.find((f) => f.endsWith('.pack'));
    const idx = files.find((f) => f.endsWith('.idx'));
    assert.ok(pack !== undefined && idx !== undefined, `pack and idx cached: ${files.join(', ')}`);
    return { checkpoint: names[0], packPath: join(cacheDir, names[0], pack), idxPath: join(cacheDir, names[0], idx) };
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'cachew-checkpoint-'));
    upstream = join(root, 'upstream.git');
    await buildUpstream(upstream);
    plain = join(root, 'plain.git');
    await runGit(['clone', '-q', '--mirror', upstream, plain]);
    // An independent mirror with another pack layout, bitmaps and config that must not leak into bytes.
    repacked = join(root, 'repacked.git');
    await runGit(['clone', '-q', '--no-local', '--mirror', upstream, repacked]);
    await runGit(['repack', '-q', '-a', '-d', '-f', '-b', '--window=250', '--depth=5'], { cwd: repacked });
    for (const [key, value] of [['pack.threads', '4'], ['pack.compression', '9'], ['pack.window', '3'], ['pack.useBitmaps', 'true']]) {
      await runGit(['config', key, value], { cwd: repacked });
    }
    mainline = (await runGit(['rev-list', '--first-parent', '--reverse', 'main'], { cwd: plain })).trim().split('\n');
    assert.equal(mainline.length, MAIN_COMMITS);
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  void it('picks the checkpoint by first-parent depth alone', async () => {
    assert.equal(K, 64);
    assert.equal(checkpointDepth(1), undefined);
    assert.equal(checkpointDepth(K), undefined);
    assert.equal(checkpointDepth(K + 1), K);
    assert.equal(checkpointDepth(2 * K), K);
    assert.equal(checkpointDepth(2 * K + 1), 2 * K);
    assert.throws(() => checkpointDepth(0), RangeError);

    assert.deepEqual(await planPacks(plain, mainline[K - 1]), { depth: K });
    assert.deepEqual(await planPacks(plain, mainline[K]), { depth: K + 1, checkpoint: { commit: mainline[K - 1], depth: K } });
    // The merge's side commits are reachable but not counted.
    const head = await planPacks(repacked, mainline[MAIN_COMMITS - 1]);
    assert.deepEqual(head, { depth: MAIN_COMMITS, checkpoint: { commit: mainline[2 * K - 1], depth: 2 * K } });
  });

  void it('gives the same bytes from independent mirrors, with a cold cache, a warm cache and none', async () => {
    const head = mainline[MAIN_COMMITS - 1];
    const cache = join(root, 'cache-determinism');
    const none = await snapshot(plain, head);
    const otherMirror = await snapshot(repacked, head);
    const cold = await snapshot(plain, head, cache);
    const { checkpoint, packPath } = await cachedPack(cache);
    assert.equal(checkpoint, mainline[2 * K - 1]);
    const before = identity(await stat(packPath));
    const warm = await snapshot(repacked, head, cache);
    assert.equal(identity(await stat(packPath)), before, 'the warm run used the cached pack rather than rewriting it');
    assert.equal(otherMirror.sha256, none.sha256);
    assert.equal(cold.sha256, none.sha256);
    assert.equal(warm.sha256, none.sha256);

    // Regeneration after more commits on the same checkpoint reuses it and stays deterministic.
    const next = mainline[MAIN_COMMITS - 2];
    assert.equal((await snapshot(plain, next, cache)).sha256, (await snapshot(repacked, next)).sha256);
    assert.equal(identity(await stat(packPath)), before);
  });

  void it('keeps one checkpoint per cache directory', async () => {
    const cache = join(root, 'cache-prune');
    await snapshot(plain, mainline[MERGE_AT - 1], cache);
    assert.equal((await cachedPack(cache)).checkpoint, mainline[K - 1]);
    await snapshot(plain, mainline[MAIN_COMMITS - 1], cache);
    assert.equal((await cachedPack(cache)).checkpoint, mainline[2 * K - 1]);
    // At or below K nothing is cached or pruned.
    await snapshot(plain, mainline[K - 1], cache);
    assert.equal((await cachedPack(cache)).checkpoint, mainline[2 * K - 1]);
  });

  void it('extracts to a clean, complete clone with two packs (and one pack at depth <= K)', async () => {
    for (const [depth, packs] of [[MAIN_COMMITS, 2], [K + 1, 2], [K, 1]] as const) {
      const commit = mainline[depth - 1];
      const dir = join(root, `out-${outputs++}`);
      const clone = join(dir, 'clone');
      await mkdir(clone, { recursive: true });
      try {
        const archive = join(dir, 'snap.tar.zst');
        await generateSnapshot({ gitDir: plain, commit, upstreamUrl: URL, defaultBranch: 'main' }, archive, { packCacheDir: join(root, 'cache-extract') });
        const tar = spawn('tar', ['--zstd', '-xf', archive, '-C', clone], { stdio: 'ignore' });
        const [code] = (await once(tar, 'close')) as [number | null];
        assert.equal(code, 0);
        const packFiles = (await readdir(join(clone, '.git/objects/pack'))).sort();
        assert.equal(packFiles.length, 2 * packs, packFiles.join(', '));
        await runGit(['fsck', '--full', '--strict', '--no-dangling'], { cwd: clone });
        assert.equal(await runGit(['status', '--porcelain'], { cwd: clone }), '');
        assert.equal((await runGit(['rev-parse', 'HEAD'], { cwd: clone })).trim(), commit);
        const expected = (await runGit(['rev-list', '--count', commit], { cwd: upstream })).trim();
        assert.equal((await runGit(['rev-list', '--count', 'HEAD'], { cwd: clone })).trim(), expected);
        assert.equal((await runGit(['log', '--format=%H'], { cwd: clone })).trim().split('\n').length, Number(expected));
        if (depth === MAIN_COMMITS) assert.ok(Number(expected) > MAIN_COMMITS, 'the side branch is part of the history');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
  });

  void it('detects a damaged cached checkpoint and regenerates identical bytes', async () => {
    const head = mainline[MAIN_COMMITS - 1];
    const reference = await snapshot(repacked, head);
    const cache = join(root, 'cache-damage');
    assert.equal((await snapshot(plain, head, cache)).sha256, reference.sha256);
    const original = await cachedPack(cache);
    const size = (await stat(original.packPath)).size;

    const damages: Array<[string, () => Promise<void>]> = [
      ['truncated pack', () => truncate(original.packPath, size - 100)],
      ['flipped byte mid-pack', () => flipByte(original.packPath, Math.floor(size / 2))],
      ['flipped byte in idx', () => flipByte(original.idxPath, 2000)],
      ['garbage manifest', () => writeFile(join(cache, original.checkpoint, 'checkpoint.json'), '{"commit":')],
      ['missing idx', () => rm(original.idxPath)],
    ];
    for (const [what, damage] of damages) {
      assert.equal((await cachedPack(cache)).packPath, original.packPath);
      await damage();
      const again = await snapshot(plain, head, cache);
      assert.equal(again.sha256, reference.sha256, `${what}: same bytes after regeneration`);
      const repaired = await cachedPack(cache);
      assert.equal((await stat(repaired.packPath)).size, size, `${what}: cache repaired`);
      assert.equal(await runGit(['verify-pack', repaired.idxPath]), '', `${what}: cache repaired`);
    }
  });

  void it('survives concurrent cold generations sharing one cache directory', async () => {
    const cache = join(root, 'cache-concurrent');
    const [a, b] = await Promise.all([snapshot(plain, mainline[MAIN_COMMITS - 1], cache), snapshot(repacked, mainline[MAIN_COMMITS - 3], cache)]);
    assert.equal(a.sha256, (await snapshot(plain, mainline[MAIN_COMMITS - 1])).sha256);
    assert.equal(b.sha256, (await snapshot(plain, mainline[MAIN_COMMITS - 3])).sha256);
    assert.equal((await cachedPack(cache)).checkpoint, mainline[2 * K - 1]);
    assert.deepEqual((await readdir(cache)).filter((n) => n.startsWith('.')), [], 'no temp dirs left');
  });
});

/** Inode and mtime: a rewritten file gets a new mtime even if its inode number is reused. */
function identity(info: { ino: number; mtimeMs: number }): string {
  return `${info.ino}@${info.mtimeMs}`;
}

async function flipByte(path: string, at: number): Promise<void> {
  const bytes = await readFile(path);
  bytes[at] ^= 0xff;
  // Pack files are read-only (0444) like git writes them: replace rather than write in place.
  await rm(path);
  await writeFile(path, bytes);
}
