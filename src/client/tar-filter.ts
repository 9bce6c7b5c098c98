/**
 * A streaming tar filter: parses every header of an untrusted tar stream, admits or refuses each entry
 * (entry-policy.ts), and produces a new tar stream made only of headers we encoded ourselves for the
 * admitted entries, each followed by the entry's content bytes passed through untouched.
 *
 * Why re-encode rather than forward the original headers: the writer (the system `tar`) then never
 * parses a byte of header we did not write, so there is no room for the two parsers to disagree about
 * an entry's name, type or size (pax keys we ignore, GNU extensions, checksum quirks). Content bytes
 * are forwarded as views into the input chunks, without copying.
 *
 * An unsafe entry throws before any output for it is returned, so nothing of it is ever written.
 */
import { SecondaryError, UnsafeArchiveError } from './errors.js';
import { EntryPolicy } from './entry-policy.js';
import { BLOCK, END_OF_ARCHIVE, decodeHeader, encodeCanonical, isZeroBlock, paddingLength, parsePax, type PaxOverrides, type RawHeader } from './tar-format.js';

/** Pax and GNU long-name records are names, not content: anything larger is not a real archive. */
const MAX_META_BYTES = 1024 * 1024;
const ZEROS = Buffer.alloc(BLOCK);
/** PADDINGS[n]: n zero bytes, made once. */
const PADDINGS: Buffer[] = Array.from({ length: BLOCK }, (_, n) => ZEROS.subarray(0, n));

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
  | { at: 'content'; remaining: number; forward: boolean; padding: number }
  | { at: 'skip'; remaining: number }
  | { at: 'ended' };

/** Feed it chunks in order with `push`, then call `finish`; forward what `push` returns, in order. */
export class TarFilter {
  readonly stats: FilterStats = { entries: 0, files: 0, bytes: 0 };
  private readonly policy = new EntryPolicy();
  private state: State = { at: 'header' };
  /** Bytes of a header block split across input chunks. */
  private partial: Buffer[] = [];
  private partialLength = 0;
  /** Overrides from pax (`x`) and GNU long-name/long-link records, for the next entry only. */
  private pending: PaxOverrides = {};

  /** Consumes `chunk`; returns the output pieces it completes. Throws UnsafeArchiveError. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let at = 0;
    while (at < chunk.length) {
      const state = this.state;
      switch (state.at) {
        case 'ended':
          return out; // whatever follows the end marker (record padding) is not part of the archive
        case 'header': {
          const block = this.takeBlock(chunk, at);
          if (!block) return out; // the rest of this chunk is the start of a header
          at = block.next;
          this.onHeader(block.buf, block.offset, out);
          break;
        }
        case 'meta': {
          const take = Math.min(chunk.length - at, state.header.size + paddingLength(state.header.size) - state.have);
          state.parts.push(chunk.subarray(at, at + take));
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
          if (state.forward && take > 0) out.push(take === chunk.length ? chunk : chunk.subarray(at, at + take));
          state.remaining -= take;
          at += take;
          if (state.remaining === 0) {
            // Our own zero padding, never the input's (which nobody checks to be zeros).
            if (state.forward && state.padding > 0) out.push(PADDINGS[state.padding]);
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
    return out;
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
    this.partial.push(chunk.subarray(at, at + take));
    this.partialLength += take;
    if (this.partialLength < BLOCK) return undefined;
    const buf = Buffer.concat(this.partial, BLOCK);
    this.partial = [];
    this.partialLength = 0;
    return { buf, offset: 0, next: at + take };
  }

  private onHeader(buf: Buffer, offset: number, out: Buffer[]): void {
    if (isZeroBlock(buf, offset)) {
      out.push(END_OF_ARCHIVE);
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
        this.onEntry(header, out);
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

  private onEntry(header: RawHeader, out: Buffer[]): void {
    const overrides = this.pending;
    this.pending = {};
    const name = overrides.path ?? header.name;
    const linkname = overrides.linkpath ?? header.linkname;
    const size = overrides.size ?? header.size;
    const type = header.kind === 'unsupported' ? `type ${JSON.stringify(String.fromCharCode(header.typeflag))}` : header.kind;
    const path = this.policy.admit(type, name, linkname);
    this.stats.entries++;
    const isFile = header.kind === 'file';
    // Directories and symlinks have no content; any bytes a header claims for them are skipped.
    const padding = paddingLength(size);
    if (path !== undefined) {
      const kind = header.kind as 'file' | 'directory' | 'symlink';
      encodeCanonical(
        {
          type: kind,
          path: kind === 'directory' ? `${path}/` : path,
          linkname: kind === 'symlink' ? linkname : undefined,
          mode: header.mode,
          size: isFile ? size : 0,
          mtime: overrides.mtime ?? header.mtime,
        },
        out,
      );
    }
    if (isFile) {
      this.stats.files++;
      this.stats.bytes += size;
    }
    const forward = isFile && path !== undefined;
    if (size === 0) this.state = { at: 'header' };
    else if (forward) this.state = { at: 'content', remaining: size, forward, padding };
    else this.state = { at: 'skip', remaining: size + padding };
  }
}
