/**
 * The stat data of the entries the extraction thread wrote, recorded while it wrote them.
 *
 * After extraction the client writes every file's real stat data into the clone's index
 * (index-stat.ts). An lstat pass over the finished tree did that on the main thread, after the
 * download, on the restore's critical path: 13,500 BigInt lstats took ~80 ms there, plus their
 * garbage. The extraction thread, which waits for data most of the time, already holds each file open:
 * one `fstat` after its mtime is set (nothing changes the inode afterwards) gives the same data at no
 * cost to the critical path. Entries the table lacks (it is capped) are lstat'ed as before, and the
 * final `git status` still compares every file against the index.
 *
 * A record is `u16 path length, path (latin1, as the tar filter normalised it), 40 bytes` laid out as
 * an index entry's stat fields: ctime s, ctime ns, mtime s, mtime ns, dev, ino, mode, uid, gid, size
 * (big-endian u32, truncated as git truncates them).
 */
import type { BigIntStats } from 'node:fs';

/** Bytes of one record's stat fields: the first 40 bytes of a version-2 index entry. */
export const STAT_FIELDS_BYTES = 40;
/** Offset of `mode` within the stat fields. */
export const MODE_OFFSET = 24;
/** The table stops growing here (about 300,000 files): memory stays bounded whatever the tree. */
export const MAX_TABLE_BYTES = 32 * 1024 * 1024;
const CHUNK_BYTES = 1024 * 1024;
const BILLION = 1_000_000_000n;

/** Writes the 40 stat-field bytes of `stats` into `out` at `at` (index layout); returns the end offset. */
export function writeStatFields(stats: BigIntStats, out: Buffer, at: number): number {
  const values = [
    stats.ctimeNs / BILLION,
    stats.ctimeNs % BILLION,
    stats.mtimeNs / BILLION,
    stats.mtimeNs % BILLION,
    stats.dev,
    stats.ino,
    stats.mode,
    stats.uid,
    stats.gid,
    stats.size,
  ];
  for (const value of values) at = out.writeUInt32BE(Number(value & 0xffffffffn), at);
  return at;
}

/** Where the tree writer reports each written file's and symlink's final stat data (tree-writer.ts). */
export interface StatSink {
  record(path: string, stats: BigIntStats): void;
}

/** Collects records on the extraction thread; `take` hands them over as one transferable buffer. */
export class StatRecorder implements StatSink {
  private readonly chunks: Buffer[] = [];
  private current = Buffer.allocUnsafe(CHUNK_BYTES);
  private used = 0;
  private total = 0;

  constructor(private readonly maxBytes = MAX_TABLE_BYTES) {}

  /** Records `stats` for `path` (an extraction-relative path); ignored once the table is full. */
  record(path: string, stats: BigIntStats): void {
    const length = 2 + Buffer.byteLength(path, 'latin1') + STAT_FIELDS_BYTES;
    if (path.length > 0xffff || this.total + length > this.maxBytes) return;
    if (this.used + length > this.current.length) {
      this.chunks.push(this.current.subarray(0, this.used));
      this.current = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, length));
      this.used = 0;
    }
    const out = this.current;
    let at = out.writeUInt16BE(path.length, this.used);
    at += out.write(path, at, 'latin1');
    at = writeStatFields(stats, out, at);
    this.used = at;
    this.total += length;
  }

  /** Every record so far, in one buffer of its own (transferable to another thread). */
  take(): ArrayBuffer {
    const all = Buffer.concat([...this.chunks, this.current.subarray(0, this.used)]);
    // concat may return a view into Node's shared pool: copy into an ArrayBuffer of exactly our bytes.
    const own = new ArrayBuffer(all.length);
    new Uint8Array(own).set(all);
    return own;
  }
}

/** The main thread's lookup over a recorder's buffer. */
export class StatTable {
  private readonly bytes: Buffer;
  /** Built on first use (11–13 ms for 13,500 records): a restore whose index came patched never needs it. */
  private lookup?: Map<string, number>;

  constructor(buffer: ArrayBuffer) {
    this.bytes = Buffer.from(buffer);
  }

  get size(): number {
    return this.offsets().size;
  }

  private offsets(): Map<string, number> {
    if (this.lookup !== undefined) return this.lookup;
    const offsets = new Map<string, number>();
    for (let at = 0; at + 2 <= this.bytes.length; ) {
      const length = this.bytes.readUInt16BE(at);
      const fields = at + 2 + length;
      if (fields + STAT_FIELDS_BYTES > this.bytes.length) break; // never happens with a recorder's buffer
      offsets.set(this.bytes.toString('latin1', at + 2, fields), fields);
      at = fields + STAT_FIELDS_BYTES;
    }
    this.lookup = offsets;
    return offsets;
  }

  /**
   * Copies the 40 stat-field bytes recorded for `path` (latin1) into `target` at `at`; false when it
   * was not recorded. No view is made: the index rewrite calls this once per entry.
   */
  copyFields(path: string, target: Buffer, at: number): boolean {
    const from = this.offsets().get(path);
    if (from === undefined) return false;
    this.bytes.copy(target, at, from, from + STAT_FIELDS_BYTES);
    return true;
  }

  /** A copy of the 40 stat-field bytes recorded for `path` (latin1), or undefined when it was not recorded. */
  fields(path: string): Buffer | undefined {
    const out = Buffer.alloc(STAT_FIELDS_BYTES);
    return this.copyFields(path, out, 0) ? out : undefined;
  }
}
