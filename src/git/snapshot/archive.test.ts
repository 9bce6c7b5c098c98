import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readlink, rm, stat, access, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { runGit } from '../command.js';
import { AbortedError, BadRequestError, NotFoundError } from '../../util/errors.js';
import { FILE_MTIME, defaultCompressor, generateSnapshot } from './archive.js';
import { verifyFrameTable } from './frames.js';
import { layerSpans } from './layers.js';
import { SNAPSHOT_LAYER_BASE, snapshotFormatId } from './format.js';
import { createFixtureUpstream, type FixtureUpstream } from './testing/archive-fixture.js';

const exec = promisify(execFile);
const UPSTREAM_URL = 'https://example.com/org/fixture.git';

async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

void describe('generateSnapshot', { timeout: 120_000 }, () => {
  let root: string;
  let fixture: FixtureUpstream;
  let mirror: string;
  let head: string;
  let archive: string;
  let clone: string;
  let result: Awaited<ReturnType<typeof generateSnapshot>>;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'cachew-archive-'));
    fixture = await createFixtureUpstream(root);
    mirror = join(root, 'mirror.git');
    await runGit(['clone', '-q', '--mirror', fixture.bareDir, mirror]);
    head = fixture.commits[fixture.commits.length - 1];
    archive = join(root, 'snap.tar.zst');
    result = await generateSnapshot(
      { gitDir: mirror, commit: head, upstreamUrl: UPSTREAM_URL, defaultBranch: 'main' },
      archive,
    );
    clone = join(root, 'clone');
    await mkdir(clone);
    await exec('tar', ['--zstd', '-xf', archive, '-C', clone], { env: { PATH: process.env.PATH, LC_ALL: 'C' } });
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  void it('returns the digest and size of the bytes it wrote, and leaves no scratch files', async () => {
    assert.equal(result.commit, head);
    assert.equal(result.size, (await stat(archive)).size);
    assert.equal(result.sha256, await sha256File(archive));
    assert.deepEqual((await readdir(root)).sort(), ['clone', 'mirror.git', 'snap.tar.zst', 'upstream.git']);
  });

  void it('has entries relative to the clone root: no top-level directory, no ./ or absolute names', async () => {
    const { stdout } = await exec('tar', ['--zstd', '-tf', archive], { env: { PATH: process.env.PATH, LC_ALL: 'C' } });
    const names = stdout.split('\n').filter((n) => n !== '');
    assert.ok(names.includes('.git/HEAD'));
    assert.ok(names.includes('README.md'));
    for (const name of names) {
      assert.ok(!name.startsWith('/') && !name.startsWith('./') && !name.includes('/../'), name);
    }
    const tops = new Set(names.map((n) => n.split('/')[0]));
    assert.ok(tops.size > 3, `several top-level entries, got ${[...tops].join(', ')}`);
  });

  void it('lays out v10: metadata and every idx first, then the index, every pack before the work tree ends, no frame checksums', async () => {
    const { stdout } = await exec('tar', ['--zstd', '-tf', archive], { env: { PATH: process.env.PATH, LC_ALL: 'C' } });
    const names = stdout.split('\n').filter((n) => n !== '');
    const at = (test: (name: string) => boolean): number[] => names.flatMap((name, i) => (test(name) ? [i] : []));
    const idx = at((n) => n.endsWith('.idx'));
    const packs = at((n) => n.endsWith('.pack'));
    const index = names.indexOf('.git/index');
    const work = at((n) => !n.startsWith('.git/') && n !== '.git');
    assert.ok(packs.length >= 1 && idx.length === packs.length, names.join(','));
    // The client's git-dir-watch.ts relies on this: every idx is seen before any pack is written.
    assert.ok(Math.max(...idx) < Math.min(...packs) && Math.max(...idx) < index);
    // Only `.git` entries precede the index, and the work tree follows it.
    assert.ok(names.slice(0, index).every((n) => n === '.git/' || n.startsWith('.git/')));
    assert.ok(index < Math.min(...work));
    // frame-order.ts: no pack after the work tree's last frame, so never after its last entry.
    assert.ok(Math.max(...packs) < Math.max(...work), names.join('\n'));
    // Frame_Header_Descriptor bit 2 is the content checksum flag (RFC 8878, 3.1.1.1.1).
    const bytes = await readFile(archive);
    for (const frame of await verifyFrameTable(archive)) {
      assert.equal(bytes.readUInt32LE(frame.offset), 0xfd2fb528, 'a zstd frame');
      assert.equal(bytes[frame.offset + 4] & 0x04, 0, `frame at ${frame.offset} carries no checksum`);
    }
  });

  void it('checks out the default branch at the commit, with origin pointing upstream', async () => {
    const git = (args: string[]): Promise<string> => runGit(args, { cwd: clone }).then((s) => s.trim());
    assert.equal(await git(['rev-parse', 'HEAD']), head);
    assert.equal(await git(['symbolic-ref', 'HEAD']), 'refs/heads/main');
    assert.equal(await git(['rev-parse', 'refs/remotes/origin/main']), head);
    assert.equal(await git(['symbolic-ref', 'refs/remotes/origin/HEAD']), 'refs/remotes/origin/main');
    assert.equal(await git(['remote', 'get-url', 'origin']), UPSTREAM_URL);
    assert.equal(await git(['config', 'branch.main.merge']), 'refs/heads/main');
    assert.equal(await git(['rev-parse', '--abbrev-ref', '@{upstream}']), 'origin/main');
    const log = (await git(['log', '--format=%H'])).split('\n');
    assert.deepEqual(log, [...fixture.commits].reverse());
  });

  void it('is a clean, complete repository: fsck, diff-files and status report nothing', async () => {
    const git = (args: string[]): Promise<string> => runGit(args, { cwd: clone });
    await git(['fsck', '--full', '--strict', '--no-dangling']);
    const indexBefore = await stat(join(clone, '.git/index'));
    const indexHash = await sha256File(join(clone, '.git/index'));
    // diff-files does not refresh the index: it lists every entry whose stat data does not match.
    assert.equal(await git(['diff-files']), '');
    assert.equal(await git(['status', '--porcelain', '--untracked-files=all', '--ignored']), '');
    // status found nothing stale or racy, so it had no reason to rewrite the index.
    assert.equal(await sha256File(join(clone, '.git/index')), indexHash);
    assert.equal((await stat(join(clone, '.git/index'))).mtimeMs, indexBefore.mtimeMs);
    assert.equal(await git(['ls-files']), await runGit(['ls-tree', '-r', '--name-only', head], { cwd: mirror }));
  });

  void it('restores modes, symlinks, lock files, nested and unicode paths and the gitlink directory', async () => {
    assert.ok(((await stat(join(clone, 'run.sh'))).mode & 0o100) !== 0, 'run.sh is executable');
    assert.equal((await stat(join(clone, 'README.md'))).mode & 0o111, 0, 'README.md is not executable');
    assert.equal(await readlink(join(clone, 'link-to-readme')), 'README.md');
    assert.match(await readFile(join(clone, 'yarn.lock'), 'utf8'), /yarn lockfile/);
    assert.match(await readFile(join(clone, 'Cargo.lock'), 'utf8'), /fixture/);
    assert.equal(await readFile(join(clone, 'nested/a/b/c/deep.txt'), 'utf8'), 'deep\n');
    assert.equal(await readFile(join(clone, 'dir with space/ünïcødé ✓ file.txt'), 'utf8'), 'unicode\n');
    assert.equal(await readFile(join(clone, 'empty-ish.txt'), 'utf8'), '\n');
    assert.equal(await exists(join(clone, 'empty.txt')), false, 'a file deleted in history is absent');
    const long = join(clone, 'l'.repeat(60), 'o'.repeat(60), 'n'.repeat(90) + '.txt');
    assert.equal(await readFile(long, 'utf8'), 'long path\n');
    assert.ok((await stat(join(clone, 'vendor/sub'))).isDirectory());
    assert.deepEqual(await readdir(join(clone, 'vendor/sub')), []);
    // Work tree files carry the fixed FILE_MTIME (stable frames); the index is newer than that.
    assert.equal((await stat(join(clone, 'README.md'))).mtimeMs, FILE_MTIME * 1000);
    const commitTime = Number((await runGit(['log', '-1', '--format=%ct', head], { cwd: mirror })).trim());
    assert.equal((await stat(join(clone, '.git/index'))).mtimeMs, (Math.max(commitTime, FILE_MTIME) + 1) * 1000);
  });

  void it('carries the layout of a clone: no hooks or machine-specific files, a fixed reflog', async () => {
    const gitDir = join(clone, '.git');
    for (const name of ['FETCH_HEAD', 'ORIG_HEAD']) {
      assert.equal(await exists(join(gitDir, name)), false, name);
    }
    assert.deepEqual(await readdir(join(gitDir, 'hooks')), [], 'hooks/ exists and is empty');
    assert.deepEqual(await readdir(join(gitDir, 'branches')), []);
    assert.match(await readFile(join(gitDir, 'description'), 'utf8'), /^Unnamed repository/);
    assert.match(await readFile(join(gitDir, 'info/exclude'), 'utf8'), /^# git ls-files --others --exclude-from=\.git\/info\/exclude\n/);
    const time = (await runGit(['log', '-1', '--format=%ct', head], { cwd: mirror })).trim();
    const entry = `${'0'.repeat(40)} ${head} cachew <cachew@snapshot.invalid> ${time} +0000\tclone: from ${UPSTREAM_URL}\n`;
    for (const log of ['logs/HEAD', 'logs/refs/heads/main', 'logs/refs/remotes/origin/HEAD']) {
      assert.equal(await readFile(join(gitDir, log), 'utf8'), entry, log);
    }
    const reflog = await runGit(['reflog', '-1', '--format=%gs'], { cwd: clone });
    assert.equal(reflog.trim(), `clone: from ${UPSTREAM_URL}`);
    const packs = await readdir(join(gitDir, 'objects/pack'));
    // One pack (+ idx) per layer: the fixture's head is at first-parent depth 2, so (0, 1] and (1, 2].
    const depth = Number((await runGit(['rev-list', '--first-parent', '--count', head], { cwd: mirror })).trim());
    assert.equal(packs.length, 2 * layerSpans(depth, SNAPSHOT_LAYER_BASE).length);
    assert.ok(packs.every((p) => /^pack-[0-9a-f]{40}\.(pack|idx)$/.test(p)), packs.join(','));
    const config = await readFile(join(gitDir, 'config'), 'utf8');
    assert.ok(!config.includes(root), 'config mentions no local path');
  });

  void it('rejects malformed and unknown commits and removes the output', async () => {
    const out = join(root, 'bad.tar.zst');
    const src = { gitDir: mirror, upstreamUrl: UPSTREAM_URL, defaultBranch: 'main' };
    await assert.rejects(generateSnapshot({ ...src, commit: 'abc' }, out), BadRequestError);
    await assert.rejects(generateSnapshot({ ...src, commit: 'a'.repeat(64) }, out), BadRequestError);
    await assert.rejects(generateSnapshot({ ...src, commit: head, defaultBranch: 'bad..name' }, out), BadRequestError);
    await assert.rejects(generateSnapshot({ ...src, commit: head, upstreamUrl: 'https://x\n[core]' }, out), BadRequestError);
    await assert.rejects(generateSnapshot({ ...src, commit: 'b'.repeat(40) }, out), NotFoundError);
    assert.equal(await exists(out), false);
    assert.deepEqual((await readdir(root)).filter((n) => n.startsWith('.cachew-pack-')), []);
  });

  void it('stops on abort, kills its helpers and removes the partial file', async () => {
    const out = join(root, 'aborted.tar.zst');
    const controller = new AbortController();
    const pending = generateSnapshot(
      { gitDir: mirror, commit: head, upstreamUrl: UPSTREAM_URL, defaultBranch: 'main' },
      out,
      { signal: controller.signal },
    );
    setImmediate(() => controller.abort());
    await assert.rejects(pending, AbortedError);
    assert.equal(await exists(out), false);
    assert.deepEqual((await readdir(root)).filter((n) => n.startsWith('.cachew-pack-')), []);
  });

  void it('stops on abort once streaming has begun, and cleans up', async () => {
    const out = join(root, 'aborted-late.tar.zst');
    const controller = new AbortController();
    // The debug line "snapshot pack ready" is written just before the tar stream starts.
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        if (chunk.toString().includes('snapshot pack ready')) controller.abort();
        callback();
      },
    });
    const logger = pino({ level: 'debug' }, sink);
    await assert.rejects(
      generateSnapshot({ gitDir: mirror, commit: head, upstreamUrl: UPSTREAM_URL, defaultBranch: 'main' }, out, {
        signal: controller.signal,
        logger,
      }),
      AbortedError,
    );
    assert.ok(controller.signal.aborted, 'the abort came from the pack-ready log line');
    assert.equal(await exists(out), false);
    assert.deepEqual((await readdir(root)).filter((n) => n.startsWith('.cachew-pack-')), []);
  });

  void it('a failure while packing stops the work tree half already running: no cat-file, no files left', async () => {
    const out = join(root, 'failed.tar.zst');
    const catFiles = async (): Promise<number[]> => {
      const found: number[] = [];
      for (const pid of (await readdir('/proc')).filter((n) => /^\d+$/.test(n))) {
        const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '');
        if (cmdline.includes('cat-file') && cwd === mirror) found.push(Number(pid));
      }
      return found;
    };
    const sharedLayers = {
      // The layer "fetch" fails once the work tree half has started its cat-file (bounded wait).
      fetch: async (): Promise<undefined> => {
        for (let i = 0; i < 250 && (await catFiles()).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
        throw new Error('shared cache exploded');
      },
      publish: async (): Promise<void> => undefined,
    };
    await assert.rejects(
      generateSnapshot({ gitDir: mirror, commit: head, upstreamUrl: UPSTREAM_URL, defaultBranch: 'main' }, out, { sharedLayers }),
      /shared cache exploded/,
    );
    assert.deepEqual(await catFiles(), [], 'no cat-file outlives the generation');
    assert.equal(await exists(out), false);
    assert.deepEqual((await readdir(root)).filter((n) => n.startsWith('.cachew-pack-')), []);
  });

  void it('with the zstd CLI (no addon): the same tar stream in other frames, read by stock tar', async () => {
    const out = join(root, 'cli.tar.zst');
    const cli = await generateSnapshot({ gitDir: mirror, commit: head, upstreamUrl: UPSTREAM_URL, defaultBranch: 'main' }, out, { compressor: 'cli' });
    try {
      assert.deepEqual(await verifyFrameTable(out), cli.frames);
      assert.deepEqual(cli.frames.map((f) => f.size), result.frames.map((f) => f.size), 'the same cuts');
      const tarOf = async (path: string): Promise<string> => (await exec('sh', ['-c', `zstd -dc '${path}' | sha256sum`])).stdout.split(' ')[0];
      assert.equal(await tarOf(out), await tarOf(archive), 'the same tar bytes');
      if (defaultCompressor() === 'native') assert.notEqual(cli.sha256, result.sha256, 'other zstd bytes, hence another format id');
      const listed = await exec('tar', ['--zstd', '-tf', out], { env: { PATH: process.env.PATH, LC_ALL: 'C' } });
      assert.ok(listed.stdout.split('\n').includes('README.md'));
    } finally {
      await rm(out, { force: true });
    }
  });

  void it('names its format with the tool versions', async () => {
    const id = await snapshotFormatId();
    assert.match(id, defaultCompressor() === 'native' ? /^cachew-snapshot-v10;libzstd-\d+\.\d+\.\d+;git-\d+\.\d+/ : /^cachew-snapshot-v10;zstd-\d+\.\d+\.\d+;git-\d+\.\d+/);
    assert.equal(await snapshotFormatId(), id);
  });
});
