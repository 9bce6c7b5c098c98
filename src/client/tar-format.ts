/**
 * Tar header blocks as the restore client reads them: decoding of the ustar/GNU header fields and pax
 * records a snapshot (or any common tar) uses.
 *
 * Names are bytes: git paths are byte strings (not always UTF-8). They are carried as *binary
 * strings* (latin1: one char per byte, so every byte survives the round trip exactly), which is also
 * the cheapest form to slice, compare and use as a map key on the hot path.
 */
import { UnsafeArchiveError } from './errors.js';

export const BLOCK = 512;

/** The kinds of header a tar stream can carry, as far as the filter cares. */
export type HeaderKind =
  | 'file'
  | 'directory'
  | 'symlink'
  | 'hardlink'
  | 'character-device'
  | 'block-device'
  | 'fifo'
  | 'pax'
  | 'pax-global'
  | 'gnu-long-name'
  | 'gnu-long-link'
  | 'unsupported';

/** One decoded header block (before pax / GNU long-name overrides are applied). */
export interface RawHeader {
  kind: HeaderKind;
  /** The typeflag byte, for messages about unsupported kinds. */
  typeflag: number;
  /** The name as a binary string: ustar prefix + '/' + name when the POSIX prefix field is used. */
  name: string;
  linkname: string;
  mode: number;
  size: number;
  mtime: number;
}

const KIND_BY_FLAG: Record<number, HeaderKind> = {
  0x00: 'file',
  0x30: 'file', // '0'
  0x37: 'file', // '7' contiguous file: a regular file everywhere that matters
  0x31: 'hardlink', // '1'
  0x32: 'symlink', // '2'
  0x33: 'character-device', // '3'
  0x34: 'block-device', // '4'
  0x35: 'directory', // '5'
  0x36: 'fifo', // '6'
  0x78: 'pax', // 'x'
  0x67: 'pax-global', // 'g'
  0x4c: 'gnu-long-name', // 'L'
  0x4b: 'gnu-long-link', // 'K'
};

/** "ustar\0"; the version digits after it vary between writers. */
const POSIX_MAGIC = Buffer.from('ustar\u0000', 'latin1');
const GNU_MAGIC = Buffer.from('ustar  \u0000', 'latin1');
const NAME_LEN = 100;

/** True for the all-zero block (at `at` in `buf`) that marks the end of an archive. */
export function isZeroBlock(buf: Buffer, at = 0): boolean {
  for (let i = at; i < at + BLOCK; i++) if (buf[i] !== 0) return false;
  return true;
}

/** Decodes the 512-byte header block at `at` in `buf`; throws UnsafeArchiveError on a bad checksum or format. */
export function decodeHeader(buf: Buffer, at = 0): RawHeader {
  const stored = readNumber(buf, at + 148, 8, 'checksum');
  let unsigned = 8 * 0x20; // the checksum field itself counts as spaces
  for (let i = at; i < at + 148; i++) unsigned += buf[i];
  for (let i = at + 156; i < at + BLOCK; i++) unsigned += buf[i];
  // Some old writers summed signed bytes; every reader accepts both.
  if (stored !== unsigned && stored !== signedSum(buf, at)) throw new UnsafeArchiveError('tar header checksum mismatch');
  const posix = startsWith(buf, at + 257, POSIX_MAGIC);
  if (!posix && !startsWith(buf, at + 257, GNU_MAGIC)) throw new UnsafeArchiveError('not a ustar or GNU tar header');
  let name = field(buf, at, NAME_LEN);
  // The prefix field only exists in POSIX ustar; GNU headers keep other data there.
  if (posix && buf[at + 345] !== 0) name = `${field(buf, at + 345, 155)}/${name}`;
  const typeflag = buf[at + 156];
  return {
    kind: KIND_BY_FLAG[typeflag] ?? 'unsupported',
    typeflag,
    name,
    linkname: buf[at + 157] === 0 ? '' : field(buf, at + 157, 100),
    mode: readNumber(buf, at + 100, 8, 'mode'),
    size: readNumber(buf, at + 124, 12, 'size'),
    mtime: readNumber(buf, at + 136, 12, 'mtime'),
  };
}

function signedSum(buf: Buffer, at: number): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : buf[at + i];
    sum += byte > 127 ? byte - 256 : byte;
  }
  return sum;
}

function startsWith(buf: Buffer, at: number, expected: Buffer): boolean {
  for (let i = 0; i < expected.length; i++) if (buf[at + i] !== expected[i]) return false;
  return true;
}

/** A NUL-terminated (or full-width) byte field, as a binary string. */
function field(buf: Buffer, at: number, length: number): string {
  let end = at;
  while (end < at + length && buf[end] !== 0) end++;
  return buf.toString('latin1', at, end);
}

/** An octal field (leading spaces, NUL/space terminated) or GNU base-256 (high bit set). */
function readNumber(block: Buffer, offset: number, length: number, what: string): number {
  if (block[offset] & 0x80) {
    // GNU base-256; a leading 0xff would be negative, which no size or time of ours can be.
    if (block[offset] !== 0x80) throw new UnsafeArchiveError(`negative or oversized tar ${what}`);
    let value = 0;
    for (let i = offset + 1; i < offset + length; i++) value = value * 256 + block[i];
    if (!Number.isSafeInteger(value)) throw new UnsafeArchiveError(`tar ${what} too large`);
    return value;
  }
  let i = offset;
  const end = offset + length;
  while (i < end && block[i] === 0x20) i++;
  let value = 0;
  let digits = 0;
  for (; i < end && block[i] >= 0x30 && block[i] <= 0x37; i++, digits++) value = value * 8 + (block[i] - 0x30);
  // After the digits only terminators may follow.
  for (; i < end; i++) {
    if (block[i] !== 0 && block[i] !== 0x20) throw new UnsafeArchiveError(`malformed tar ${what} field`);
  }
  if (digits === 0 && what === 'checksum') throw new UnsafeArchiveError('tar header without checksum');
  return value;
}

/** What pax records may change about the next entry; every other key is dropped (never forwarded). */
export interface PaxOverrides {
  /** Binary strings, like every name here. */
  path?: string;
  linkpath?: string;
  size?: number;
  mtime?: number;
}

/**
 * Parses pax extended-header records (`<len> <key>=<value>\n`). Keys that change how the following
 * bytes are laid out and that we do not implement (GNU sparse files) are refused; informational keys
 * (owners, atime, charset, comments, xattrs) are ignored, since the header we forward is our own.
 */
export function parsePax(body: Buffer): PaxOverrides {
  const result: PaxOverrides = {};
  let at = 0;
  while (at < body.length) {
    if (body[at] === 0) break; // padding some writers leave after the last record
    const space = body.indexOf(0x20, at);
    const length = space === -1 ? NaN : Number(body.toString('latin1', at, space));
    if (!Number.isSafeInteger(length) || length <= space - at + 1 || at + length > body.length || body[at + length - 1] !== 0x0a) {
      throw new UnsafeArchiveError('malformed pax record');
    }
    const record = body.subarray(space + 1, at + length - 1);
    const equals = record.indexOf(0x3d);
    if (equals <= 0) throw new UnsafeArchiveError('malformed pax record');
    const key = record.toString('latin1', 0, equals);
    const value = record.subarray(equals + 1);
    at += length;
    if (key === 'path') result.path = value.toString('latin1');
    else if (key === 'linkpath') result.linkpath = value.toString('latin1');
    else if (key === 'size') result.size = paxInteger(value, key);
    else if (key === 'mtime') result.mtime = paxInteger(value, key);
    else if (key.startsWith('GNU.sparse.')) throw new UnsafeArchiveError('sparse files are not supported');
  }
  return result;
}

/** A pax decimal (`mtime` may carry a fraction, which is dropped). */
function paxInteger(value: Buffer, key: string): number {
  const text = value.toString('latin1');
  if (!/^\d+(\.\d*)?$/.test(text)) throw new UnsafeArchiveError(`malformed pax ${key}`);
  const number = Math.floor(Number(text));
  if (!Number.isSafeInteger(number)) throw new UnsafeArchiveError(`pax ${key} too large`);
  return number;
}

/** Zero bytes after `size` bytes of content, up to the next block boundary. */
export function paddingLength(size: number): number {
  const rest = size % BLOCK;
  return rest === 0 ? 0 : BLOCK - rest;
}
