/**
 * Which tar entries may be extracted, decided before a single byte of an entry reaches the writer.
 *
 * Entries may only create regular files, directories and symlinks strictly inside the root. We reject
 * absolute names, `..` components, hardlinks, devices and fifos, and any entry whose parent is a
 * symlink (or a file) created earlier in the same archive, and any second entry for a path. Symlink
 * targets are kept verbatim: nothing is ever written through one, because no later entry may have a
 * symlink as a parent.
 *
 * Names are bytes: git allows any byte but `/` and NUL in a path component (non-UTF-8 included), and
 * on POSIX `C:` is a name like any other, not a drive.
 */
import { UnsafeArchiveError } from './errors.js';

type Kind = 'dir' | 'file' | 'symlink';

const SLASH = 0x2f;
const DOT = 0x2e;
/** Only on Windows does `C:` at the start of a name mean a drive (an absolute path). */
const DRIVE_LETTERS = process.platform === 'win32';

/**
 * The path components of a tar entry name, relative to the extraction root. `.` and empty components
 * are dropped (`./a//b/` → `a`, `b`; `./` → none, the root itself). Throws UnsafeArchiveError for
 * absolute names, `..` components and NUL bytes.
 */
export function entryPathSegments(name: Buffer): Buffer[] {
  const shown = (): string => JSON.stringify(name.toString('utf8'));
  if (name.includes(0)) throw new UnsafeArchiveError(`entry name contains a NUL byte`);
  if (name[0] === SLASH || (DRIVE_LETTERS && /^[A-Za-z]:/.test(name.toString('latin1', 0, 2)))) {
    throw new UnsafeArchiveError(`absolute entry name ${shown()}`);
  }
  const segments: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= name.length; i++) {
    if (i < name.length && name[i] !== SLASH) continue;
    const length = i - start;
    const isDot = length === 1 && name[start] === DOT;
    const isDotDot = length === 2 && name[start] === DOT && name[start + 1] === DOT;
    if (isDotDot) throw new UnsafeArchiveError(`entry name ${shown()} contains ".."`);
    if (length > 0 && !isDot) segments.push(name.subarray(start, i));
    start = i + 1;
  }
  return segments;
}

/** The entry kinds the policy admits; everything else is refused by `EntryPolicy.admit`. */
export type AdmittedType = 'file' | 'directory' | 'symlink';

/**
 * Tracks what the archive created so far and admits or refuses each next entry. `admit` returns the
 * normalised relative path (`a/b`, no trailing slash) or undefined for the root directory itself.
 */
export class EntryPolicy {
  /** What this archive created, by relative path (bytes as latin1, one char per byte). */
  private readonly kinds = new Map<string, Kind>();

  admit(type: string, name: Buffer, linkname: Buffer): Buffer | undefined {
    const shown = JSON.stringify(name.toString('utf8'));
    if (type === 'hardlink') throw new UnsafeArchiveError(`hardlink entry ${shown}`);
    if (type !== 'file' && type !== 'directory' && type !== 'symlink') throw new UnsafeArchiveError(`unsupported ${type} entry ${shown}`);
    const segments = entryPathSegments(name);
    if (segments.length === 0) {
      if (type !== 'directory') throw new UnsafeArchiveError(`non-directory entry for the archive root`);
      return undefined;
    }
    let key = '';
    for (let depth = 0; depth < segments.length - 1; depth++) {
      key = depth === 0 ? segments[0].toString('latin1') : `${key}/${segments[depth].toString('latin1')}`;
      const kind = this.kinds.get(key);
      if (kind === undefined) this.kinds.set(key, 'dir'); // the writer creates missing parents
      else if (kind !== 'dir') throw new UnsafeArchiveError(`entry ${shown} goes through ${kind === 'symlink' ? 'symlink' : 'file'} "${shownKey(key)}"`);
    }
    const last = segments[segments.length - 1].toString('latin1');
    key = key === '' ? last : `${key}/${last}`;
    const existing = this.kinds.get(key);
    if (type === 'directory') {
      if (existing !== undefined && existing !== 'dir') throw new UnsafeArchiveError(`directory entry ${shown} replaces a ${existing}`);
      this.kinds.set(key, 'dir');
    } else {
      if (existing !== undefined) throw new UnsafeArchiveError(`duplicate entry ${shown}`);
      if (type === 'symlink' && linkname.length === 0) throw new UnsafeArchiveError(`symlink ${shown} without a target`);
      if (linkname.includes(0)) throw new UnsafeArchiveError(`symlink ${shown} target contains a NUL byte`);
      this.kinds.set(key, type === 'symlink' ? 'symlink' : 'file');
    }
    return Buffer.from(key, 'latin1');
  }
}

function shownKey(key: string): string {
  return Buffer.from(key, 'latin1').toString('utf8');
}
