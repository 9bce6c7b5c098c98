/**
 * Writes what the tar filter admitted (tar-filter.ts) into the extraction root with synchronous file
 * system calls. It runs on its own thread (extract-thread.ts), so blocking calls block nobody, and a
 * file costs open + write + futimes + close as direct system calls: the same work `tar -x` does,
 * without libuv's thread-pool round trip per call (which made the first Node writer several times
 * slower than tar) and without piping every byte through a second process (which made the system-tar
 * writer cost a core of copies on a 2-core machine, docs/benchmarks.md).
 *
 * Safety, besides the filter's policy (only files, directories and symlinks strictly inside the root,
 * never through a symlink or file the archive made, no duplicates):
 * - files are created with O_CREAT | O_EXCL | O_NOFOLLOW: an existing name (a symlink included) is
 *   never opened, let alone written through;
 * - the root must be an existing directory this process owns (the restore's private temp sibling);
 * - modes are permission bits only, and the process umask applies, as with `tar -x` for a non-root user.
 *
 * Directory mtimes are set last, children before parents, since creating an entry in a directory
 * changes its mtime.
 */
import fs from 'node:fs';
import type { StatSink } from './stat-table.js';
import type { EntrySink } from './tar-filter.js';

const CREATE_FILE = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;

interface OpenFile {
  path: string;
  fd: number;
  mtime: number;
}

/** Creates entries under `root` as the filter admits them; call `finish` after the last one. */
export class TreeWriter implements EntrySink {
  private readonly prefix: Buffer;
  private file?: OpenFile;
  /** Directory entries whose mtime is set by `finish`, in archive order. */
  private readonly directories: Array<{ path: Buffer; mtime: number }> = [];

  /**
   * `umask` is applied to directory modes set on directories that already exist. With `stats`, every
   * file's and symlink's final stat data is recorded (stat-table.ts).
   */
  constructor(
    root: string,
    private readonly umask: number,
    private readonly stats?: StatSink,
  ) {
    this.prefix = Buffer.from(root.endsWith('/') ? root : `${root}/`);
  }

  /** Throws unless the root is an existing directory: the writer creates parents below it, never it. */
  checkRoot(): void {
    const root = this.prefix.subarray(0, this.prefix.length - 1);
    if (!fs.statSync(root).isDirectory()) throw new Error(`extraction root ${root.toString()} is not a directory`);
  }

  directory(path: string, mode: number, mtime: number): void {
    const target = this.resolve(path);
    try {
      fs.mkdirSync(target, mode);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') {
        this.makeParents(target);
        fs.mkdirSync(target, mode);
      } else if (errorCode(err) === 'EEXIST') {
        // Created earlier as some entry's missing parent (the policy made sure it is a directory).
        fs.chmodSync(target, mode & ~this.umask);
      } else {
        throw err;
      }
    }
    this.directories.push({ path: target, mtime });
  }

  symlink(path: string, linkTarget: string, mtime: number): void {
    const target = this.resolve(path);
    const value = Buffer.from(linkTarget, 'latin1');
    try {
      fs.symlinkSync(value, target);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
      this.makeParents(target);
      fs.symlinkSync(value, target);
    }
    fs.lutimesSync(target, mtime, mtime);
    this.stats?.record(path, fs.lstatSync(target, { bigint: true }));
  }

  fileStart(path: string, mode: number, mtime: number): void {
    const target = this.resolve(path);
    let fd: number;
    try {
      fd = fs.openSync(target, CREATE_FILE, mode);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
      this.makeParents(target);
      fd = fs.openSync(target, CREATE_FILE, mode);
    }
    this.file = { path, fd, mtime };
  }

  fileData(bytes: Buffer): void {
    const file = this.file as OpenFile;
    for (let at = 0; at < bytes.length; ) at += fs.writeSync(file.fd, bytes, at, bytes.length - at);
  }

  fileEnd(): void {
    const file = this.file as OpenFile;
    this.file = undefined;
    try {
      fs.futimesSync(file.fd, file.mtime, file.mtime);
      // After the last change to the inode (its mtime): what the index must record.
      this.stats?.record(file.path, fs.fstatSync(file.fd, { bigint: true }));
    } finally {
      fs.closeSync(file.fd);
    }
  }

  /** Sets the directories' mtimes, deepest last-created first. */
  finish(): void {
    for (let i = this.directories.length - 1; i >= 0; i--) {
      const { path, mtime } = this.directories[i];
      fs.utimesSync(path, mtime, mtime);
    }
  }

  /** Closes a file left open by a failure; writes nothing more. */
  abandon(): void {
    if (this.file !== undefined) fs.closeSync(this.file.fd);
    this.file = undefined;
  }

  private resolve(path: string): Buffer {
    return Buffer.concat([this.prefix, Buffer.from(path, 'latin1')]);
  }

  /** Creates the missing parents of `target` (the policy made sure none is a symlink or file). */
  private makeParents(target: Buffer): void {
    fs.mkdirSync(target.subarray(0, target.lastIndexOf(0x2f)), { recursive: true });
  }
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}
