import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TAR_END, encodeTarHeader, tarPadding, type TarEntry } from '../git/snapshot/tar-writer.js';
import { UnsafeArchiveError } from './errors.js';
import { TarFilter } from './tar-filter.js';
import { BLOCK, decodeHeader, isZeroBlock, paddingLength } from './tar-format.js';

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

/** Runs the whole input through a filter in the given chunk sizes (cycled) and joins the output. */
function filterAll(input: Buffer, chunkSizes: number[]): Buffer {
  const filter = new TarFilter();
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < input.length; i++) {
    const size = chunkSizes[i % chunkSizes.length];
    out.push(...filter.push(input.subarray(at, at + size)));
    at += size;
  }
  filter.finish();
  return Buffer.concat(out);
}

/** The headers of a (canonical) tar stream: typeflag and name, in order. */
function headersOf(tar: Buffer): Array<{ type: string; name: string }> {
  const found: Array<{ type: string; name: string }> = [];
  for (let at = 0; at < tar.length; ) {
    const block = tar.subarray(at, at + BLOCK);
    if (isZeroBlock(block)) break;
    const header = decodeHeader(block);
    found.push({ type: String.fromCharCode(header.typeflag), name: header.name });
    at += BLOCK + header.size + paddingLength(header.size);
  }
  return found;
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
  void it('gives the same output however the input is chunked', () => {
    const whole = filterAll(SAMPLE, [SAMPLE.length]);
    for (const sizes of [[1], [7, 511, 513], [512], [1000, 3], [BLOCK * 3 + 1]]) {
      assert.ok(filterAll(SAMPLE, sizes).equals(whole), `chunks of ${sizes.join(',')}`);
    }
  });

  void it('forwards only headers it encoded itself: no pax records, GNU long names, modes without setuid', () => {
    const out = filterAll(SAMPLE, [4096]);
    const headers = headersOf(out);
    assert.deepEqual(
      headers.map((h) => h.type),
      ['5', '0', '0', 'L', '0', 'K', '2'],
    );
    assert.equal(headers[0].name, 'dir/');
    assert.equal(headers[2].name, Buffer.from([0x6e, 0xff, 0x2e, 0x74]).toString('latin1'), 'non-UTF-8 name byte for byte');
    const setuid = decodeHeader(out.subarray(BLOCK * 4, BLOCK * 5));
    assert.equal(setuid.mode, 0o755);
    // The output ends with exactly one end-of-archive marker.
    assert.ok(isZeroBlock(out.subarray(out.length - BLOCK)) && isZeroBlock(out.subarray(out.length - 2 * BLOCK)));
  });

  void it('throws on an unsafe entry before returning any byte of it', () => {
    const tar = snapshotTar([
      { path: 'ok.txt', type: 'file', mode: 0o644, size: 2, mtime: MTIME, content: Buffer.from('ok') },
      { path: '../evil', type: 'file', mode: 0o644, size: 4, mtime: MTIME, content: Buffer.from('evil') },
    ]);
    const filter = new TarFilter();
    const forwarded = filter.push(tar.subarray(0, BLOCK * 2));
    assert.deepEqual(headersOf(Buffer.concat(forwarded)).map((h) => h.name), ['ok.txt']);
    assert.throws(() => filter.push(tar.subarray(BLOCK * 2)), UnsafeArchiveError);
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
    assert.deepEqual(headersOf(filterAll(renamed, [999])).map((h) => h.name), ['renamed/by/pax']);
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
