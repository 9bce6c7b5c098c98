/**
 * The index's real stat data, patched in on the extraction thread while the work tree is written,
 * and the proof that the work tree is exactly what the index lists.
 *
 * Why: after extraction, the restore rewrote the whole index from the recorded stat data
 * (index-stat.ts: 80–100 ms on the bench repository's 13,554 files) and ran `git status` (90–130 ms)
 * to check the clone is clean, both on the critical path after the last byte. The extraction thread
 * holds the same facts earlier: the archive's `.git/index` comes before the work tree (v10 layout,
 * docs/snapshots.md), and every file's final stat data passes through here as the thread writes it.
 *
 * So this sink keeps a copy of `.git/index` as it is extracted (up to 64 MiB), and patches each
 * entry's 40 stat-field bytes (stat-table.ts layout; the entry's own mode kept) when its file is
 * written. At the end, `result()` gives the patched index (new checksum) only when the work tree is
 * **exact**: every entry was written after the index, as the type the index names, with the size
 * it records and the executable bit it records, no gitlink (submodule) is involved, and nothing but
 * the index's entries was written outside `.git`. That is what `git status` would conclude from the
 * index's stat data and a walk for untracked files, so the restore then only needs git to compare
 * the index with HEAD (finish-clone.ts). Anything else (another archive layout, an untracked file, a
 * size that differs, an index we cannot parse) gives `undefined`, and the restore takes the old way:
 * the full rewrite from the stat table and `git status`.
 */
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { CHECKSUM_BYTES, ENTRY_FIXED_BYTES, GITLINK, HEADER_BYTES, MODE_TYPE_MASK, NAME_MASK, SIZE_OFFSET, entryLengthAt, isVersion2Index } from './index-format.js';
import { MODE_OFFSET, writeStatFields, type StatSink } from './stat-table.js';
import type { EntrySink } from './tar-filter.js';

const INDEX_PATH = '.git/index';
/** A larger index is left to index-stat.ts (it streams). 64 MiB is ~600,000 files. */
const MAX_INDEX_BYTES = 64 * 1024 * 1024;
const REGULAR_FILE = 0o100000;
const EXECUTABLE_FILE = 0o100755;
const OWNER_EXECUTE = 0o100;

/** An EntrySink in front of the tree writer and the StatSink it reports to; see the module comment. */
export class IndexPatcher implements EntrySink, StatSink {
  private capture?: { bytes: Buffer; filled: number };
  private index?: Buffer;
  /** Entries not yet written, by name: offset of the entry in `index`. */
  private readonly pending = new Map<string, number>();
  private entryCount = 0;
  private patched = 0;
  /** Files and symlinks written outside `.git`. */
  private writtenOutside = 0;
  /** Something made the tree not exact (see the module comment). */
  private spoiled = false;
  /** The entry being written is `.git/index`. */
  private inIndex = false;

  /** `next` is the tree writer; `stats` gets every record too (the fallback's stat table). */
  constructor(
    private readonly stats?: StatSink,
    private next?: EntrySink,
  ) {}

  /** The sink entries go to (the tree writer, which is made after this, as it reports here). */
  setNext(next: EntrySink): void {
    this.next = next;
  }

  directory(path: string, mode: number, mtime: number): void {
    this.next!.directory(path, mode, mtime);
  }

  symlink(path: string, target: string, mtime: number): void {
    this.next!.symlink(path, target, mtime);
  }

  fileStart(path: string, mode: number, mtime: number, size: number): void {
    this.inIndex = path === INDEX_PATH;
    if (this.inIndex) {
      if (this.index !== undefined || size > MAX_INDEX_BYTES) this.spoiled = true;
      else this.capture = { bytes: Buffer.allocUnsafe(size), filled: 0 };
    }
    this.next!.fileStart(path, mode, mtime, size);
  }

  fileData(bytes: Buffer): void {
    const capture = this.inIndex ? this.capture : undefined;
    if (capture !== undefined) capture.filled += bytes.copy(capture.bytes, capture.filled);
    this.next!.fileData(bytes);
  }

  fileEnd(): void {
    // The writer records the index's own stat data from within fileEnd: parse after it.
    this.next!.fileEnd();
    if (!this.inIndex) return;
    this.inIndex = false;
    const capture = this.capture;
    this.capture = undefined;
    if (capture !== undefined && capture.filled === capture.bytes.length && this.load(capture.bytes)) this.index = capture.bytes;
    else this.spoiled = true;
  }

  record(path: string, stats: BigIntStats): void {
    this.stats?.record(path, stats);
    if (path === '.git' || path.startsWith('.git/')) return;
    this.writtenOutside++;
    const index = this.index;
    const at = index === undefined ? undefined : this.pending.get(path);
    if (index === undefined || at === undefined) return; // written before the index, or untracked
    this.pending.delete(path);
    const mode = index.readUInt32BE(at + MODE_OFFSET);
    const actual = Number(stats.mode);
    const sameType = (mode & MODE_TYPE_MASK) === (actual & MODE_TYPE_MASK);
    // git (core.filemode) sees an executable file where the owner may execute it.
    const sameExec = (mode & MODE_TYPE_MASK) !== REGULAR_FILE || (mode === EXECUTABLE_FILE) === ((actual & OWNER_EXECUTE) !== 0);
    const sameSize = index.readUInt32BE(at + SIZE_OFFSET) === Number(stats.size & 0xffffffffn);
    if (!sameType || !sameExec || !sameSize) {
      this.spoiled = true;
      return;
    }
    writeStatFields(stats, index, at);
    index.writeUInt32BE(mode, at + MODE_OFFSET); // the index's own mode (git normalises it)
    this.patched++;
  }

  /**
   * The patched index, checksummed, in a buffer of its own (transferable), when the work tree is
   * exact; undefined otherwise. Call once, after the last entry.
   */
  result(): ArrayBuffer | undefined {
    const index = this.index;
    if (index === undefined || this.spoiled || this.patched !== this.entryCount || this.writtenOutside !== this.patched) return undefined;
    const body = index.length - CHECKSUM_BYTES;
    createHash('sha1').update(index.subarray(0, body)).digest().copy(index, body);
    const own = new ArrayBuffer(index.length);
    new Uint8Array(own).set(index);
    return own;
  }

  /** Checks `bytes` (checksum, version 2, entries within bounds, no gitlink) and lists its entries. */
  private load(bytes: Buffer): boolean {
    if (!isVersion2Index(bytes)) return false;
    const body = bytes.length - CHECKSUM_BYTES;
    if (!createHash('sha1').update(bytes.subarray(0, body)).digest().equals(bytes.subarray(body))) return false;
    const count = bytes.readUInt32BE(8);
    const entries = bytes.subarray(0, body);
    let at = HEADER_BYTES;
    for (let i = 0; i < count; i++) {
      const length = entryLengthAt(entries, at);
      if (typeof length !== 'number') return false; // malformed, or a name of 4095 bytes or more
      if ((entries.readUInt32BE(at + MODE_OFFSET) & MODE_TYPE_MASK) === GITLINK) return false;
      const nameStart = at + ENTRY_FIXED_BYTES;
      const name = entries.toString('latin1', nameStart, nameStart + (entries.readUInt16BE(at + 60) & NAME_MASK));
      if (this.pending.has(name)) return false; // a path twice (stages of a conflict): not a clean checkout
      this.pending.set(name, at);
      at += length;
    }
    this.entryCount = count;
    return true;
  }
}
