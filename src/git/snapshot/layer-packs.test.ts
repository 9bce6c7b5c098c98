/**
 * Layered packs (layer-packs.ts, layer-build.ts, layer-cache.ts) and stable frames (frames.ts): the
 * plan follows the layer rule on first-parent depth, snapshot bytes stay a pure function of the commit
 * whether layers are built, taken from a warm cache, prepared ahead, or rebuilt after the cache was
 * damaged, on independent mirrors; the frame table matches the archive; stock tar and zstd read it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanGitEnv, runGit } from '../command.js';
import { pino } from 'pino';
import type { Logger } from '../../util/logger.js';
import { generateSnapshot, type SnapshotResult } from './archive.js';
import { SNAPSHOT_LAYER_BASE } from './format.js';
import { verifyFrameTable } from './frames.js';
import { buildLayer, partOf } from './layer-build.js';
import { planLayers, prepareNextLayers } from './layer-packs.js';
import { layerSpans } from './layers.js';
import { pseudoText } from './testing/archive-fixture.js';

const URL = 'https://example.com/org/layers.git';
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

void describe('layered packs and frames', { timeout: 280_000 }, () => {
  let root: string;
  let upstream: string;
  let plain: string;
  let repacked: string;
  /** main's first-parent chain, oldest first: mainline[d - 1] has depth d. */
  let mainline: string[];
  let outputs = 0;

  async function snapshot(mirror: string, commit: string, layerCacheDir?: string, logger?: Logger): Promise<SnapshotResult> {
    const dir = join(root, `out-${outputs++}`);
    await mkdir(dir);
    try {
      return await generateSnapshot({ gitDir: mirror, commit, upstreamUrl: URL, defaultBranch: 'main' }, join(dir, 'snap.tar.zst'), { layerCacheDir, logger });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** The layer directories in `cacheDir` (key → pack paths). */
  async function cachedLayers(cacheDir: string): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const name of (await readdir(cacheDir)).filter((n) => !n.startsWith('.'))) {
      out.set(name, (await readdir(join(cacheDir, name))).filter((f) => f.endsWith('.pack')).map((f) => join(cacheDir, name, f)));
    }
    return out;
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'cachew-layers-'));
    upstream = join(root, 'upstream.git');
    await buildUpstream(upstream);
    plain = join(root, 'plain.git');
    await runGit(['clone', '-q', '--mirror', upstream, plain]);
    // An independent mirror with another pack layout, bitmaps and config that must not leak into bytes.
    repacked = join(root, 'repacked.git');
    await runGit(['clone', '-q', '--no-local', '--mirror', upstream, repacked]);
    await runGit(['repack', '-q', '-a', '-d', '-f', '-b', '--window=250', '--depth=5'], { cwd: repacked });
    for (const [key, value] of [['pack.threads', '4'], ['pack.compression', '9'], ['pack.window', '3'], ['pack.useBitmaps', 'true'], ['pack.useSparse', 'true']]) {
      await runGit(['config', key, value], { cwd: repacked });
    }
    mainline = (await runGit(['rev-list', '--first-parent', '--reverse', 'main'], { cwd: plain })).trim().split('\n');
    assert.equal(mainline.length, MAIN_COMMITS);
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  void it('plans the layers by first-parent depth alone', async () => {
    assert.equal(SNAPSHOT_LAYER_BASE, 8);
    assert.deepEqual(await planLayers(plain, mainline[0]), { depth: 1, layers: [{ key: `root-${mainline[0]}`, from: undefined, to: mainline[0], fromDepth: 0, toDepth: 1 }] });
    // The merge's side commits are reachable but not counted: depth 140, 139 = 2·64 + 1·8 + 3.
    const head = await planLayers(repacked, mainline[MAIN_COMMITS - 1]);
    assert.equal(head.depth, MAIN_COMMITS);
    assert.deepEqual(
      head.layers.map((l) => [l.fromDepth, l.toDepth]),
      layerSpans(MAIN_COMMITS, 8).map((s) => [s.from, s.to]),
    );
    assert.deepEqual(head.layers.map((l) => l.to), [128, 136, 139, 140].map((d) => mainline[d - 1]));
    assert.deepEqual(head.layers.map((l) => l.from), [undefined, 128, 136, 139].map((d) => (d === undefined ? undefined : mainline[d - 1])));
  });

  void it('gives the same bytes from independent mirrors, with a cold cache, a warm cache and none', async () => {
    const head = mainline[MAIN_COMMITS - 1];
    const cache = join(root, 'cache-determinism');
    const none = await snapshot(plain, head);
    const otherMirror = await snapshot(repacked, head);
    const cold = await snapshot(plain, head, cache);
    const layers = await cachedLayers(cache);
    assert.ok(layers.has(`root-${mainline[127]}`), [...layers.keys()].join(', '));
    const firstPack = layers.get(`root-${mainline[127]}`)?.[0] as string;
    const before = identity(await stat(firstPack));
    const sources: string[] = [];
    const warm = await snapshot(repacked, head, cache, recordingLogger(sources));
    assert.deepEqual(sources, ['local', 'local', 'local', 'local'], 'every layer came from the cache');
    assert.equal(identity(await stat(firstPack)), before, 'the warm run used the cached pack rather than rewriting it');
    assert.equal(otherMirror.sha256, none.sha256);
    assert.equal(cold.sha256, none.sha256);
    assert.equal(warm.sha256, none.sha256);
    assert.deepEqual(warm.frames, none.frames);
  });

  void it('after preparing, the next commit packs only its own top layer, with the same bytes', async () => {
    const cache = join(root, 'cache-prepare');
    // Depth 129: its snapshot needs (0, 128] and (128, 129]; depth 128 carries (0, 64], (64, 120], (120, 127] + top.
    const at128 = mainline[127];
    await snapshot(plain, at128, cache);
    assert.ok(!(await cachedLayers(cache)).has(`root-${at128}`));
    const scratch = join(root, 'prepare-scratch');
    await mkdir(scratch);
    await prepareNextLayers(plain, at128, scratch, { layerCacheDir: cache });
    await rm(scratch, { recursive: true, force: true });
    assert.ok((await cachedLayers(cache)).has(`root-${at128}`), 'the merged layer was prepared');
    const sources: string[] = [];
    const next = await snapshot(repacked, mainline[128], cache, recordingLogger(sources));
    assert.deepEqual(sources, ['local', 'built']);
    assert.equal(next.sha256, (await snapshot(plain, mainline[128])).sha256);
    // The cache holds the layers of depth 129 and of the next commit's (130, besides its top), nothing else.
    const expected = new Set([`root-${at128}`, `${at128}-${mainline[128]}`]);
    assert.deepEqual(new Set((await cachedLayers(cache)).keys()), expected);
  });

  void it('writes a frame table that matches the archive, read by stock zstd and tar', async () => {
    for (const depth of [MAIN_COMMITS, 129, 1]) {
      const commit = mainline[depth - 1];
      const dir = join(root, `out-${outputs++}`);
      const clone = join(dir, 'clone');
      await mkdir(clone, { recursive: true });
      try {
        const archive = join(dir, 'snap.tar.zst');
        const result = await generateSnapshot({ gitDir: plain, commit, upstreamUrl: URL, defaultBranch: 'main' }, archive, { layerCacheDir: join(root, 'cache-extract') });
        const frames = await verifyFrameTable(archive);
        assert.deepEqual(frames, result.frames);
        // Small segments share frames (MIN_FRAME_WEIGHT); at depth 140 the first layer is big enough to be its own.
        assert.ok(frames.length >= (depth === MAIN_COMMITS ? 2 : 1), `${frames.length} frames`);
        // Every frame alone is a complete zstd frame of the recorded tar length.
        for (const frame of frames) assert.equal(await decodedLength(archive, frame.offset, frame.length), frame.size);
        const total = await run('sh', ['-c', `zstd -d -q -c < '${archive}' | wc -c`]);
        assert.equal(Number(total.trim()), frames.reduce((n, f) => n + f.size, 0));
        const tar = spawn('tar', ['--zstd', '-xf', archive, '-C', clone], { stdio: 'ignore' });
        const [code] = (await once(tar, 'close')) as [number | null];
        assert.equal(code, 0);
        const packFiles = (await readdir(join(clone, '.git/objects/pack'))).filter((f) => f.endsWith('.pack'));
        assert.equal(packFiles.length, layerSpans(depth, SNAPSHOT_LAYER_BASE).length);
        await runGit(['fsck', '--full', '--strict', '--no-dangling'], { cwd: clone });
        assert.equal(await runGit(['status', '--porcelain'], { cwd: clone }), '');
        assert.equal((await runGit(['rev-parse', 'HEAD'], { cwd: clone })).trim(), commit);
        const expected = (await runGit(['rev-list', '--count', commit], { cwd: upstream })).trim();
        assert.equal((await runGit(['rev-list', '--count', 'HEAD'], { cwd: clone })).trim(), expected);
        if (depth === MAIN_COMMITS) assert.ok(Number(expected) > MAIN_COMMITS, 'the side branch is part of the history');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
  });

  void it('shares the frames of unchanged layers and work tree groups between consecutive snapshots', async () => {
    const a = await snapshot(plain, mainline[MAIN_COMMITS - 2]);
    const b = await snapshot(plain, mainline[MAIN_COMMITS - 1]);
    const before = new Set(a.frames.map((f) => f.sha256));
    const shared = b.frames.filter((f) => before.has(f.sha256));
    // Depth 139 → 140: layers (0,128] and (128,136] are common; the work tree changed in two files.
    assert.ok(shared.length >= 2, `${shared.length} of ${b.frames.length} frames shared`);
    assert.ok(shared.length < b.frames.length);
  });

  void it('splits a big layer into parts deterministically, and the parts make a complete pack set', async () => {
    const limit = <T>(work: () => Promise<T>): Promise<T> => work();
    const layers: string[][] = [];
    for (const mirror of [plain, repacked]) {
      const dir = join(root, `parts-${outputs++}`);
      await mkdir(dir);
      const packs = await buildLayer(mirror, undefined, mainline[MAIN_COMMITS - 1], dir, { limit, objectsPerPart: 100 });
      assert.ok(packs.length > 1, `${packs.length} parts`);
      layers.push(packs.map((p) => p.hash));
      const objects = new Set<string>();
      for (const pack of packs) {
        const listed = await runGit(['show-index'], { input: await readFile(pack.idxPath) });
        for (const line of listed.trim().split('\n')) objects.add(line.split(' ')[1]);
      }
      const all = (await runGit(['rev-list', '--objects', mainline[MAIN_COMMITS - 1]], { cwd: mirror })).trim().split('\n');
      assert.equal(objects.size, all.length, 'every object in exactly one part');
    }
    assert.deepEqual(layers[0], layers[1]);
    assert.equal(partOf(Buffer.from('0123456789012345678901234567890123456789'), 4), 0, 'commits go to part 0');
    assert.equal(partOf(Buffer.from('0123456789012345678901234567890123456789 a/b/name.txt'), 4), partOf(Buffer.from('9876543210987654321098765432109876543210 c/name.txt'), 4));
  });

  void it('detects a damaged cached layer and regenerates identical bytes', async () => {
    const head = mainline[MAIN_COMMITS - 1];
    const reference = await snapshot(repacked, head);
    const cache = join(root, 'cache-damage');
    assert.equal((await snapshot(plain, head, cache)).sha256, reference.sha256);
    const key = `root-${mainline[127]}`;
    const packPath = (await cachedLayers(cache)).get(key)?.[0] as string;
    const idxPath = packPath.replace(/\.pack$/, '.idx');
    const size = (await stat(packPath)).size;
    const damages: Array<[string, () => Promise<void>]> = [
      ['truncated pack', () => truncate(packPath, size - 100)],
      ['flipped byte mid-pack', () => flipByte(packPath, Math.floor(size / 2))],
      ['flipped byte in idx', () => flipByte(idxPath, 2000)],
      ['garbage manifest', () => writeFile(join(cache, key, 'layer.json'), '{"key":')],
      ['missing idx', () => rm(idxPath)],
    ];
    for (const [what, damage] of damages) {
      assert.equal((await cachedLayers(cache)).get(key)?.[0], packPath);
      await damage();
      const sources: string[] = [];
      const again = await snapshot(plain, head, cache, recordingLogger(sources));
      assert.equal(sources[0], 'built', `${what}: the damaged layer was rebuilt`);
      assert.equal(again.sha256, reference.sha256, `${what}: same bytes after regeneration`);
      assert.equal((await stat(packPath)).size, size, `${what}: cache repaired`);
      assert.equal(await runGit(['verify-pack', idxPath]), '', `${what}: cache repaired`);
    }
  });

  void it('survives concurrent cold generations sharing one cache directory', async () => {
    const cache = join(root, 'cache-concurrent');
    const [a, b] = await Promise.all([snapshot(plain, mainline[MAIN_COMMITS - 1], cache), snapshot(repacked, mainline[MAIN_COMMITS - 3], cache)]);
    assert.equal(a.sha256, (await snapshot(plain, mainline[MAIN_COMMITS - 1])).sha256);
    assert.equal(b.sha256, (await snapshot(plain, mainline[MAIN_COMMITS - 3])).sha256);
    assert.deepEqual((await readdir(cache)).filter((n) => n.startsWith('.')), [], 'no temp dirs left');
  });
});

/** A debug logger that records the `source` of every "layer ready" line, in layer order. */
function recordingLogger(sources: string[]): Logger {
  const ready: Array<[number, string]> = [];
  return pino(
    { level: 'debug', base: undefined },
    {
      write(line: string) {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (record.msg !== 'layer ready') return;
        ready.push([Number(String(record.layer).split('..')[0]), String(record.source)]);
        sources.splice(0, sources.length, ...ready.sort((x, y) => x[0] - y[0]).map(([, s]) => s));
      },
    },
  );
}

/** Length of the tar bytes one frame decodes to, by stock zstd. */
async function decodedLength(archive: string, offset: number, length: number): Promise<number> {
  const child = spawn('zstd', ['-d', '-q', '-c'], { stdio: ['pipe', 'pipe', 'ignore'] });
  let total = 0;
  child.stdout.on('data', (chunk: Buffer) => (total += chunk.length));
  createReadStream(archive, { start: offset, end: offset + length - 1 }).pipe(child.stdin);
  const [code] = (await once(child, 'close')) as [number | null];
  assert.equal(code, 0);
  return total;
}

async function run(command: string, args: string[]): Promise<string> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  const [code] = (await once(child, 'close')) as [number | null];
  assert.equal(code, 0, `${command} failed`);
  return out;
}

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
