/**
 * Is the state directory's disk usable? Two signals: the filesystem's free space (statfs) against a
 * floor, and a recent ENOSPC seen by any request (a quota or a burst can fail writes while statfs
 * still shows room). Readiness uses it, so a load balancer stops sending work to a replica whose disk
 * is full instead of that replica failing clones.
 */
import { statfs } from 'node:fs/promises';

export interface DiskHealthOptions {
  /** A directory on the filesystem to watch (the state directory). */
  dir: string;
  /** Not ready below this many free bytes (0 = no floor). */
  minFreeBytes: number;
  /** How long a seen ENOSPC keeps readiness failing (default 30 s). */
  holdMs?: number;
  /** Clock (ms); tests drive it. */
  now?: () => number;
  /** Free bytes of `dir`'s filesystem; a seam for tests. */
  freeBytes?: (dir: string) => Promise<number>;
}

export interface DiskState {
  ok: boolean;
  /** Why not, for the readiness body and logs. */
  problem?: string;
  /** Free bytes when they could be read. */
  freeBytes?: number;
}

async function statfsFree(dir: string): Promise<number> {
  const stats = await statfs(dir);
  return stats.bavail * stats.bsize;
}

export class DiskHealth {
  readonly #opts: DiskHealthOptions;
  readonly #now: () => number;
  #lastNoSpace = Number.NEGATIVE_INFINITY;

  constructor(options: DiskHealthOptions) {
    this.#opts = options;
    this.#now = options.now ?? Date.now;
  }

  /** Records that a write just failed with ENOSPC/EDQUOT. */
  noteNoSpace(): void {
    this.#lastNoSpace = this.#now();
  }

  /** The current verdict; never throws (an unreadable statfs only drops that signal). */
  async check(): Promise<DiskState> {
    let freeBytes: number | undefined;
    try {
      freeBytes = await (this.#opts.freeBytes ?? statfsFree)(this.#opts.dir);
    } catch {
      freeBytes = undefined;
    }
    const holdMs = this.#opts.holdMs ?? 30_000;
    if (this.#now() - this.#lastNoSpace < holdMs) return { ok: false, problem: 'state disk full (a write failed with ENOSPC)', freeBytes };
    if (freeBytes !== undefined && freeBytes < this.#opts.minFreeBytes) {
      return { ok: false, problem: `state disk almost full (${Math.floor(freeBytes / 1048576)} MiB free)`, freeBytes };
    }
    return { ok: true, freeBytes };
  }
}
