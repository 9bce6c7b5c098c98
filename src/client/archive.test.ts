import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pack as tarPack } from 'tar-stream';
import { entryPathSegments, extractTar, extractZstd } from './archive.js';
import { TAR_END, encodeTarHeader, tarPadding } from '../git/snapshot/tar-writer.js';
import { CorruptArchiveError, UnsafeArchiveError, WriteFailedError } from './errors.js';

interface Spec {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'fifo';
  body?: string;
  linkname?: string;
  mode?: number;
  mtime?: Date;
}

/** A tar archive as a Node Readable, built in memory with tar-stream. */
async function tarOf(entries: Spec[]): Promise<Readable> {
  const pack = tarPack();
  for (const entry of entries) {
    const header = { name: entry.name, type: entry.type ?? 'file', linkname: entry.linkname, mode: entry.mode ?? 0o644, mtime: entry.mtime ?? new Date(1_000_000_000_000) };
    if (header.type === 'file') pack.entry(header, entry.body ?? '');
    else pack.entry(header).end(undefined);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack as unknown as AsyncIterable<Buffer>) chunks.push(chunk);
  return Readable.from([Buffer.concat(chunks)]);
}

let root: string;
let serial = 0;
before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-archive-'));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const dir = path.join(root, `x${serial++}`, 'target');
  await fs.mkdir(dir, { recursive: true });
  return dir;
}

/** Names are binary strings (one char per byte); these test names are ASCII. */
const segments = (name: string): string[] => entryPathSegments(name);

void describe('entryPathSegments', () => {
  void it('normalises ./, empty and . components', () => {
    assert.deepEqual(segments('./a//b/'), ['a', 'b']);
    assert.deepEqual(segments('./'), []);
    assert.deepEqual(segments('a/./b'), ['a', 'b']);
    assert.deepEqual(segments('..foo/b..'), ['..foo', 'b..']);
    assert.deepEqual(segments('.git/HEAD'), ['.git', 'HEAD']);
  });

  void it('rejects absolute names, .. components and NUL bytes', () => {
    for (const bad of ['/etc/passwd', '../x', 'a/../../x', 'a/..', 'a\0b']) {
      assert.throws(() => segments(bad), UnsafeArchiveError, bad);
    }
  });

  void it('takes C: and other drive-like names as plain names on POSIX', { skip: process.platform === 'win32' }, () => {
    assert.deepEqual(segments('C:'), ['C:']);
    assert.deepEqual(segments('c:x/y'), ['c:x', 'y']);
  });

  void it('keeps names that are not UTF-8 byte for byte', () => {
    const name = Buffer.from([0x61, 0xff, 0xfe, 0x2f, 0xe9]).toString('latin1');
    assert.deepEqual(
      entryPathSegments(name).map((segment) => [...Buffer.from(segment, 'latin1')]),
      [[0x61, 0xff, 0xfe], [0xe9]],
    );
  });
});

void describe('extractTar', () => {
  void it('creates files, dirs and symlinks with modes and mtimes from the headers', async () => {
    const dir = await freshDir();
    const fileTime = new Date('2020-01-02T03:04:05Z');
    const dirTime = new Date('2019-05-06T07:08:09Z');
    const stats = await extractTar(
      await tarOf([
        { name: './', type: 'directory', mode: 0o755 },
        { name: './bin/', type: 'directory', mode: 0o750, mtime: dirTime },
        { name: './bin/run', body: '#!/bin/sh\n', mode: 0o755, mtime: fileTime },
        { name: './implicit/parent/file.txt', body: 'hello' },
        { name: './abs-link', type: 'symlink', linkname: '/etc/passwd' },
        { name: './rel-link', type: 'symlink', linkname: 'bin/run' },
      ]),
      dir,
    );
    assert.equal(stats.files, 2);
    assert.equal(stats.bytes, '#!/bin/sh\n'.length + 5);
    const run = await fs.stat(path.join(dir, 'bin/run'));
    assert.equal(run.mode & 0o777, 0o755);
    assert.equal(run.mtime.getTime(), fileTime.getTime());
    const bin = await fs.stat(path.join(dir, 'bin'));
    assert.equal(bin.mode & 0o777, 0o750);
    assert.equal(bin.mtime.getTime(), dirTime.getTime(), 'directory mtime set after its children');
    assert.equal(await fs.readFile(path.join(dir, 'implicit/parent/file.txt'), 'utf8'), 'hello');
    // Symlink targets are written verbatim, never followed.
    assert.equal(await fs.readlink(path.join(dir, 'abs-link')), '/etc/passwd');
    assert.equal(await fs.readlink(path.join(dir, 'rel-link')), 'bin/run');
    // Every file and symlink's final stat data, recorded by the writer under its normalised path.
    assert.equal(stats.statTable.size, 4);
    for (const name of ['bin/run', 'implicit/parent/file.txt', 'abs-link', 'rel-link']) {
      const st = await fs.lstat(path.join(dir, name), { bigint: true });
      const fields = stats.statTable.fields(name);
      assert.ok(fields !== undefined, name);
      assert.equal(fields.readUInt32BE(20), Number(st.ino & 0xffffffffn), `${name}: inode`);
      assert.equal(fields.readUInt32BE(0), Number(st.ctimeNs / 1_000_000_000n), `${name}: ctime after the mtime was set`);
      assert.equal(fields.readUInt32BE(8), Number(st.mtimeNs / 1_000_000_000n), `${name}: mtime`);
    }
  });

  const rejected: Array<[string, Spec[], RegExp]> = [
    ['a file through a symlink', [{ name: 'l', type: 'symlink', linkname: '..' }, { name: 'l/evil', body: 'x' }], /through symlink "l"/],
    ['a directory through a symlink', [{ name: 'l', type: 'symlink', linkname: '/tmp' }, { name: 'l/sub/', type: 'directory' }], /through symlink/],
    ['a deep path through a symlink', [{ name: 'a/', type: 'directory' }, { name: 'a/l', type: 'symlink', linkname: '/' }, { name: 'a/l/b/c', body: 'x' }], /through symlink "a\/l"/],
    ['a file replacing a symlink', [{ name: 'l', type: 'symlink', linkname: '/tmp/x' }, { name: 'l', body: 'x' }], /duplicate/],
    ['a path through a regular file', [{ name: 'f', body: 'x' }, { name: 'f/g', body: 'y' }], /through file/],
    ['a duplicate file', [{ name: 'f', body: 'x' }, { name: './f', body: 'y' }], /duplicate/],
    ['a hardlink', [{ name: 'f', body: 'x' }, { name: 'g', type: 'link', linkname: 'f' }], /hardlink/],
    ['a character device', [{ name: 'null', type: 'character-device' }], /character-device/],
    ['a fifo', [{ name: 'p', type: 'fifo' }], /fifo/],
    ['a ../ name', [{ name: '../up', body: 'x' }], /\.\./],
    ['an absolute name', [{ name: '/tmp/abs', body: 'x' }], /absolute/],
  ];
  for (const [name, entries, message] of rejected) {
    void it(`rejects ${name}`, async () => {
      const dir = await freshDir();
      await assert.rejects(extractTar(await tarOf(entries), dir), (err: unknown) => {
        assert.ok(err instanceof UnsafeArchiveError, String(err));
        assert.match(err.message, message);
        return true;
      });
      // Nothing was written next to the target.
      assert.deepEqual(await fs.readdir(path.dirname(dir)), ['target']);
    });
  }

  void it('extracts every name git accepts, byte for byte (non-UTF-8, C:, long, odd characters)', async () => {
    const dir = await freshDir();
    const mtime = 1_600_000_000;
    const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2e, 0x74, 0x78, 0x74]); // "café.txt" in Latin-1
    const names = [latin1, Buffer.from('C:'), Buffer.from('back\\slash and\nnewline'), Buffer.from(`${'p'.repeat(170)}/${'q'.repeat(120)}`)];
    const parts: Buffer[] = [];
    names.forEach((name, i) => {
      const content = Buffer.from(`file ${i}\n`);
      parts.push(encodeTarHeader({ path: name, type: 'file', mode: 0o644, size: content.length, mtime }), content, tarPadding(content.length));
    });
    const target = 't'.repeat(150);
    parts.push(encodeTarHeader({ path: Buffer.concat([Buffer.from('l'), latin1]), type: 'symlink', mode: 0o777, size: 0, mtime, linkTarget: target }), TAR_END);
    const stats = await extractTar(Readable.from([Buffer.concat(parts)]), dir);
    assert.equal(stats.files, names.length);
    const listed = (await fs.readdir(dir, { encoding: 'buffer' })).map((name) => name.toString('latin1')).sort();
    assert.deepEqual(listed, [...names.slice(0, 3).map((n) => n.toString('latin1')), 'p'.repeat(170), `l${latin1.toString('latin1')}`].sort());
    for (const [i, name] of names.entries()) {
      assert.equal(await fs.readFile(Buffer.concat([Buffer.from(`${dir}/`), name]), 'utf8'), `file ${i}\n`);
    }
    assert.equal(await fs.readlink(Buffer.concat([Buffer.from(`${dir}/l`), latin1]), 'utf8'), target);
    const stat = await fs.stat(Buffer.concat([Buffer.from(`${dir}/`), latin1]));
    assert.equal(stat.mtime.getTime(), mtime * 1000);
  });

  void it("reports the system's own failure to write in its words", async () => {
    const missing = path.join(await freshDir(), 'does-not-exist');
    await assert.rejects(extractTar(await tarOf([{ name: 'f', body: 'x' }]), missing), (err: unknown) => {
      assert.ok(err instanceof WriteFailedError, String(err));
      assert.match(err.message, /no such file or directory/i);
      return true;
    });
  });

  void it('fails on a truncated archive', async () => {
    const dir = await freshDir();
    const whole = await tarOf([{ name: 'big', body: 'y'.repeat(10_000) }]);
    const bytes: Buffer[] = [];
    for await (const chunk of whole) bytes.push(chunk as Buffer);
    const truncated = Buffer.concat(bytes).subarray(0, 5_000);
    await assert.rejects(extractTar(Readable.from([truncated]), dir));
  });

  void it('stops when aborted', async () => {
    const dir = await freshDir();
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(extractTar(await tarOf([{ name: 'f', body: 'x' }]), dir, { signal: controller.signal }), /abort/i);
  });
});

void describe('extractTar: when .git is complete', () => {
  void it('reports once that .git is written, with every .git file on disk, while the work tree follows', async () => {
    const dir = await freshDir();
    const head = 'ref: refs/heads/main\n';
    const big = 'x'.repeat(300_000);
    const seen: Array<{ head: string; pack: number }> = [];
    await extractTar(
      await tarOf([
        { name: '.git/', type: 'directory' },
        { name: '.git/HEAD', body: head },
        { name: '.git/objects/pack/pack-1.idx', body: 'i' },
        { name: '.git/objects/pack/pack-1.pack', body: big },
        { name: 'a.txt', body: 'a' },
        { name: 'src/', type: 'directory' },
        { name: 'src/b.txt', body: 'b' },
      ]),
      dir,
      {
        onGitDir: () => {
          // Synchronous reads: this runs on the main thread while the extraction thread goes on.
          seen.push({ head: readFileSync(path.join(dir, '.git/HEAD'), 'utf8'), pack: statSync(path.join(dir, '.git/objects/pack/pack-1.pack')).size });
        },
      },
    );
    assert.deepEqual(seen, [{ head, pack: big.length }]);
  });

  /** A v10 layout: metadata and both idx first, the index, then each pack among work tree files. */
  const v10Layout = (pack: string): Spec[] => [
    { name: '.git/', type: 'directory' },
    { name: '.git/HEAD', body: 'ref: refs/heads/main\n' },
    { name: '.git/objects/pack/pack-1.idx', body: 'i' },
    { name: '.git/objects/pack/pack-2.idx', body: 'j' },
    { name: '.git/index', body: 'DIRC' },
    { name: 'a.txt', body: 'a' },
    { name: '.git/objects/pack/pack-1.pack', body: pack },
    { name: 'b.txt', body: 'b' },
    { name: '.git/objects/pack/pack-2.pack', body: pack },
    { name: 'c.txt', body: 'c' },
  ];

  void it('with packs among the work tree (format v10), reports once the last pack named by an idx is written', async () => {
    const dir = await freshDir();
    const big = 'p'.repeat(300_000);
    const seen: number[][] = [];
    const packSizes = (): number[] =>
      ['pack-1', 'pack-2'].map((name) => {
        try {
          return statSync(path.join(dir, `.git/objects/pack/${name}.pack`)).size;
        } catch {
          return -1;
        }
      });
    await extractTar(await tarOf(v10Layout(big)), dir, { onGitDir: () => seen.push(packSizes()) });
    assert.deepEqual(seen, [[big.length, big.length]]);
  });

  void it('does not report while a pack named by an idx is missing', async () => {
    let calls = 0;
    const withoutLastPack = v10Layout('p').filter((entry) => entry.name !== '.git/objects/pack/pack-2.pack');
    await extractTar(await tarOf(withoutLastPack), await freshDir(), { onGitDir: () => calls++ });
    assert.equal(calls, 0);
  });

  void it('with .git in one piece in any inner order (a tar of a clone), reports at the first work tree entry', async () => {
    const dir = await freshDir();
    const seen: string[] = [];
    const entries: Spec[] = [
      { name: '.git/', type: 'directory' },
      { name: '.git/objects/pack/pack-1.pack', body: 'p' },
      { name: '.git/objects/pack/pack-1.idx', body: 'i' },
      { name: '.git/index', body: 'DIRC' },
      { name: '.git/info/', type: 'directory' },
      { name: '.git/info/exclude', body: '# exclude\n' },
      { name: 'a.txt', body: 'a' },
    ];
    await extractTar(await tarOf(entries), dir, { onGitDir: () => seen.push(readFileSync(path.join(dir, '.git/info/exclude'), 'utf8')) });
    assert.deepEqual(seen, ['# exclude\n']);
  });

  void it('does not report for an archive without .git, nor for one that is only .git', async () => {
    let calls = 0;
    await extractTar(await tarOf([{ name: 'a.txt', body: 'a' }, { name: '.gitignore', body: 'x' }]), await freshDir(), { onGitDir: () => calls++ });
    await extractTar(await tarOf([{ name: '.git/', type: 'directory' }, { name: '.git/HEAD', body: 'x' }]), await freshDir(), { onGitDir: () => calls++ });
    assert.equal(calls, 0);
  });
});

void describe('extractZstd', () => {
  /** The tar of `entries`, compressed by the zstd CLI in two frames (as snapshots are framed). */
  async function zstdTarOf(entries: Spec[]): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of await tarOf(entries)) chunks.push(chunk as Buffer);
    const tar = Buffer.concat(chunks);
    const half = Math.floor(tar.length / 2);
    const frame = (bytes: Buffer): Buffer => execFileSync('zstd', ['-q', '-c'], { input: bytes });
    return Buffer.concat([frame(tar.subarray(0, half)), frame(tar.subarray(half))]);
  }
  const ENTRIES: Spec[] = [
    { name: 'a/', type: 'directory' },
    { name: 'a/big', body: 'x'.repeat(3 * 1024 * 1024 + 17) },
    { name: 'a/small', body: 'hello', mode: 0o755 },
  ];

  for (const kind of ['native', 'cli']) {
    void it(`extracts what extractTar extracts, in pieces of any size (${kind} decompressor)`, async () => {
      const saved = process.env.CACHEW_ZSTD;
      process.env.CACHEW_ZSTD = kind === 'cli' ? 'cli' : '';
      try {
        const compressed = await zstdTarOf(ENTRIES);
        const pieces = [compressed.subarray(0, 7), compressed.subarray(7, 4000), compressed.subarray(4000)];
        const dir = await freshDir();
        const stats = await extractZstd(Readable.from(pieces), dir);
        assert.equal(stats.files, 2);
        assert.equal((await fs.stat(path.join(dir, 'a/big'))).size, 3 * 1024 * 1024 + 17);
        assert.equal(await fs.readFile(path.join(dir, 'a/small'), 'utf8'), 'hello');
        assert.equal((await fs.stat(path.join(dir, 'a/small'))).mode & 0o777, 0o755);
        const truncated = compressed.subarray(0, compressed.length - 9);
        await assert.rejects(extractZstd(Readable.from([truncated]), await freshDir()), (err: unknown) => err instanceof CorruptArchiveError || /truncated/.test(String(err)));
        await assert.rejects(extractZstd(Readable.from([Buffer.from('not zstd at all')]), await freshDir()), CorruptArchiveError);
      } finally {
        if (saved === undefined) delete process.env.CACHEW_ZSTD;
        else process.env.CACHEW_ZSTD = saved;
      }
    });
  }
});
