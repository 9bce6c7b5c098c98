/**
 * A streaming tar filter: parses every header of an untrusted tar stream, admits or refuses each entry
 * (entry-policy.ts), and tells an EntrySink (tree-writer.ts) what to create: only admitted entries,
 * by their normalised path, with permission bits only, each file followed by its content bytes passed
 * through untouched (views into the input chunks, never copies).
 *
 * The writer never sees a header byte: the filter is the only tar parser, so there is no room for two
 * parsers to disagree about an entry's name, type or size (pax keys we ignore, GNU extensions,
 * checksum quirks).
 *
 * An unsafe entry throws before the sink hears of it, so nothing of it is ever written.
 */
import { SecondaryError, UnsafeArchiveError } from './errors.js';
import { EntryPolicy } from './entry-policy.js';
import { BLOCK, decodeHeader, isZeroBlock, paddingLength, parsePax, type PaxOverrides, type RawHeader } from './tar-format.js';

/**
 * Where the filter sends what it admitted, in archive order. Paths are normalised and relative to the
 * extraction root (binary strings: one char per byte; no `.`, `..` or empty components, no trailing
 * slash); modes are permission bits only (no setuid, setgid or sticky); times are seconds.
 */
export interface EntrySink {
  directory(path: string, mode: number, mtime: number): void;
  symlink(path: string, target: string, mtime: number): void;
  /** A regular file of `size` bytes: its content follows in `fileData` calls, then `fileEnd`. */
  fileStart(path: string, mode: number, mtime: number, size: number): void;
  /** Content bytes, valid only during the call (a view of the filter's input). */
  fileData(bytes: Buffer): void;
  fileEnd(): void;
}

/** Pax and GNU long-name records are names, not content: anything larger is not a real archive. */
const MAX_META_BYTES = 1024 * 1024;

export interface FilterStats {
  /** Entries admitted (files, directories, symlinks; the root entry included). */
  entries: number;
  files: number;
  /** Bytes of regular-file content forwarded. */
  bytes: number;
}

type State =
  | { at: 'header' }
  | { at: 'meta'; header: RawHeader; parts: Buffer[]; have: number }
  | { at: 'content'; remaining: number; padding: number }
  | { at: 'skip'; remaining: number }
  | { at: 'ended' };

/** Feed it chunks in order with `push`, then call `finish`. */
export class TarFilter {
  readonly stats: FilterStats = { entries: 0, files: 0, bytes: 0 };
  private readonly policy = new EntryPolicy();
  private state: State = { at: 'header' };
  /** Bytes of a header block split across input chunks. */
  private partial: Buffer[] = [];
  private partialLength = 0;
  /** Overrides from pax (`x`) and GNU long-name/long-link records, for the next entry only. */
  private pending: PaxOverrides = {};

  constructor(private readonly sink: EntrySink) {}

  /**
   * Consumes `chunk`, telling the sink what it completes. Throws UnsafeArchiveError. Keeps no view of
   * `chunk` once it returns (bytes it needs later are copied), so the caller may reuse the memory.
   */
  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      const state = this.state;
      switch (state.at) {
        case 'ended':
          return; // whatever follows the end marker (record padding) is not part of the archive
        case 'header': {
          const block = this.takeBlock(chunk, at);
          if (!block) return; // the rest of this chunk is the start of a header
          at = block.next;
          this.onHeader(block.buf, block.offset);
          break;
        }
        case 'meta': {
          const take = Math.min(chunk.length - at, state.header.size + paddingLength(state.header.size) - state.have);
          state.parts.push(Buffer.from(chunk.subarray(at, at + take))); // a copy: see push()
          state.have += take;
          at += take;
          if (state.have === state.header.size + paddingLength(state.header.size)) {
            this.onMeta(state.header, Buffer.concat(state.parts).subarray(0, state.header.size));
            this.state = { at: 'header' };
          }
          break;
        }
        case 'content': {
          const take = Math.min(chunk.length - at, state.remaining);
          if (take > 0) this.sink.fileData(take === chunk.length ? chunk : chunk.subarray(at, at + take));
          state.remaining -= take;
          at += take;
          if (state.remaining === 0) {
            this.sink.fileEnd();
            this.state = state.padding > 0 ? { at: 'skip', remaining: state.padding } : { at: 'header' };
          }
          break;
        }
        case 'skip': {
          const take = Math.min(chunk.length - at, state.remaining);
          state.remaining -= take;
          at += take;
          if (state.remaining === 0) this.state = { at: 'header' };
          break;
        }
      }
    }
  }

  /** Call after the last chunk: throws if the archive stopped before its end-of-archive marker. */
  finish(): void {
    // Usually the symptom of a decompressor that died (reported on its own); else the only error.
    if (this.state.at !== 'ended') throw new SecondaryError('snapshot archive is truncated (no end-of-archive marker)');
  }

  /** Where the header block starting at `at` is (joining a block split over chunks), or undefined for now. */
  private takeBlock(chunk: Buffer, at: number): { buf: Buffer; offset: number; next: number } | undefined {
    if (this.partialLength === 0 && chunk.length - at >= BLOCK) return { buf: chunk, offset: at, next: at + BLOCK };
    const take = Math.min(BLOCK - this.partialLength, chunk.length - at);
    this.partial.push(Buffer.from(chunk.subarray(at, at + take))); // a copy: see push()
    this.partialLength += take;
    if (this.partialLength < BLOCK) return undefined;
    const buf = Buffer.concat(this.partial, BLOCK);
    this.partial = [];
    this.partialLength = 0;
    return { buf, offset: 0, next: at + take };
  }

  private onHeader(buf: Buffer, offset: number): void {
    if (isZeroBlock(buf, offset)) {
      this.state = { at: 'ended' };
      return;
    }
    const header = decodeHeader(buf, offset);
    switch (header.kind) {
      case 'pax':
      case 'pax-global':
      case 'gnu-long-name':
      case 'gnu-long-link':
        if (header.size > MAX_META_BYTES) throw new UnsafeArchiveError(`oversized ${header.kind} record`);
        this.state = header.size === 0 ? { at: 'header' } : { at: 'meta', header, parts: [], have: 0 };
        if (header.size === 0) this.onMeta(header, Buffer.alloc(0));
        return;
      default:
        this.onEntry(header);
    }
  }

  private onMeta(header: RawHeader, body: Buffer): void {
    if (header.kind === 'pax') {
      this.pending = { ...this.pending, ...parsePax(body) };
    } else if (header.kind === 'pax-global') {
      // Global records would apply to every later entry; a snapshot never needs one that matters.
      const global = parsePax(body);
      if (global.path || global.linkpath || global.size !== undefined) throw new UnsafeArchiveError('global pax header sets a path or size');
    } else {
      const nul = body.indexOf(0);
      const value = body.toString('latin1', 0, nul === -1 ? body.length : nul);
      if (header.kind === 'gnu-long-name') this.pending.path = value;
      else this.pending.linkpath = value;
    }
  }

  private onEntry(header: RawHeader): void {
    const overrides = this.pending;
    this.pending = {};
    const name = overrides.path ?? header.name;
    const linkname = overrides.linkpath ?? header.linkname;
    const size = overrides.size ?? header.size;
    const type = header.kind === 'unsupported' ? `type ${JSON.stringify(String.fromCharCode(header.typeflag))}` : header.kind;
    const path = this.policy.admit(type, name, linkname);
    this.stats.entries++;
    const mode = header.mode & 0o777;
    const mtime = overrides.mtime ?? header.mtime;
    // Directories and symlinks have no content; any bytes a header claims for them are skipped.
    const padding = paddingLength(size);
    if (header.kind !== 'file') {
      if (path !== undefined && header.kind === 'directory') this.sink.directory(path, mode, mtime);
      if (path !== undefined && header.kind === 'symlink') this.sink.symlink(path, linkname, mtime);
      this.state = size === 0 ? { at: 'header' } : { at: 'skip', remaining: size + padding };
      return;
    }
    // admit() refuses a file entry for the root, so a file always has a path.
    this.stats.files++;
    this.stats.bytes += size;
    this.sink.fileStart(path as string, mode, mtime, size);
    if (size > 0) {
      this.state = { at: 'content', remaining: size, padding };
    } else {
      this.sink.fileEnd();
      this.state = { at: 'header' };
    }
  }
}
