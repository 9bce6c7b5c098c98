/**
 * Gives a restored clone the index a checkout would have written, so that it needs none of the
 * snapshot's own config keys.
 *
 * The snapshot's `.git/index` cannot know the stat data of files that do not exist yet: it carries the
 * commit time as mtime and zeros for ctime, device, inode, uid and gid, and the archive's config sets
 * `core.checkStat=minimal` and `core.trustctime=false` so that git compares only what tar extraction
 * restores (docs/snapshots.md). Those keys are right for `tar -x`, but in a user's clone they would
 * stay forever and make git blind to a file replaced with the same size and mtime. So after
 * extraction the client writes each entry's real stat data into the index — no file is read or
 * hashed: the entries and the files come from the same verified archive — and removes both keys. The
 * stat data comes from the extraction thread, which recorded it as it wrote each file
 * (stat-table.ts); an entry it did not record is lstat'ed here.
 * `git status` is then a plain stat comparison under git's default, strict rules.
 *
 * Only an index git can read as version 2 (what the generator writes) is rewritten, only when the
 * archive's config carries `core.checkStat=minimal`, and only if its checksum verifies; anything else
 * leaves index and config as they are (still a correct clone, with the snapshot's keys). The index is
 * streamed in batches (bounded memory whatever the number of files) into `index.lock`, which is then
 * renamed over the index, as git itself does.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants, lstatSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { abortReason } from '../util/errors.js';
import { runGit } from './git.js';
import { CHECKSUM_BYTES, ENTRY_FIXED_BYTES, EXTENDED_FLAG, GITLINK, HEADER_BYTES, MODE_TYPE_MASK, NAME_MASK, entryLengthAt } from './index-format.js';
import { MODE_OFFSET, STAT_FIELDS_BYTES, writeStatFields, type StatTable } from './stat-table.js';

const READ_BYTES = 1024 * 1024;
/** An index up to this size is read in one piece: 64 MiB is ~600,000 files. */
const WHOLE_READ_LIMIT = 64 * 1024 * 1024;
/** Entries patched and written per step (bounded memory whatever the number of files). */
const BATCH_ENTRIES = 4096;

/** Why the index was left alone, or 'adopted'. */
export type AdoptResult = 'adopted' | 'not a snapshot index' | 'unsupported index';

/**
 * Rewrites `<cloneDir>/.git/index` with the work tree's real stat data and drops the snapshot's
 * `core.checkStat`/`core.trustctime`. See the module comment for when it declines. `patched` is the
 * whole new index when the extraction thread already made it (index-patcher.ts): it is written as is.
 */
export async function adoptWorkTreeStats(cloneDir: string, signal?: AbortSignal, recorded?: StatTable, patched?: Buffer): Promise<AdoptResult> {
  const configPath = path.join(cloneDir, '.git', 'config');
  const config = await fs.readFile(configPath, 'utf8').catch(() => '');
  if (!SNAPSHOT_CHECK_STAT.test(config)) return 'not a snapshot index';
  const indexPath = path.join(cloneDir, '.git', 'index');
  const lockPath = `${indexPath}.lock`;
  const lock = await fs.open(lockPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644);
  let ok = false;
  try {
    if (patched !== undefined) {
      await lock.writeFile(patched);
      ok = true;
    } else {
      ok = await rewriteIndex(cloneDir, indexPath, lock, signal, recorded);
    }
    await lock.sync();
  } finally {
    await lock.close();
    if (!ok) await fs.rm(lockPath, { force: true });
  }
  if (!ok) return 'unsupported index';
  // The index first, then the config: a `git status` running meanwhile (finish-clone.ts, cleanStatus)
  // never sees the strict stat rules with the extracted index's placeholder stat data.
  await fs.rename(lockPath, indexPath);
  await dropSnapshotKeys(cloneDir, configPath, config, signal);
  return 'adopted';
}

/** The generator's line (git-dir-files.ts); a config without it is not one we wrote. */
const SNAPSHOT_CHECK_STAT = /^\tcheckStat = minimal$/m;
/** The generator's two lines in its `[core]` section, exactly as it writes them. */
const SNAPSHOT_KEYS = '\tcheckStat = minimal\n\ttrustctime = false\n';

/**
 * Removes `core.checkStat` and `core.trustctime` from the clone's config. The config is the
 * generator's own: when its two lines are there as written, they are cut out of the text (written to
 * git's lock name, renamed over), which saves two `git config` processes; any other shape goes
 * through `git config`.
 */
async function dropSnapshotKeys(cloneDir: string, configPath: string, config: string, signal?: AbortSignal): Promise<void> {
  const at = config.indexOf(SNAPSHOT_KEYS);
  if (at >= 0 && config.indexOf(SNAPSHOT_KEYS, at + 1) < 0 && /^\[core\]\n(\t[^\n]*\n)*$/.test(config.slice(config.lastIndexOf('\n[', at) + 1, at))) {
    const lockPath = `${configPath}.lock`;
    await fs.writeFile(lockPath, config.slice(0, at) + config.slice(at + SNAPSHOT_KEYS.length), { flag: 'wx' });
    await fs.rename(lockPath, configPath);
    return;
  }
  await runGit(['config', '--local', '--unset', 'core.checkStat'], cloneDir, signal);
  await runGit(['config', '--local', '--unset-all', 'core.trustctime'], cloneDir, signal).catch(() => undefined);
}

/** Sequential reader over a file handle that hands out exact byte counts, reading 1 MiB at a time. */
class IndexReader {
  private buffer = Buffer.alloc(0);
  private offset = 0;
  private position = 0;
  /** Bytes handed out so far. */
  consumed = 0;

  constructor(
    private readonly handle: fs.FileHandle,
    readonly size: number,
  ) {}

  /** Makes `length` bytes available at the read offset; false when the file ends first. */
  private async fill(length: number): Promise<boolean> {
    while (this.buffer.length - this.offset < length) {
      if (this.position >= this.size) return false;
      const chunk = Buffer.alloc(Math.min(Math.max(READ_BYTES, length), this.size - this.position));
      const { bytesRead } = await this.handle.read(chunk, 0, chunk.length, this.position);
      if (bytesRead === 0) return false;
      this.position += bytesRead;
      // Bytes already handed out stay valid: concat copies into a new buffer.
      this.buffer = Buffer.concat([this.buffer.subarray(this.offset), chunk.subarray(0, bytesRead)]);
      this.offset = 0;
    }
    return true;
  }

  /** The next `length` bytes without consuming them, or undefined when the file ends first. */
  async peek(length: number): Promise<Buffer | undefined> {
    return this.peekBuffered(length) ?? ((await this.fill(length)) ? this.buffer.subarray(this.offset, this.offset + length) : undefined);
  }

  /** Every byte already read and not yet consumed, as one view (no I/O, no promise). */
  bufferedView(): Buffer {
    return this.buffer.subarray(this.offset);
  }

  /** The next `length` bytes if they are already read, else undefined (no I/O, no promise). */
  peekBuffered(length: number): Buffer | undefined {
    return this.buffer.length - this.offset >= length ? this.buffer.subarray(this.offset, this.offset + length) : undefined;
  }

  /** Consumes `length` bytes that peekBuffered returned. */
  skip(length: number): void {
    this.offset += length;
    this.consumed += length;
  }

  /** The next `length` bytes, or undefined when the file ends first. */
  async take(length: number): Promise<Buffer | undefined> {
    const bytes = await this.peek(length);
    if (bytes !== undefined) this.skip(length);
    return bytes;
  }
}

/** Streams the patched index into `out`; false when the index is not one we can rewrite. */
async function rewriteIndex(cloneDir: string, indexPath: string, out: fs.FileHandle, signal?: AbortSignal, recorded?: StatTable): Promise<boolean> {
  const input = await fs.open(indexPath, 'r');
  try {
    const size = (await input.stat()).size;
    if (size < HEADER_BYTES + CHECKSUM_BYTES) return false;
    const reader = new IndexReader(input, size);
    // An index of ordinary size is read at once (one read, no concatenation per megabyte).
    if (size <= WHOLE_READ_LIMIT) await reader.peek(size);
    const original = createHash('sha1');
    const patched = createHash('sha1');
    const write = async (bytes: Buffer): Promise<void> => {
      patched.update(bytes);
      await out.write(bytes);
    };
    const header = (await reader.take(HEADER_BYTES))!;
    original.update(header);
    if (header.toString('latin1', 0, 4) !== 'DIRC' || header.readUInt32BE(4) !== 2) return false;
    let remaining = header.readUInt32BE(8);
    await write(header);
    const root = Buffer.from(cloneDir + path.sep);
    while (remaining > 0) {
      if (signal?.aborted) throw abortReason(signal);
      // The entries already buffered are found and patched by offset within one view: a Buffer view
      // per entry (six of them for each of 13,500 entries) cost ~20 ms of garbage collection and
      // ~13 ms of construction on the restore's critical path (profile, docs/restore.md).
      const region = reader.bufferedView();
      let end = 0;
      let count = 0;
      while (count < BATCH_ENTRIES && count < remaining) {
        const length = entryLengthAt(region, end);
        if (length === undefined) return false;
        if (length === 'more') break;
        end += length;
        count++;
      }
      if (count === 0) {
        // Not buffered yet, or a name of 4095 bytes or more: one entry the slow way.
        const entry = await readEntry(reader);
        if (entry === undefined) return false;
        original.update(entry);
        if (!patchEntry(root, entry, 0, recorded)) return false;
        remaining--;
        await write(entry);
        continue;
      }
      // One hash and write per batch, patched in place (the reader never reuses bytes it handed out).
      // A write per entry (15,000 awaited thread-pool round trips on the bench repository) took 2 s.
      const bytes = region.subarray(0, end);
      reader.skip(end);
      original.update(bytes);
      for (let at = 0; at < end; at += entryLengthAt(bytes, at) as number) {
        if (!patchEntry(root, bytes, at, recorded)) return false;
      }
      remaining -= count;
      await write(bytes);
    }
    // Extensions (e.g. TREE) do not depend on stat data: copied as they are, up to the checksum.
    while (reader.consumed < size - CHECKSUM_BYTES) {
      const bytes = (await reader.take(Math.min(READ_BYTES, size - CHECKSUM_BYTES - reader.consumed)))!;
      original.update(bytes);
      await write(bytes);
    }
    const checksum = await reader.take(CHECKSUM_BYTES);
    if (checksum === undefined || !original.digest().equals(checksum)) return false;
    await out.write(patched.digest());
    return true;
  } finally {
    await input.close();
  }
}

/** One version-2 entry with its padding, or undefined when malformed. */
async function readEntry(reader: IndexReader): Promise<Buffer | undefined> {
  const fixed = await reader.peek(ENTRY_FIXED_BYTES);
  if (fixed === undefined) return undefined;
  const flags = fixed.readUInt16BE(60);
  if ((flags & EXTENDED_FLAG) !== 0) return undefined; // not valid in version 2
  let nameLength = flags & NAME_MASK;
  if (nameLength === NAME_MASK) {
    // A name of 4095 bytes or more: its length is where the NUL is.
    const longest = await reader.peek(Math.min(reader.size - reader.consumed, ENTRY_FIXED_BYTES + 64 * 1024));
    const nul = longest?.indexOf(0, ENTRY_FIXED_BYTES) ?? -1;
    if (nul < 0) return undefined;
    nameLength = nul - ENTRY_FIXED_BYTES;
  }
  // The entry is padded with 1 to 8 NUL bytes to a multiple of 8.
  const length = (ENTRY_FIXED_BYTES + nameLength + 8) & ~7;
  return reader.take(length);
}

/**
 * Writes the stat data of the entry at `at` in `bytes` in place (recorded at extraction, else
 * lstat'ed); false when the file is missing or of another type. Synchronous on purpose: right after
 * extraction the inodes are cached and an lstat costs a few microseconds, while a promise per file
 * through libuv's pool cost ~30 µs each (0.5 s for 15,000).
 */
function patchEntry(root: Buffer, bytes: Buffer, at: number, recorded?: StatTable): boolean {
  const mode = bytes.readUInt32BE(at + MODE_OFFSET);
  if ((mode & MODE_TYPE_MASK) === GITLINK) return true; // git ignores stat data of gitlinks
  const nameStart = at + ENTRY_FIXED_BYTES;
  const nameEnd = bytes.indexOf(0, nameStart);
  // Every stat field is copied, then the mode is put back: the index's own (git normalises it).
  if (recorded?.copyFields(bytes.toString('latin1', nameStart, nameEnd), bytes, at) !== true) {
    const fields = lstatFields(Buffer.concat([root, bytes.subarray(nameStart, nameEnd)]));
    if (fields === undefined) return false;
    fields.copy(bytes, at);
  }
  const written = bytes.readUInt32BE(at + MODE_OFFSET);
  bytes.writeUInt32BE(mode, at + MODE_OFFSET);
  return (written & MODE_TYPE_MASK) === (mode & MODE_TYPE_MASK);
}

/** `file`'s stat fields laid out as in an index entry (stat-table.ts), or undefined if it is missing. */
function lstatFields(file: Buffer): Buffer | undefined {
  let st;
  try {
    st = lstatSync(file, { bigint: true });
  } catch {
    return undefined;
  }
  const fields = Buffer.alloc(STAT_FIELDS_BYTES);
  writeStatFields(st, fields, 0);
  return fields;
}
