/**
 * One bare mirror of one upstream repository: cloned once (single-flight, into a temp dir renamed into
 * place so a crash never leaves a half mirror looking ready), then kept fresh by coalesced fetches so the
 * refs it serves are never older than the ref-check interval.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { runGit } from './command.js';
import type { Upstream } from './upstreams.js';
import {
  CachewError,
  GitCommandError,
  NotFoundError,
  UnavailableError,
  UpstreamError,
  abortReason,
} from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { Metrics } from '../util/metrics.js';
import type { Clock } from '../util/clock.js';

export type MirrorState = 'empty' | 'cloning' | 'ready';

/** What a Mirror needs from its manager; built by MirrorManager. */
export interface MirrorOptions {
  host: string;
  /** Repository without `.git`. */
  repo: string;
  /** Final location of the bare mirror. */
  gitDir: string;
  /** Where clones are staged before the rename. */
  tmpRoot: string;
  upstream: Upstream;
  refCheckIntervalMs: number;
  /** How often a fetch also re-reads upstream's HEAD (a full ref listing); it is also re-read whenever HEAD dangles. */
  headCheckIntervalMs: number;
  waitMs: number;
  logger: Logger;
  metrics?: Metrics;
  /** Aborted when the manager shuts down; long-running clones and fetches stop with it. */
  shutdown: AbortSignal;
  /** True when the mirror already exists on disk. */
  ready: boolean;
  /** The clock the ref-check and head-check intervals are measured on. */
  clock: Clock;
}

/** Signal-only options of the public methods. */
export interface OpOptions {
  signal?: AbortSignal;
}

const CLONE_TIMEOUT_MS = 60 * 60_000;
const FETCH_TIMEOUT_MS = 30 * 60_000;
const RETRY_AFTER_SECONDS = 10;

/** Configuration every mirror gets: it is a server for clients, not a workspace. */
const MIRROR_CONFIG: Array<[string, string]> = [
  ['uploadpack.allowFilter', 'true'],
  // Wants are checked against the object store before upload-pack runs (a missing one triggers a
  // fetch), so upload-pack must accept any object it has, e.g. one a force-push left unreferenced.
  ['uploadpack.allowAnySHA1InWant', 'true'],
  ['gc.autoDetach', 'false'],
  ['core.logAllRefUpdates', 'false'],
  ['fetch.prune', 'true'],
];

interface FetchRun {
  startedAt: number;
  promise: Promise<void>;
}

export class Mirror {
  readonly host: string;
  readonly repo: string;
  readonly gitDir: string;
  readonly upstreamUrl: string;
  #state: MirrorState;
  #clone: Promise<void> | undefined;
  /** Upstream's recent "no such repository", remembered for the ref-check interval. */
  #notFound: { error: NotFoundError; until: number } | undefined;
  #fetch: FetchRun | undefined;
  #queuedFetch: FetchRun | undefined;
  /** When the last check against upstream started (successful or not); 0 = never. */
  #lastCheck = 0;
  /** When upstream's HEAD was last read (the clone reads it too). */
  #lastHeadCheck = 0;
  readonly #opts: MirrorOptions;
  readonly #log: Logger;

  constructor(options: MirrorOptions) {
    this.#opts = options;
    this.host = options.host;
    this.repo = options.repo;
    this.gitDir = options.gitDir;
    this.upstreamUrl = options.upstream.repoUrl(options.repo);
    this.#state = options.ready ? 'ready' : 'empty';
    // A mirror found on disk had its HEAD set when it was cloned; the periodic check takes over from here.
    if (options.ready) this.#lastHeadCheck = options.clock.now();
    this.#log = options.logger.child({ mirror: `${options.host}/${options.repo}` });
  }

  get state(): MirrorState {
    return this.#state;
  }

  /**
   * Resolves once the mirror exists. The first caller starts the clone; every caller waits for the
   * same clone for at most `waitMs`, then gets UnavailableError (503 + Retry-After) while the clone
   * continues in the background. Upstream "not found" → NotFoundError; unreachable → UpstreamError.
   */
  async ensureReady(options: OpOptions = {}): Promise<void> {
    if (this.#state === 'ready') return;
    // A repository upstream just said does not exist is not asked for again within the ref-check
    // interval: a CI fleet retrying a typo must not turn into a stream of upstream clones.
    if (this.#notFound && this.#notFound.until > this.#opts.clock.now()) throw this.#notFound.error;
    if (!this.#clone) {
      this.#state = 'cloning';
      this.#clone = this.#doClone().then(
        () => {
          this.#state = 'ready';
          this.#lastCheck = this.#opts.clock.now();
          this.#lastHeadCheck = this.#lastCheck;
          this.#clone = undefined;
        },
        (err: unknown) => {
          this.#state = 'empty';
          this.#clone = undefined;
          if (err instanceof NotFoundError) this.#notFound = { error: err, until: this.#opts.clock.now() + this.#opts.refCheckIntervalMs };
          throw err;
        },
      );
      // Waiters may all have given up; the outcome is still observed here.
      this.#clone.catch(() => {});
    }
    await waitBounded(this.#clone, this.#opts.waitMs, options.signal, () =>
      new UnavailableError('repository mirror is still being cloned, retry later', RETRY_AFTER_SECONDS),
    );
  }

  /**
   * Makes sure the refs are no older than the ref-check interval: fetches (coalesced with any
   * concurrent caller) when the last check is older. If upstream fails, the existing mirror is served
   * stale and the failure is logged, not thrown.
   */
  async ensureFresh(options: OpOptions = {}): Promise<void> {
    await this.ensureReady(options);
    const since = this.#opts.clock.now() - this.#opts.refCheckIntervalMs;
    if (this.#lastCheck > since) return;
    try {
      await this.#fetchStartedAfter(since, options.signal);
    } catch (err) {
      if (options.signal?.aborted) throw abortReason(options.signal);
      this.#log.warn({ err: describe(err) }, 'upstream fetch failed; serving the mirror as it is');
    }
  }

  /**
   * Fetches from upstream now: resolves after a fetch that started no earlier than this call finished.
   * Concurrent callers share one fetch. Errors are thrown (UpstreamError / NotFoundError).
   */
  async fetchNow(options: OpOptions = {}): Promise<void> {
    await this.ensureReady(options);
    // Only a fetch that starts after this call can see what was pushed before it: never join a running one.
    await this.#fetchStartedAfter(Number.POSITIVE_INFINITY, options.signal);
  }

  /** True when the mirror holds `sha` (any object type). */
  async hasCommit(sha: string, options: OpOptions = {}): Promise<boolean> {
    if (!/^[0-9a-f]{4,64}$/.test(sha)) return false;
    try {
      await runGit(['cat-file', '-e', `${sha}^{object}`], { cwd: this.gitDir, signal: options.signal, timeoutMs: 30_000 });
      return true;
    } catch (err) {
      if (err instanceof GitCommandError) return false;
      throw err;
    }
  }

  /** The subset of `shas` this mirror does not hold (one `cat-file --batch-check` for all of them). */
  async missingObjects(shas: readonly string[], options: OpOptions = {}): Promise<string[]> {
    if (shas.length === 0) return [];
    const valid = shas.filter((s) => /^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(s));
    const out = await runGit(['cat-file', '--batch-check=%(objectname)'], {
      cwd: this.gitDir,
      input: valid.map((s) => `${s}\n`).join(''),
      signal: options.signal,
      timeoutMs: 60_000,
    });
    const present = new Set(out.split('\n').filter((line) => !line.endsWith(' missing')));
    return shas.filter((s) => !present.has(s));
  }

  /** The branch HEAD points at (following upstream's default branch) and its commit. */
  async defaultBranch(options: OpOptions = {}): Promise<{ name: string; commit: string }> {
    await this.ensureReady(options);
    try {
      const ref = (await runGit(['symbolic-ref', 'HEAD'], { cwd: this.gitDir, signal: options.signal })).trim();
      const commit = (await runGit(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`], { cwd: this.gitDir, signal: options.signal })).trim();
      return { name: ref.replace(/^refs\/heads\//, ''), commit };
    } catch (err) {
      if (err instanceof GitCommandError) throw new NotFoundError('repository has no default branch', { cause: err });
      throw err;
    }
  }

  /** Shares a fetch that started at or after `after` (ms epoch), starting or queueing one if needed. */
  #fetchStartedAfter(after: number, signal: AbortSignal | undefined): Promise<void> {
    const current = this.#fetch;
    let run: FetchRun;
    if (current && current.startedAt >= after) {
      run = current;
    } else if (!current) {
      run = this.#startFetch();
    } else {
      // A fetch is running but began too early for this caller: queue one more behind it, shared by
      // everyone who arrives meanwhile.
      this.#queuedFetch ??= this.#queueAfter(current);
      run = this.#queuedFetch;
    }
    return signal ? raceSignal(run.promise, signal) : run.promise;
  }

  #startFetch(): FetchRun {
    const run: FetchRun = { startedAt: this.#opts.clock.now(), promise: Promise.resolve() };
    this.#lastCheck = run.startedAt;
    run.promise = this.#doFetch().finally(() => {
      if (this.#fetch === run) this.#fetch = undefined;
    });
    run.promise.catch(() => {});
    this.#fetch = run;
    return run;
  }

  #queueAfter(current: FetchRun): FetchRun {
    // startedAt is a lower bound: the real start is later, which only helps callers waiting on it.
    const queued: FetchRun = { startedAt: this.#opts.clock.now(), promise: Promise.resolve() };
    queued.promise = current.promise
      .catch(() => {})
      .then(() => {
        if (this.#queuedFetch === queued) this.#queuedFetch = undefined;
        const run = this.#fetch ?? this.#startFetch();
        return run.promise;
      });
    queued.promise.catch(() => {});
    return queued;
  }

  async #doClone(): Promise<void> {
    const { tmpRoot, upstream, metrics } = this.#opts;
    await fs.mkdir(tmpRoot, { recursive: true });
    const staging = path.join(tmpRoot, `${randomBytes(8).toString('hex')}.git`);
    const started = Date.now();
    this.#log.info({ upstream: this.upstreamUrl }, 'cloning mirror');
    try {
      metrics?.upstreamRequests.inc({ kind: 'clone' });
      // --bare copies refs/heads/* and tags as they are (no refs/pull/*) and sets HEAD to upstream's.
      await runGit(['clone', '--bare', '--quiet', '--', this.upstreamUrl, staging], {
        env: upstream.gitEnv(),
        signal: this.#opts.shutdown,
        timeoutMs: CLONE_TIMEOUT_MS,
      });
      await this.#configure(staging);
      await fs.mkdir(path.dirname(this.gitDir), { recursive: true });
      await fs.rename(staging, this.gitDir);
      this.#record('clone', 'ok', started);
      this.#log.info({ ms: Date.now() - started }, 'mirror ready');
    } catch (err) {
      this.#record('clone', 'error', started);
      await fs.rm(staging, { recursive: true, force: true });
      throw classify(err, this.host, this.repo);
    }
  }

  async #configure(dir: string): Promise<void> {
    const set = (key: string, value: string, add = false): Promise<string> =>
      runGit(['config', ...(add ? ['--add'] : []), key, value], { cwd: dir, timeoutMs: 30_000 });
    await runGit(['config', '--unset-all', 'remote.origin.fetch'], { cwd: dir, timeoutMs: 30_000 }).catch(() => '');
    await set('remote.origin.fetch', '+refs/heads/*:refs/heads/*', true);
    await set('remote.origin.fetch', '+refs/tags/*:refs/tags/*', true);
    for (const [key, value] of MIRROR_CONFIG) await set(key, value);
  }

  async #doFetch(): Promise<void> {
    const started = Date.now();
    try {
      this.#opts.metrics?.upstreamRequests.inc({ kind: 'fetch' });
      await runGit(['fetch', '--prune', '--quiet', 'origin'], {
        cwd: this.gitDir,
        env: this.#opts.upstream.gitEnv(),
        signal: this.#opts.shutdown,
        timeoutMs: FETCH_TIMEOUT_MS,
      });
      await this.#followHead();
      this.#record('fetch', 'ok', started);
    } catch (err) {
      this.#record('fetch', 'error', started);
      throw classify(err, this.host, this.repo);
    }
  }

  /**
   * Keeps HEAD on upstream's default branch. git 2.39's fetch does not update HEAD, and asking upstream
   * costs a full ref listing (ls-remote sends no ref prefix for HEAD), so it is done only every
   * `headCheckIntervalMs`, or at once when HEAD no longer resolves (its branch was deleted upstream and
   * pruned here).
   */
  async #followHead(): Promise<void> {
    const resolves = await runGit(['rev-parse', '--verify', '--quiet', 'HEAD^{commit}'], { cwd: this.gitDir, timeoutMs: 30_000 }).then(
      () => true,
      () => false,
    );
    if (resolves && this.#opts.clock.now() - this.#lastHeadCheck < this.#opts.headCheckIntervalMs) return;
    this.#lastHeadCheck = this.#opts.clock.now();
    this.#opts.metrics?.upstreamRequests.inc({ kind: 'ls-remote' });
    const out = await runGit(['ls-remote', '--symref', 'origin', 'HEAD'], {
      cwd: this.gitDir,
      env: this.#opts.upstream.gitEnv(),
      signal: this.#opts.shutdown,
      timeoutMs: 120_000,
    });
    const match = /^ref: (refs\/heads\/\S+)\tHEAD$/m.exec(out);
    if (match && match[1] !== (await this.#currentHead())) await runGit(['symbolic-ref', 'HEAD', match[1]], { cwd: this.gitDir, timeoutMs: 30_000 });
  }

  async #currentHead(): Promise<string> {
    return (await runGit(['symbolic-ref', '-q', 'HEAD'], { cwd: this.gitDir, timeoutMs: 30_000 }).catch(() => '')).trim();
  }

  #record(op: string, outcome: string, started: number): void {
    this.#opts.metrics?.gitOperations.inc({ op, outcome });
    this.#opts.metrics?.gitDuration.observe({ op }, (Date.now() - started) / 1000);
  }
}

/** Maps a failed clone/fetch to the error the client should see (404 / 502), keeping the cause. */
function classify(err: unknown, host: string, repo: string): Error {
  if (!(err instanceof GitCommandError)) return err instanceof Error ? err : new UpstreamError(String(err));
  const stderr = err.stderrTail;
  // Hosts answer 401/403 for private or missing repositories alike; without credentials that is a 404.
  if (/not found|does not appear to be a git repository|could not read Username|Authentication failed|returned error: 40[134]/i.test(stderr)) {
    return new NotFoundError(`repository ${host}/${repo} not found upstream`, { cause: err });
  }
  return new UpstreamError(`upstream ${host} failed for ${repo}: ${upstreamReason(stderr)}`, undefined, { cause: err });
}

/** A short, path-free reason from git's stderr. */
function upstreamReason(stderr: string): string {
  const status = /returned error: (\d{3})/.exec(stderr);
  if (status) return `HTTP ${status[1]}`;
  if (/Failed to connect|Couldn't connect|Connection refused/i.test(stderr)) return 'connection refused';
  if (/timed out/i.test(stderr)) return 'timed out';
  if (/Could not resolve host/i.test(stderr)) return 'could not resolve host';
  return 'git transfer failed';
}

function describe(err: unknown): string {
  return err instanceof CachewError || err instanceof Error ? err.message : String(err);
}

/** Waits for `work`, but gives up after `ms` (with `onTimeout()`) or when `signal` aborts. */
function waitBounded(work: Promise<void>, ms: number, signal: AbortSignal | undefined, onTimeout: () => Error): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => finish(onTimeout()), ms);
    const onAbort = (): void => finish(abortReason(signal!));
    const finish = (err?: unknown): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (err === undefined) resolve();
      else reject(err as Error);
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    work.then(() => finish(), (err: unknown) => finish(err));
  });
}

/** Rejects as soon as `signal` aborts, without cancelling the shared work. */
function raceSignal(work: Promise<void>, signal: AbortSignal): Promise<void> {
  return waitBounded(work, 2 ** 31 - 1, signal, () => new UnavailableError('timed out'));
}
