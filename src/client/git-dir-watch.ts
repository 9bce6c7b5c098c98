/**
 * Tells when a snapshot's `.git` directory is completely on disk, while the work tree is still being
 * extracted, so the restore can start its ref fetch (ref-sync.ts) that much earlier: the fetch only
 * needs the clone's objects and refs as its `--reference`, and the generator writes every `.git`
 * entry before the first work-tree entry (docs/snapshots.md). On the bench repository `.git` is the
 * first 57% of the tar stream.
 *
 * An EntrySink in front of the tree writer: at the first entry outside `.git` after `.git` itself,
 * every `.git` file has been written and closed (the writer works synchronously, in archive order),
 * and `onComplete` runs once. An archive that puts `.git` entries after work-tree entries is not one
 * the generator writes; the worst a fetch started too early can do then is fail the restore.
 */
import type { EntrySink } from './tar-filter.js';

const GIT_DIR = '.git';

export class GitDirWatch implements EntrySink {
  private sawGitDir = false;
  private reported = false;

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
    } else if (this.sawGitDir) {
      this.reported = true;
      this.onComplete();
    }
  }
}
