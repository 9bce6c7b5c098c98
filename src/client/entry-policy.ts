/**
 * Which tar entries may be extracted, decided before a single byte of an entry reaches the writer.
 *
 * Entries may only create regular files, directories and symlinks strictly inside the root. We reject
 * absolute names, `..` components, hardlinks, devices and fifos, and any entry whose parent is a
 * symlink (or a file) created earlier in the same archive, and any second entry for a path. Symlink
 * targets are kept verbatim: nothing is ever written through one, because no later entry may have a
 * symlink as a parent.
 *
 * Names are bytes, carried as binary (latin1) strings: git allows any byte but `/` and NUL in a path
 * component (non-UTF-8 included), and on POSIX `C:` is a name like any other, not a drive.
 */
import { UnsafeArchiveError } from './errors.js';

type Kind = 'dir' | 'file' | 'symlink';

/** Only on Windows does `C:` at the start of a name mean a drive (an absolute path). */
const DRIVE_LETTER = process.platform === 'win32' ? /^[A-Za-z]:/ : undefined;
/** A `.` or `..` component or an empty one (`//`): such names take the careful path. */
const NEEDS_NORMALISING = /(?:^|\/)\.{1,2}(?:\/|$)|\/\//;

/** How a name (a binary string) is shown in messages: decoded as UTF-8, quoted. */
function shown(name: string): string {
  return JSON.stringify(Buffer.from(name, 'latin1').toString('utf8'));
}

/**
 * The path components of a tar entry name (a binary string), relative to the extraction root. `.`
 * and empty components are dropped (`./a//b/` → `a`, `b`; `./` → none, the root itself). Throws
 * UnsafeArchiveError for absolute names, `..` components and NUL bytes.
 */
export function entryPathSegments(name: string): string[] {
  if (name.includes('\0')) throw new UnsafeArchiveError(`entry name contains a NUL byte`);
  if (name.startsWith('/') || DRIVE_LETTER?.test(name)) throw new UnsafeArchiveError(`absolute entry name ${shown(name)}`);
  const segments = name.split('/').filter((segment) => segment !== '' && segment !== '.');
  if (segments.includes('..')) throw new UnsafeArchiveError(`entry name ${shown(name)} contains ".."`);
  return segments;
}

/** The normalised relative path of `name` (`a/b`, no trailing slash; '' for the root). */
function normalise(name: string): string {
  // tar -c of `.` prefixes every name with `./`: strip it once instead of taking the careful path.
  while (name.startsWith('./')) name = name.slice(2);
  if (name.length > 0 && name[0] !== '/' && !NEEDS_NORMALISING.test(name) && !name.includes('\0') && !DRIVE_LETTER?.test(name)) {
    return name.endsWith('/') ? name.slice(0, -1) : name; // the common case: already clean
  }
  return entryPathSegments(name).join('/');
}

/**
 * Tracks what the archive created so far and admits or refuses each next entry. `admit` returns the
 * normalised relative path (`a/b`, no trailing slash) or undefined for the root directory itself.
 */
export class EntryPolicy {
  /** What this archive created, by normalised relative path. */
  private readonly kinds = new Map<string, Kind>();

  admit(type: string, name: string, linkname: string): string | undefined {
    if (type === 'hardlink') throw new UnsafeArchiveError(`hardlink entry ${shown(name)}`);
    if (type !== 'file' && type !== 'directory' && type !== 'symlink') throw new UnsafeArchiveError(`unsupported ${type} entry ${shown(name)}`);
    const key = normalise(name);
    if (key === '') {
      if (type !== 'directory') throw new UnsafeArchiveError(`non-directory entry for the archive root`);
      return undefined;
    }
    const slash = key.lastIndexOf('/');
    if (slash > 0) this.parentIsDirectory(key.slice(0, slash), name);
    const existing = this.kinds.get(key);
    if (type === 'directory') {
      if (existing !== undefined && existing !== 'dir') throw new UnsafeArchiveError(`directory entry ${shown(name)} replaces a ${existing}`);
      this.kinds.set(key, 'dir');
    } else {
      if (existing !== undefined) throw new UnsafeArchiveError(`duplicate entry ${shown(name)}`);
      if (type === 'symlink' && linkname.length === 0) throw new UnsafeArchiveError(`symlink ${shown(name)} without a target`);
      if (linkname.includes('\0')) throw new UnsafeArchiveError(`symlink ${shown(name)} target contains a NUL byte`);
      this.kinds.set(key, type === 'symlink' ? 'symlink' : 'file');
    }
    return key;
  }

  /**
   * Checks that `parent` is (or will be created as) a directory. A directory already known was
   * checked with all its ancestors when it was recorded, so the common case is one map lookup.
   */
  private parentIsDirectory(parent: string, name: string): void {
    const kind = this.kinds.get(parent);
    if (kind === 'dir') return;
    if (kind !== undefined) throw new UnsafeArchiveError(`entry ${shown(name)} goes through ${kind === 'symlink' ? 'symlink' : 'file'} ${shown(parent)}`);
    const slash = parent.lastIndexOf('/');
    if (slash > 0) this.parentIsDirectory(parent.slice(0, slash), name);
    this.kinds.set(parent, 'dir'); // the writer creates missing parents
  }
}
