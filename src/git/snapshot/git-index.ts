/**
 * Writes a git index file (DIRC, version 2, no extensions) for a freshly extracted snapshot, so that a
 * clone restored with `tar -x` is clean at once: `git status` needs neither a rehash nor a checkout.
 *
 * Stat data is chosen, not measured: every entry claims mtime = ctime = the time the archive gives
 * every work tree file (archive.ts FILE_MTIME) and dev/ino/uid/gid 0. The snapshot's `.git/config` sets `core.checkStat = minimal` and
 * `core.trustctime = false`, so git compares only mtime seconds, size and mode, and tar extraction
 * restores exactly that mtime from the archive headers. See archive.ts for the index file's own mtime
 * (which defeats git's racy-clean re-hash).
 *
 * The bytes are produced as a stream of chunks (with a running SHA-1 for the trailer) so a tree with
 * millions of paths never needs the whole file in one buffer; `gitIndexSize` gives the exact length
 * up front, as a tar header needs it.
 */
import { createHash } from 'node:crypto';
import { isSha1ObjectId } from '../../protocol/object-id.js';

/** One stage-0 entry of the index. */
export interface GitIndexEntry {
  /** Path relative to the work tree root, raw bytes as git stores them. */
  path: Buffer;
  /** Git mode: 0o100644, 0o100755, 0o120000 (symlink) or 0o160000 (gitlink). */
  mode: number;
  /** Object id (40 hex: SHA-1). */
  oid: string;
  /** Blob size in bytes (symlink: target length; gitlink: 0). */
  size: number;
}

const HEADER_LEN = 12;
const TRAILER_LEN = 20;
/** ctime(8) mtime(8) dev ino mode uid gid size (6×4) sha-1(20) flags(2). */
const ENTRY_FIXED_LEN = 62;
const NAME_MASK = 0xfff;
const CHUNK_TARGET = 64 * 1024;
const VALID_MODES = new Set([0o100644, 0o100755, 0o120000, 0o160000]);

/** Sorts entries in the order git requires: by path bytes (memcmp), then by length. */
export function sortIndexEntries(entries: GitIndexEntry[]): GitIndexEntry[] {
  return entries.sort((a, b) => Buffer.compare(a.path, b.path));
}

/** The length on disk of one entry: fixed part + path + 1..8 NULs to the next multiple of 8. */
function entryLength(pathLength: number): number {
  return (ENTRY_FIXED_LEN + pathLength + 8) & ~7;
}

/** The exact byte length of the index that `gitIndexChunks` produces for these entries. */
export function gitIndexSize(entries: readonly GitIndexEntry[]): number {
  let size = HEADER_LEN + TRAILER_LEN;
  for (const entry of entries) size += entryLength(entry.path.length);
  return size;
}

/**
 * Yields the index file's bytes. `entries` MUST already be sorted (see `sortIndexEntries`) and hold no
 * duplicate paths; `statTime` (seconds) is written as every entry's ctime and mtime.
 */
export function* gitIndexChunks(entries: readonly GitIndexEntry[], statTime: number): Generator<Buffer> {
  if (!Number.isInteger(statTime) || statTime < 0 || statTime > 0xffffffff) {
    throw new RangeError(`index stat time out of range: ${statTime}`);
  }
  const sha1 = createHash('sha1');
  const emit = (chunk: Buffer): Buffer => {
    sha1.update(chunk);
    return chunk;
  };

  const header = Buffer.alloc(HEADER_LEN);
  header.write('DIRC', 0, 'latin1');
  header.writeUInt32BE(2, 4);
  header.writeUInt32BE(entries.length, 8);
  yield emit(header);

  let batch: Buffer[] = [];
  let batchLen = 0;
  let previous: Buffer | undefined;
  for (const entry of entries) {
    if (previous !== undefined && Buffer.compare(previous, entry.path) >= 0) {
      throw new RangeError('index entries must be sorted by path and unique');
    }
    previous = entry.path;
    const encoded = encodeEntry(entry, statTime);
    batch.push(encoded);
    batchLen += encoded.length;
    if (batchLen >= CHUNK_TARGET) {
      yield emit(Buffer.concat(batch, batchLen));
      batch = [];
      batchLen = 0;
    }
  }
  if (batchLen > 0) yield emit(Buffer.concat(batch, batchLen));
  yield sha1.digest();
}

function encodeEntry(entry: GitIndexEntry, statTime: number): Buffer {
  if (!VALID_MODES.has(entry.mode)) throw new RangeError(`unsupported index mode ${entry.mode.toString(8)}`);
  if (!isSha1ObjectId(entry.oid)) throw new RangeError(`not a SHA-1 object id: ${entry.oid}`);
  if (entry.path.length === 0 || entry.path.includes(0)) throw new RangeError('invalid index path');
  const buf = Buffer.alloc(entryLength(entry.path.length)); // zero-filled: dev/ino/uid/gid, nsecs, padding
  buf.writeUInt32BE(statTime, 0); // ctime seconds
  buf.writeUInt32BE(statTime, 8); // mtime seconds
  buf.writeUInt32BE(entry.mode, 24);
  // Git keeps only the low 32 bits of the size and compares them the same way.
  buf.writeUInt32BE(entry.size % 0x1_0000_0000, 36);
  buf.write(entry.oid, 40, 'hex');
  buf.writeUInt16BE(Math.min(entry.path.length, NAME_MASK), 60); // flags: stage 0, name length
  entry.path.copy(buf, ENTRY_FIXED_LEN);
  return buf;
}
