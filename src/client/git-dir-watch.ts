/**
 * Tells when a snapshot's `.git` directory is completely on disk, while the work tree is still being
 * extracted, so the restore can start its ref fetch (ref-sync.ts) that much earlier: the fetch only
 * needs the clone's objects and refs as its `--reference`.
 *
 * An EntrySink in front of the tree writer, which works synchronously in archive order, so an entry
 * passed on here has been written and closed by the time the next one arrives. What the generator
 * writes (docs/snapshots.md, "Archive layout"):
 *   - v10: the metadata and every pack's `.idx` first; `.git/index` and the work tree next, with the
 *     `.pack` files placed among the work tree's frames (about its first three quarters, always
 *     before its last frame: frame-order.ts);
 *   - up to v9: all of `.git` (idx and pack pairs, then `.git/index`) before the first work tree entry.
 * So `.git` is complete once every `.pack` named by an `.idx` seen has been written (and no `.pack`
 * lacks its `.idx`), and `.git/index` has been written or the work tree began. That moment is
 * reported once, through `onComplete`. An archive laid out otherwise is not one the generator
 * writes; the worst a fetch started too early can do then is fail the restore.
 */
import type { EntrySink } from './tar-filter.js';

const GIT_DIR = '.git';
const INDEX = '.git/index';
const PACK_FILE = /^\.git\/objects\/pack\/(pack-[^/]+)\.(idx|pack)$/;

export class GitDirWatch implements EntrySink {
  private sawGitDir = false;
  private indexWritten = false;
  private reported = false;
  /** Packs whose `.idx` or `.pack` has been seen without the other (a `.pack` counts once written). */
  private readonly unpaired = new Set<string>();
  private current: string | undefined;

  constructor(
    private readonly next: EntrySink,
    private readonly onComplete: () => void,
  ) {}

  directory(path: string, mode: number, mtime: number): void {
    this.see(path);
    this.next.directory(path, mode, mtime);
  }

  symlink(path: string, target: string, mtime: number): void {
    this.see(path);
    this.next.symlink(path, target, mtime);
  }

  fileStart(path: string, mode: number, mtime: number, size: number): void {
    this.see(path);
    this.current = path;
    this.next.fileStart(path, mode, mtime, size);
  }

  fileData(bytes: Buffer): void {
    this.next.fileData(bytes);
  }

  fileEnd(): void {
    this.next.fileEnd();
    const path = this.current;
    this.current = undefined;
    if (this.reported || path === undefined) return;
    const pack = PACK_FILE.exec(path);
    if (pack?.[2] === 'pack') this.pair(pack[1]);
    if (path === INDEX) this.indexWritten = true;
    if (this.indexWritten) this.reportIfComplete();
  }

  private see(path: string): void {
    if (this.reported) return;
    if (path === GIT_DIR || path.startsWith(`${GIT_DIR}/`)) {
      this.sawGitDir = true;
      const pack = PACK_FILE.exec(path);
      if (pack?.[2] === 'idx') this.pair(pack[1]);
    } else {
      this.reportIfComplete();
    }
  }

  /** Counts one of a pack's two files: the first opens the pair, the second closes it. */
  private pair(name: string): void {
    if (!this.unpaired.delete(name)) this.unpaired.add(name);
  }

  private reportIfComplete(): void {
    if (this.reported || !this.sawGitDir || this.unpaired.size > 0) return;
    this.reported = true;
    this.onComplete();
  }
}
