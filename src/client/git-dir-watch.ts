/**
 * Tells when a snapshot's `.git` directory is completely on disk, while the work tree is still being
 * extracted, so the restore can start its ref fetch (ref-sync.ts) that much earlier: the fetch only
 * needs the clone's objects and refs as its `--reference`.
 *
 * An EntrySink in front of the tree writer, which works synchronously in archive order: when an
 * entry arrives here, every earlier one has been written and closed. What the generator writes
 * (docs/snapshots.md, "Archive layout"):
 *   - v10: the metadata and every pack's `.idx` first; `.git/index` and the work tree next, with the
 *     `.pack` files placed among the work tree's frames (about its first three quarters, always
 *     before its last frame: frame-order.ts);
 *   - up to v9: all of `.git` before the first work tree entry.
 * So `.git` is complete at the first entry outside it that comes when every `.pack` seen has its
 * `.idx` and every `.idx` its `.pack`: for v9 (or any archive with `.git` in one piece, whatever its
 * inner order) the first work tree entry, for v10 the one after the last pack. That moment is
 * reported once, through `onComplete`. An archive laid out otherwise is not one the generator
 * writes; the worst a fetch started too early can do then is fail the restore.
 */
import type { EntrySink } from './tar-filter.js';

const GIT_DIR = '.git';
const PACK_FILE = /^\.git\/objects\/pack\/(pack-[^/]+)\.(idx|pack)$/;

export class GitDirWatch implements EntrySink {
  private sawGitDir = false;
  private reported = false;
  /** Packs whose `.idx` or `.pack` has been seen without the other. */
  private readonly unpaired = new Set<string>();

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
    this.next.fileStart(path, mode, mtime, size);
  }

  fileData(bytes: Buffer): void {
    this.next.fileData(bytes);
  }

  fileEnd(): void {
    this.next.fileEnd();
  }

  private see(path: string): void {
    if (this.reported) return;
    if (path === GIT_DIR || path.startsWith(`${GIT_DIR}/`)) {
      this.sawGitDir = true;
      const pack = PACK_FILE.exec(path);
      // One of a pack's two files: the first opens the pair, the second closes it.
      if (pack && !this.unpaired.delete(pack[1])) this.unpaired.add(pack[1]);
    } else if (this.sawGitDir && this.unpaired.size === 0) {
      this.reported = true;
      this.onComplete();
    }
  }
}
