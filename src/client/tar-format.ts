/**
 * Tar header blocks, read and written by the restore client: decoding of the ustar/GNU header fields
 * and pax records a snapshot (or any common tar) uses, and encoding of the one canonical header form
 * we hand to the system `tar` (see tar-filter.ts for why we re-encode instead of forwarding).
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
const LONG_LINK_NAME = '././@LongLink';
const NAME_LEN = 100;
const MAX_OCTAL_11 = 0o77777777777;

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

/** What we tell the system tar to create. */
export interface CanonicalEntry {
  type: 'file' | 'directory' | 'symlink';
  /** Normalised relative path (binary string): no `.`, `..` or empty components; directories end with `/`. */
  path: string;
  linkname?: string;
  /** Permission bits only (no setuid, setgid or sticky). */
  mode: number;
  size: number;
  mtime: number;
}

const CANONICAL_FLAG = { file: 0x30, directory: 0x35, symlink: 0x32 } as const;

/**
 * Header block(s) in GNU format for `entry`: names longer than 100 bytes go in a preceding GNU
 * long-name (`L`) or long-link (`K`) record, which GNU tar and bsdtar both read byte for byte
 * (unlike pax paths, which readers may re-encode by locale).
 */
export function encodeCanonical(entry: CanonicalEntry, out: Buffer[]): void {
  const link = entry.linkname ?? '';
  if (link.length > NAME_LEN) longRecord(0x4b, link, out);
  if (entry.path.length > NAME_LEN) longRecord(0x4c, entry.path, out);
  out.push(
    headerBlock(
      entry.path.length > NAME_LEN ? entry.path.slice(0, NAME_LEN) : entry.path,
      link.length > NAME_LEN ? link.slice(0, NAME_LEN) : link,
      entry.mode & 0o777,
      entry.type === 'file' ? entry.size : 0,
      Math.min(Math.max(0, entry.mtime), MAX_OCTAL_11),
      CANONICAL_FLAG[entry.type],
    ),
  );
}

/** Two zero blocks: the end of the archive we forward. */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(BLOCK * 2);

/** Zero bytes after `size` bytes of content, up to the next block boundary. */
export function paddingLength(size: number): number {
  const rest = size % BLOCK;
  return rest === 0 ? 0 : BLOCK - rest;
}

function longRecord(typeflag: number, value: string, out: Buffer[]): void {
  const size = value.length + 1; // the name is stored NUL-terminated
  const content = Buffer.alloc(size + paddingLength(size));
  content.write(value, 0, 'latin1');
  out.push(headerBlock(LONG_LINK_NAME, '', 0, size, 0, typeflag), content);
}

/** Every canonical header starts as this: zero owner ids, GNU magic, empty owner names. */
const TEMPLATE = ((): Buffer => {
  const block = Buffer.alloc(BLOCK);
  writeOctal(block, 108, 8, 0);
  writeOctal(block, 116, 8, 0);
  GNU_MAGIC.copy(block, 257);
  return block;
})();

function headerBlock(name: string, linkname: string, mode: number, size: number, mtime: number, typeflag: number): Buffer {
  const block = Buffer.allocUnsafe(BLOCK);
  TEMPLATE.copy(block);
  block.write(name, 0, 'latin1');
  writeOctal(block, 100, 8, mode);
  if (size > MAX_OCTAL_11) {
    block[124] = 0x80;
    let rest = size;
    for (let i = 135; i > 124; i--, rest = Math.floor(rest / 256)) block[i] = rest % 256;
  } else {
    writeOctal(block, 124, 12, size);
  }
  writeOctal(block, 136, 12, mtime);
  block[156] = typeflag;
  if (linkname.length > 0) block.write(linkname, 157, 'latin1');
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += block[i];
  for (let i = 156; i < BLOCK; i++) sum += block[i];
  // The customary form: six octal digits, NUL, space.
  writeOctal(block, 148, 7, sum);
  block[155] = 0x20;
  return block;
}

/** `length - 1` zero-padded octal digits, then NUL. */
function writeOctal(block: Buffer, offset: number, length: number, value: number): void {
  let rest = value;
  for (let i = offset + length - 2; i >= offset; i--) {
    block[i] = 0x30 + (rest % 8);
    rest = Math.floor(rest / 8);
  }
  block[offset + length - 1] = 0;
}
