/**
 * Tar header blocks, read and written by the restore client: decoding of the ustar/GNU header fields
 * and pax records a snapshot (or any common tar) uses, and encoding of the one canonical header form
 * we hand to the system `tar` (see tar-filter.ts for why we re-encode instead of forwarding).
 *
 * Names are bytes throughout: git paths are byte strings (not always UTF-8), so nothing here decodes
 * a path to a JS string.
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
  /** The name: ustar prefix + '/' + name when the POSIX prefix field is used. */
  name: Buffer;
  linkname: Buffer;
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
const LONG_LINK_NAME = Buffer.from('././@LongLink', 'latin1');
const NAME_LEN = 100;
const MAX_OCTAL_11 = 0o77777777777;

/** True for the all-zero block that marks the end of an archive. */
export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** Decodes one 512-byte header block; throws UnsafeArchiveError on a bad checksum or format. */
export function decodeHeader(block: Buffer): RawHeader {
  const stored = readNumber(block, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  // Some old writers summed signed bytes; every reader accepts both.
  if (stored !== unsigned && stored !== signed) throw new UnsafeArchiveError('tar header checksum mismatch');
  const magic = block.subarray(257, 265);
  const posix = magic.subarray(0, 6).equals(POSIX_MAGIC);
  if (!posix && !magic.equals(GNU_MAGIC)) throw new UnsafeArchiveError('not a ustar or GNU tar header');
  let name = field(block, 0, NAME_LEN);
  // The prefix field only exists in POSIX ustar; GNU headers keep other data there.
  const prefix = posix ? field(block, 345, 155) : Buffer.alloc(0);
  if (prefix.length > 0) name = Buffer.concat([prefix, Buffer.from('/'), name]);
  const typeflag = block[156];
  return {
    kind: KIND_BY_FLAG[typeflag] ?? 'unsupported',
    typeflag,
    name,
    linkname: field(block, 157, 100),
    mode: readNumber(block, 100, 8, 'mode'),
    size: readNumber(block, 124, 12, 'size'),
    mtime: readNumber(block, 136, 12, 'mtime'),
  };
}

/** A NUL-terminated (or full-width) byte field, as a view into the block. */
function field(block: Buffer, offset: number, length: number): Buffer {
  const view = block.subarray(offset, offset + length);
  const nul = view.indexOf(0);
  return nul === -1 ? view : view.subarray(0, nul);
}

/** An octal field (leading spaces, NUL/space terminated) or GNU base-256 (high bit set). */
function readNumber(block: Buffer, offset: number, length: number, what: string): number {
  if (block[offset] & 0x80) {
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
  path?: Buffer;
  linkpath?: Buffer;
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
    if (key === 'path') result.path = value;
    else if (key === 'linkpath') result.linkpath = value;
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
  /** Normalised relative path: no `.`, `..` or empty components; directories end with `/`. */
  path: Buffer;
  linkname?: Buffer;
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
export function encodeCanonical(entry: CanonicalEntry): Buffer[] {
  const out: Buffer[] = [];
  const link = entry.linkname ?? Buffer.alloc(0);
  if (link.length > NAME_LEN) out.push(...longRecord(0x4b, link));
  if (entry.path.length > NAME_LEN) out.push(...longRecord(0x4c, entry.path));
  out.push(
    headerBlock({
      name: entry.path.subarray(0, NAME_LEN),
      linkname: link.subarray(0, NAME_LEN),
      mode: entry.mode & 0o777,
      size: entry.type === 'file' ? entry.size : 0,
      mtime: Math.min(Math.max(0, entry.mtime), MAX_OCTAL_11),
      typeflag: CANONICAL_FLAG[entry.type],
    }),
  );
  return out;
}

/** Two zero blocks: the end of the archive we forward. */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(BLOCK * 2);

/** Zero bytes after `size` bytes of content, up to the next block boundary. */
export function paddingLength(size: number): number {
  const rest = size % BLOCK;
  return rest === 0 ? 0 : BLOCK - rest;
}

function longRecord(typeflag: number, value: Buffer): Buffer[] {
  const size = value.length + 1; // the name is stored NUL-terminated
  const content = Buffer.alloc(size + paddingLength(size));
  value.copy(content);
  const header = headerBlock({ name: LONG_LINK_NAME, linkname: Buffer.alloc(0), mode: 0, size, mtime: 0, typeflag });
  return [header, content];
}

interface BlockFields {
  name: Buffer;
  linkname: Buffer;
  mode: number;
  size: number;
  mtime: number;
  typeflag: number;
}

function headerBlock(f: BlockFields): Buffer {
  const block = Buffer.alloc(BLOCK);
  f.name.copy(block, 0);
  writeOctal(block, 100, 8, f.mode);
  writeOctal(block, 108, 8, 0);
  writeOctal(block, 116, 8, 0);
  if (f.size > MAX_OCTAL_11) {
    block[124] = 0x80;
    let rest = f.size;
    for (let i = 135; i > 124; i--, rest = Math.floor(rest / 256)) block[i] = rest % 256;
  } else {
    writeOctal(block, 124, 12, f.size);
  }
  writeOctal(block, 136, 12, f.mtime);
  block.fill(0x20, 148, 156);
  block[156] = f.typeflag;
  f.linkname.copy(block, 157);
  GNU_MAGIC.copy(block, 257);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i];
  block.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'latin1');
  return block;
}

function writeOctal(block: Buffer, offset: number, length: number, value: number): void {
  block.write(`${value.toString(8).padStart(length - 1, '0')}\u0000`, offset, 'latin1');
}
