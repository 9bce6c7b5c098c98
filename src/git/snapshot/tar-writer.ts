/**
 * A minimal, byte-exact tar header encoder for snapshot archives.
 *
 * Why not tar-stream's `pack()`: snapshot bytes are part of a determinism contract (SPEC §5), so every
 * header byte must be a fixed function of the entry, independent of a library's defaults or future
 * releases; and git paths are byte strings, not necessarily UTF-8, which tar-stream's string-based
 * names cannot carry. This encoder writes POSIX ustar headers with raw path bytes, splits long paths
 * into ustar's prefix/name fields, and falls back to a pax extended header (fixed name, fixed fields)
 * only for paths or link targets that do not fit. Archives read back with GNU tar, bsdtar and
 * tar-stream's `extract()`.
 */

/** The kinds of entries a snapshot contains. */
export type TarEntryType = 'file' | 'directory' | 'symlink';

export interface TarEntry {
  /** Path relative to the archive root, as raw bytes or a string (UTF-8). Directories without trailing `/`. */
  path: Buffer | string;
  type: TarEntryType;
  /** Permission bits, e.g. 0o644 / 0o755. */
  mode: number;
  /** Content length for files; ignored (0) for directories and symlinks. */
  size: number;
  /** Modification time in whole seconds since the epoch. */
  mtime: number;
  /** Symlink target (raw bytes or UTF-8 string). */
  linkTarget?: Buffer | string;
}

export const TAR_BLOCK = 512;

/** Two zero blocks mark the end of a tar archive. */
export const TAR_END: Buffer = Buffer.alloc(TAR_BLOCK * 2);

const NAME_LEN = 100;
const PREFIX_LEN = 155;
const LINK_LEN = 100;
/** Largest size the 11-digit octal field can hold; larger sizes use GNU base-256 (read by all common tars). */
const MAX_OCTAL_SIZE = 0o77777777777;
/** The fixed name of pax extended headers: never the PID/basename GNU tar would put there. */
const PAX_NAME = Buffer.from('././@PaxHeader');

const TYPEFLAG: Record<TarEntryType, number> = { file: 0x30, directory: 0x35, symlink: 0x32 };

/** Zero bytes that pad `size` bytes of content to a whole 512-byte block. */
export function tarPadding(size: number): Buffer {
  const rest = size % TAR_BLOCK;
  return rest === 0 ? Buffer.alloc(0) : Buffer.alloc(TAR_BLOCK - rest);
}

/**
 * The header block(s) for one entry: a single ustar header, or a pax header + its records + the ustar
 * header when the path or link target does not fit. Content (for files) follows, then `tarPadding`.
 */
export function encodeTarHeader(entry: TarEntry): Buffer {
  let path = toBytes(entry.path);
  if (entry.type === 'directory' && path[path.length - 1] !== 0x2f) path = Buffer.concat([path, Buffer.from('/')]);
  const link = entry.linkTarget === undefined ? Buffer.alloc(0) : toBytes(entry.linkTarget);
  const size = entry.type === 'file' ? entry.size : 0;
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid tar entry size ${size}`);
  if (!Number.isSafeInteger(entry.mtime) || entry.mtime < 0) throw new RangeError(`invalid tar mtime ${entry.mtime}`);
  if (path.includes(0) || link.includes(0)) throw new RangeError('tar path contains NUL');

  const split = splitUstarPath(path);
  const paxRecords: Buffer[] = [];
  if (split === undefined) paxRecords.push(paxRecord('path', path));
  if (link.length > LINK_LEN) paxRecords.push(paxRecord('linkpath', link));

  const main = ustarHeader({
    name: split?.name ?? truncatedName(path),
    prefix: split?.prefix ?? Buffer.alloc(0),
    mode: entry.mode,
    size,
    mtime: entry.mtime,
    typeflag: TYPEFLAG[entry.type],
    linkname: link.length > LINK_LEN ? link.subarray(0, LINK_LEN) : link,
  });
  if (paxRecords.length === 0) return main;

  // Values are the raw path bytes. No `hdrcharset` record: GNU tar warns about it on every entry and
  // already stores pax paths byte for byte.
  const body = Buffer.concat(paxRecords);
  const pax = ustarHeader({
    name: PAX_NAME,
    prefix: Buffer.alloc(0),
    mode: 0o644,
    size: body.length,
    mtime: entry.mtime,
    typeflag: 0x78, // 'x': extended header for the next entry only
    linkname: Buffer.alloc(0),
  });
  return Buffer.concat([pax, body, tarPadding(body.length), main]);
}

interface UstarFields {
  name: Buffer;
  prefix: Buffer;
  mode: number;
  size: number;
  mtime: number;
  typeflag: number;
  linkname: Buffer;
}

function ustarHeader(f: UstarFields): Buffer {
  const block = Buffer.alloc(TAR_BLOCK);
  f.name.copy(block, 0, 0, NAME_LEN);
  writeOctal(block, 100, 8, f.mode & 0o7777);
  writeOctal(block, 108, 8, 0); // uid
  writeOctal(block, 116, 8, 0); // gid
  if (f.size > MAX_OCTAL_SIZE) writeBase256(block, 124, 12, f.size);
  else writeOctal(block, 124, 12, f.size);
  writeOctal(block, 136, 12, f.mtime);
  block.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  block[156] = f.typeflag;
  f.linkname.copy(block, 157, 0, LINK_LEN);
  block.write('ustar\u000000', 257, 'latin1'); // magic "ustar\0" + version "00"
  // uname/gname stay empty: no machine-specific owner names.
  writeOctal(block, 329, 8, 0); // devmajor
  writeOctal(block, 337, 8, 0); // devminor
  f.prefix.copy(block, 345, 0, PREFIX_LEN);
  let sum = 0;
  for (const byte of block) sum += byte;
  // The customary checksum format: six octal digits, NUL, space.
  block.write(sum.toString(8).padStart(6, '0') + '\u0000 ', 148, 'latin1');
  return block;
}

/** Octal digits zero-padded to `len - 1`, then NUL. */
function writeOctal(block: Buffer, offset: number, len: number, value: number): void {
  const digits = value.toString(8).padStart(len - 1, '0');
  if (digits.length > len - 1) throw new RangeError(`value ${value} does not fit a ${len}-byte tar field`);
  block.write(digits + '\u0000', offset, 'latin1');
}

function writeBase256(block: Buffer, offset: number, len: number, value: number): void {
  let rest = value;
  for (let i = offset + len - 1; i > offset; i--) {
    block[i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  block[offset] = 0x80;
}

/** Splits a path into ustar (prefix, name) at a `/`, or undefined when it cannot fit. */
function splitUstarPath(path: Buffer): { prefix: Buffer; name: Buffer } | undefined {
  if (path.length <= NAME_LEN) return { prefix: Buffer.alloc(0), name: path };
  // The leftmost usable slash keeps the name field as long as possible; a fixed rule keeps bytes stable.
  for (let i = 0; i < path.length; i++) {
    if (path[i] !== 0x2f) continue;
    if (i > PREFIX_LEN) return undefined;
    const name = path.subarray(i + 1);
    if (name.length <= NAME_LEN && name.length > 0 && i > 0) return { prefix: path.subarray(0, i), name };
  }
  return undefined;
}

/** The ustar name field when the real path lives in a pax record: its last bytes, for old readers. */
function truncatedName(path: Buffer): Buffer {
  return path.subarray(Math.max(0, path.length - NAME_LEN));
}

/** One pax record: "<len> <key>=<value>\n", where <len> counts the whole record including itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = rest.length + 1;
  while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
  return Buffer.concat([Buffer.from(String(len)), rest]);
}

function toBytes(value: Buffer | string): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}
