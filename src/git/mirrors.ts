/**
 * The set of bare mirrors under one state directory: `<root>/<host>/<repo>.git`, one Mirror object per
 * repository. Clones are staged in `<root>/.tmp`, which is emptied at start-up, so only complete
 * mirrors are ever found at their final path; those are reused as ready.
 */
import { existsSync, rmSync, type Dirent } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Mirror } from './mirror.js';
import type { UpstreamRegistry } from './upstreams.js';
import { BadRequestError, NotFoundError } from '../util/errors.js';
import { MAX_REPO_SEGMENTS } from '../protocol/routes.js';
import type { Logger } from '../util/logger.js';
import type { Metrics } from '../util/metrics.js';
import { systemClock, type Clock } from '../util/clock.js';

export interface MirrorManagerOptions {
  /** Directory holding all mirrors (e.g. `<state>/mirrors`). */
  root: string;
  /** Refs served are never older than this. */
  refCheckIntervalMs: number;
  /** How long a request waits for a first clone before 503. */
  waitMs: number;
  logger: Logger;
  metrics?: Metrics;
  upstreams: UpstreamRegistry;
  /** Clock of the ref-check interval (default: the system clock). */
  clock?: Clock;
}

export class MirrorManager {
  readonly root: string;
  readonly #opts: MirrorManagerOptions;
  readonly #mirrors = new Map<string, Mirror>();
  readonly #shutdown = new AbortController();
  readonly #tmpRoot: string;
  readonly #log: Logger;

  constructor(options: MirrorManagerOptions) {
    this.#opts = options;
    this.root = path.resolve(options.root);
    this.#tmpRoot = path.join(this.root, '.tmp');
    this.#log = options.logger.child({ module: 'mirrors' });
    // Leftovers of clones interrupted by a crash: never complete, never referenced.
    rmSync(this.#tmpRoot, { recursive: true, force: true });
  }

  /**
   * The mirror of `canonicalRepo` (no `.git`) on upstream `host`; the same object for every call.
   * Throws NotFoundError for an unconfigured host and BadRequestError for a path that could collide
   * with another mirror's directory.
   */
  get(host: string, canonicalRepo: string): Mirror {
    const key = `${host}/${canonicalRepo}`;
    const existing = this.#mirrors.get(key);
    if (existing) return existing;
    const upstream = this.#opts.upstreams.get(host);
    if (!upstream) throw new NotFoundError(`unknown upstream host ${host}`);
    const segments = canonicalRepo.split('/');
    // A parent segment named `x.git` would place this mirror inside the mirror of `x`.
    if (segments.slice(0, -1).some((s) => s.endsWith('.git')) || segments.some((s) => s === '' || s.startsWith('.'))) {
      throw new BadRequestError('unsupported repository path');
    }
    const gitDir = path.join(this.root, host, `${canonicalRepo}.git`);
    if (!gitDir.startsWith(this.root + path.sep)) throw new BadRequestError('unsupported repository path');
    const mirror = new Mirror({
      host,
      repo: canonicalRepo,
      gitDir,
      tmpRoot: this.#tmpRoot,
      upstream,
      refCheckIntervalMs: this.#opts.refCheckIntervalMs,
      waitMs: this.#opts.waitMs,
      logger: this.#log,
      metrics: this.#opts.metrics,
      shutdown: this.#shutdown.signal,
      ready: existsSync(path.join(gitDir, 'HEAD')),
      clock: this.#opts.clock ?? systemClock,
    });
    this.#mirrors.set(key, mirror);
    return mirror;
  }

  /** True when a complete mirror of the repository exists (without creating a Mirror for it). */
  has(host: string, canonicalRepo: string): boolean {
    const known = this.#mirrors.get(`${host}/${canonicalRepo}`);
    if (known) return known.state === 'ready';
    const gitDir = path.join(this.root, host, `${canonicalRepo}.git`);
    return gitDir.startsWith(this.root + path.sep) && existsSync(path.join(gitDir, 'HEAD'));
  }

  /** Scratch space on the same filesystem as the mirrors, emptied at start-up. */
  get tmpDir(): string {
    return this.#tmpRoot;
  }

  /**
   * The inventory: every repository with a complete mirror under the root, whether this process
   * created it or found it from an earlier run (the scheduler and retention walk this, so a restart
   * does not make them forget repositories nobody has requested since).
   */
  async list(): Promise<Array<{ host: string; repo: string }>> {
    const found: Array<{ host: string; repo: string }> = [];
    const walk = async (host: string, dir: string, rel: string[], depth: number): Promise<void> => {
      if (depth > MAX_REPO_SEGMENTS) return;
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const entry of entries) {
        if (entry.name.startsWith('.') || !entry.isDirectory()) continue;
        if (entry.name.endsWith('.git')) found.push({ host, repo: [...rel, entry.name.slice(0, -4)].join('/') });
        else await walk(host, path.join(dir, entry.name), [...rel, entry.name], depth + 1);
      }
    };
    let hosts: string[] = [];
    try {
      hosts = await readdir(this.root);
    } catch {
      return found;
    }
    // `.tmp` holds clones in progress, never complete mirrors.
    for (const host of hosts) if (!host.startsWith('.')) await walk(host, path.join(this.root, host), [], 0);
    return found;
  }

  /**
   * Stops every running clone and fetch (their process groups are killed) and resolves once they have
   * wound down, their staging directories removed: after it nothing of ours writes under the root.
   */
  async close(): Promise<void> {
    this.#shutdown.abort();
    await Promise.all([...this.#mirrors.values()].map((mirror) => mirror.settled()));
  }
}
