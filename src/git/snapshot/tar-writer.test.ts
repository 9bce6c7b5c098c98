import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { TAR_END, encodeTarHeader, tarPadding, type TarEntry } from './tar-writer.js';

const MTIME = 1_700_000_000;
const LONG_PREFIXED = `${'d'.repeat(120)}/${'f'.repeat(90)}`;
const LONG_PAX = `${'p'.repeat(170)}/${'q'.repeat(120)}`;
const LONG_TARGET = `${'t'.repeat(80)}/${'u'.repeat(80)}`;

interface Fixture {
  entry: TarEntry;
  content?: Buffer;
}

const FIXTURES: Fixture[] = [
  { entry: { path: 'dir', type: 'directory', mode: 0o755, size: 0, mtime: MTIME } },
  { entry: { path: 'dir/plain.txt', type: 'file', mode: 0o644, size: 6, mtime: MTIME }, content: Buffer.from('hello\n') },
  { entry: { path: 'run.sh', type: 'file', mode: 0o755, size: 0, mtime: MTIME }, content: Buffer.alloc(0) },
  { entry: { path: 'ünï ✓.txt', type: 'file', mode: 0o644, size: 512, mtime: MTIME }, content: Buffer.alloc(512, 7) },
  { entry: { path: LONG_PREFIXED, type: 'file', mode: 0o644, size: 3, mtime: MTIME }, content: Buffer.from('abc') },
  { entry: { path: LONG_PAX, type: 'file', mode: 0o644, size: 1, mtime: MTIME }, content: Buffer.from('z') },
  { entry: { path: 'link', type: 'symlink', mode: 0o777, size: 0, mtime: MTIME, linkTarget: 'dir/plain.txt' } },
  { entry: { path: 'longlink', type: 'symlink', mode: 0o777, size: 0, mtime: MTIME, linkTarget: LONG_TARGET } },
];

function archive(): Buffer {
  const parts: Buffer[] = [];
  for (const { entry, content } of FIXTURES) {
    parts.push(encodeTarHeader(entry));
    if (content) parts.push(content, tarPadding(content.length));
  }
  parts.push(TAR_END);
  return Buffer.concat(parts);
}

void test('tar-stream reads back every entry with its name, type, mode, owner and mtime', async () => {
  const extract = tar.extract();
  const seen: { name: string; type: string; mode: number; linkname: string | null; body: Buffer; uid: number; uname: string | undefined; mtime: number }[] = [];
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => {
      chunks.push(c as Buffer);
    });
    stream.on('end', () => {
      seen.push({
        name: header.name,
        type: header.type ?? '',
        mode: header.mode ?? -1,
        linkname: header.linkname ?? null,
        body: Buffer.concat(chunks),
        uid: header.uid ?? -1,
        uname: header.uname,
        mtime: (header.mtime?.getTime() ?? 0) / 1000,
      });
      next();
    });
  });
  const done = new Promise<void>((resolve, reject) => {
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  Readable.from([archive()]).pipe(extract);
  await done;

  assert.equal(seen.length, FIXTURES.length);
  FIXTURES.forEach(({ entry, content }, i) => {
    const got = seen[i];
    assert.equal(got.name.replace(/\/$/, ''), String(entry.path), `entry ${i}`);
    assert.equal(got.type, entry.type);
    assert.equal(got.mode, entry.mode);
    assert.equal(got.uid, 0);
    assert.equal(got.uname ?? '', '');
    assert.equal(got.mtime, MTIME);
    if (entry.type === 'symlink') assert.equal(got.linkname, entry.linkTarget);
    assert.deepEqual(got.body, content ?? Buffer.alloc(0));
  });
});

void test('GNU tar lists the same names, including raw non-UTF-8 bytes', async () => {
  const raw = Buffer.from([0x62, 0xff, 0x2e, 0x74]);
  const rawLong = Buffer.concat([Buffer.from('r'.repeat(120) + '/'), Buffer.from('s'.repeat(110)), raw]);
  const bytes = Buffer.concat([
    archive().subarray(0, -TAR_END.length),
    encodeTarHeader({ path: raw, type: 'file', mode: 0o644, size: 0, mtime: MTIME }),
    encodeTarHeader({ path: rawLong, type: 'file', mode: 0o644, size: 0, mtime: MTIME }),
    TAR_END,
  ]);
  const child = spawn('tar', ['-tf', '-'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } });
  const out: Buffer[] = [];
  const errOut: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => errOut.push(c));
  child.stdin.end(bytes);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, Buffer.concat(errOut).toString());
  assert.equal(Buffer.concat(errOut).toString(), '', 'no warnings');
  // -t prints names C-escaped; compare against the same escaping of what we wrote.
  const expected = [
    'dir/',
    'dir/plain.txt',
    'run.sh',
    '\\303\\274n\\303\\257 \\342\\234\\223.txt',
    LONG_PREFIXED,
    LONG_PAX,
    'link',
    'longlink',
    'b\\377.t',
    `${'r'.repeat(120)}/${'s'.repeat(110)}b\\377.t`,
  ];
  assert.deepEqual(Buffer.concat(out).toString('latin1').split('\n').slice(0, -1), expected);
});

void test('headers are plain ustar with fixed fields and a valid checksum', () => {
  const block = encodeTarHeader({ path: 'a.txt', type: 'file', mode: 0o644, size: 10, mtime: MTIME });
  assert.equal(block.length, 512);
  assert.equal(block.toString('latin1', 257, 265), 'ustar\u000000');
  assert.equal(block.toString('latin1', 100, 108), '0000644\u0000');
  assert.equal(block.toString('latin1', 108, 124), '0000000\u00000000000\u0000');
  assert.equal(block.toString('latin1', 124, 136), '00000000012\u0000');
  assert.equal(block.toString('latin1', 136, 148), MTIME.toString(8).padStart(11, '0') + '\u0000');
  assert.equal(block.subarray(265, 329).every((b) => b === 0), true, 'empty uname/gname');
  let sum = 0;
  block.forEach((b, i) => (sum += i >= 148 && i < 156 ? 0x20 : b));
  assert.equal(parseInt(block.toString('latin1', 148, 154), 8), sum);
  // Same input, same bytes.
  assert.deepEqual(encodeTarHeader({ path: 'a.txt', type: 'file', mode: 0o644, size: 10, mtime: MTIME }), block);
});

void test('sizes beyond the octal field use base-256; invalid entries are refused', () => {
  const size = 2 ** 34 + 5;
  const block = encodeTarHeader({ path: 'huge', type: 'file', mode: 0o644, size, mtime: MTIME });
  assert.equal(block[124], 0x80);
  assert.equal(block.readUIntBE(130, 6), size);
  assert.equal(tarPadding(512).length, 0);
  assert.equal(tarPadding(513).length, 511);
  assert.throws(() => encodeTarHeader({ path: 'a\u0000b', type: 'file', mode: 0o644, size: 0, mtime: MTIME }), RangeError);
  assert.throws(() => encodeTarHeader({ path: 'a', type: 'file', mode: 0o644, size: -1, mtime: MTIME }), RangeError);
  assert.throws(() => encodeTarHeader({ path: 'a', type: 'file', mode: 0o644, size: 0, mtime: -5 }), RangeError);
});
