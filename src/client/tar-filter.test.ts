import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TAR_END, encodeTarHeader, tarPadding, type TarEntry } from '../git/snapshot/tar-writer.js';
import { UnsafeArchiveError } from './errors.js';
import { TarFilter, type EntrySink } from './tar-filter.js';
import { BLOCK } from './tar-format.js';

const MTIME = 1_700_000_000;

/** A tar made by the server's own snapshot writer (ustar, pax only for long names). */
function snapshotTar(entries: Array<TarEntry & { content?: Buffer }>, tail: Buffer = TAR_END): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    parts.push(encodeTarHeader(entry));
    if (entry.content) parts.push(entry.content, tarPadding(entry.content.length));
  }
  parts.push(tail);
  return Buffer.concat(parts);
}

/** What a filter told its sink: one line per call, file content joined per file. */
class RecordingSink implements EntrySink {
  readonly calls: string[] = [];
  readonly entries: Array<{ kind: string; path: string; mode?: number; target?: string; content?: Buffer }> = [];
  private data: Buffer[] = [];

  directory(path: string, mode: number, mtime: number): void {
    this.calls.push(`directory ${path} ${mode.toString(8)} ${mtime}`);
    this.entries.push({ kind: 'directory', path, mode });
  }

  symlink(path: string, target: string, mtime: number): void {
    this.calls.push(`symlink ${path} -> ${target} ${mtime}`);
    this.entries.push({ kind: 'symlink', path, target });
  }

  fileStart(path: string, mode: number, mtime: number, size: number): void {
    this.calls.push(`file ${path} ${mode.toString(8)} ${mtime} ${size}`);
    this.entries.push({ kind: 'file', path, mode });
  }

  fileData(bytes: Buffer): void {
    this.data.push(Buffer.from(bytes));
  }

  fileEnd(): void {
    const content = Buffer.concat(this.data);
    this.data = [];
    this.entries[this.entries.length - 1].content = content;
    this.calls.push(`end ${content.toString('hex')}`);
  }
}

/** Runs the whole input through a filter in the given chunk sizes (cycled); returns its sink. */
function filterAll(input: Buffer, chunkSizes: number[]): RecordingSink {
  const sink = new RecordingSink();
  const filter = new TarFilter(sink);
  for (let at = 0, i = 0; at < input.length; i++) {
    const size = chunkSizes[i % chunkSizes.length];
    filter.push(input.subarray(at, at + size));
    at += size;
  }
  filter.finish();
  return sink;
}

const LONG = `${'d'.repeat(170)}/${'f'.repeat(120)}`;
const SAMPLE = snapshotTar([
  { path: 'dir', type: 'directory', mode: 0o755, size: 0, mtime: MTIME },
  { path: 'dir/a.txt', type: 'file', mode: 0o644, size: 700, mtime: MTIME, content: Buffer.alloc(700, 0x61) },
  { path: Buffer.from([0x6e, 0xff, 0x2e, 0x74]), type: 'file', mode: 0o4755, size: 3, mtime: MTIME, content: Buffer.from('bin') },
  { path: LONG, type: 'file', mode: 0o644, size: 1, mtime: MTIME, content: Buffer.from('z') },
  { path: 'link', type: 'symlink', mode: 0o777, size: 0, mtime: MTIME, linkTarget: 't'.repeat(150) },
]);

void describe('TarFilter', () => {
  void it('tells the sink the same however the input is chunked', () => {
    const whole = filterAll(SAMPLE, [SAMPLE.length]).calls;
    for (const sizes of [[1], [7, 511, 513], [512], [1000, 3], [BLOCK * 3 + 1]]) {
      assert.deepEqual(filterAll(SAMPLE, sizes).calls, whole, `chunks of ${sizes.join(',')}`);
    }
  });

  void it('passes normalised paths, permission bits only and every content byte', () => {
    const entries = filterAll(SAMPLE, [4096]).entries;
    assert.deepEqual(
      entries.map((e) => e.kind),
      ['directory', 'file', 'file', 'file', 'symlink'],
    );
    assert.equal(entries[0].path, 'dir');
    assert.ok(entries[1].content?.equals(Buffer.alloc(700, 0x61)));
    assert.equal(entries[2].path, Buffer.from([0x6e, 0xff, 0x2e, 0x74]).toString('latin1'), 'non-UTF-8 name byte for byte');
    assert.equal(entries[2].mode, 0o755, 'no setuid bit');
    assert.equal(entries[3].path, LONG, 'a long name from its pax record');
    assert.equal(entries[4].target, 't'.repeat(150));
  });

  void it('throws on an unsafe entry before the sink hears of it', () => {
    const tar = snapshotTar([
      { path: 'ok.txt', type: 'file', mode: 0o644, size: 2, mtime: MTIME, content: Buffer.from('ok') },
      { path: '../evil', type: 'file', mode: 0o644, size: 4, mtime: MTIME, content: Buffer.from('evil') },
    ]);
    const sink = new RecordingSink();
    const filter = new TarFilter(sink);
    filter.push(tar.subarray(0, BLOCK * 2));
    assert.throws(() => filter.push(tar.subarray(BLOCK * 2)), UnsafeArchiveError);
    assert.deepEqual(
      sink.entries.map((e) => e.path),
      ['ok.txt'],
    );
  });

  void it('ignores informational pax keys and refuses sparse files and bad checksums', () => {
    const pax = (records: string): Buffer => {
      const body = Buffer.from(records);
      const header = encodeTarHeader({ path: 'x', type: 'file', mode: 0o644, size: body.length, mtime: MTIME });
      header[156] = 0x78; // turn it into a pax header: recompute the checksum
      header.fill(0x20, 148, 156);
      let sum = 0;
      for (const byte of header) sum += byte;
      header.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'latin1');
      return Buffer.concat([header, body, tarPadding(body.length)]);
    };
    const record = (key: string, value: string): string => {
      const rest = ` ${key}=${value}\n`;
      let length = rest.length + 1;
      while (String(length).length + rest.length !== length) length = String(length).length + rest.length;
      return `${length}${rest}`;
    };
    const file = snapshotTar([{ path: 'short', type: 'file', mode: 0o644, size: 1, mtime: MTIME, content: Buffer.from('q') }]);
    const renamed = Buffer.concat([pax(record('uname', 'root') + record('path', 'renamed/by/pax')), file]);
    assert.deepEqual(filterAll(renamed, [999]).entries.map((e) => e.path), ['renamed/by/pax']);
    const sparse = Buffer.concat([pax(record('GNU.sparse.size', '10')), file]);
    assert.throws(() => filterAll(sparse, [999]), /sparse/);
    const corrupt = Buffer.from(file);
    corrupt[0] ^= 1;
    assert.throws(() => filterAll(corrupt, [999]), /checksum/);
  });

  void it('reports an archive without its end marker as truncated', () => {
    const tar = snapshotTar([{ path: 'f', type: 'file', mode: 0o644, size: 1, mtime: MTIME, content: Buffer.from('1') }], Buffer.alloc(0));
    assert.throws(() => filterAll(tar, [tar.length]), /truncated/);
  });
});
