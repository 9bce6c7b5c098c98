/**
 * The facts of git's index file format (version 2, what the snapshot generator writes) that the
 * client's two index rewriters share: index-stat.ts (after extraction, from the file) and
 * index-patcher.ts (during extraction, on the extraction thread).
 *
 * Layout: a 12-byte header (`DIRC`, version, entry count), the entries sorted by name, extensions,
 * then the SHA-1 of everything before it. An entry: ctime, mtime (s, ns), dev, ino, mode, uid, gid,
 * size (u32 big-endian each: the 40 stat-field bytes of stat-table.ts), the object id (20), flags
 * (2: the name's length in the low 12 bits), the name, and 1 to 8 NULs padding it to a multiple of 8.
 */

export const HEADER_BYTES = 12;
export const CHECKSUM_BYTES = 20;
/** ctime(8) mtime(8) dev ino mode uid gid size (4 each), sha1(20), flags(2). */
export const ENTRY_FIXED_BYTES = 62;
/** Offset of `size` within an entry. */
export const SIZE_OFFSET = 36;
export const GITLINK = 0o160000;
export const MODE_TYPE_MASK = 0o170000;
export const NAME_MASK = 0x0fff;
export const EXTENDED_FLAG = 0x4000;

/**
 * The length (padding included) of the version-2 entry at `at` in `bytes` when all its bytes are
 * there; 'more' when they are not, or when its name is long enough (4095 bytes or more) that only a
 * search for its NUL gives its length; undefined when malformed.
 */
export function entryLengthAt(bytes: Buffer, at: number): number | 'more' | undefined {
  if (bytes.length - at < ENTRY_FIXED_BYTES) return 'more';
  const flags = bytes.readUInt16BE(at + 60);
  if ((flags & EXTENDED_FLAG) !== 0) return undefined; // not valid in version 2
  const nameLength = flags & NAME_MASK;
  if (nameLength === NAME_MASK) return 'more';
  const length = (ENTRY_FIXED_BYTES + nameLength + 8) & ~7;
  return bytes.length - at < length ? 'more' : length;
}

/** Whether `bytes` start like an index this code can patch: `DIRC`, version 2. */
export function isVersion2Index(bytes: Buffer): boolean {
  return bytes.length >= HEADER_BYTES + CHECKSUM_BYTES && bytes.toString('latin1', 0, 4) === 'DIRC' && bytes.readUInt32BE(4) === 2;
}
