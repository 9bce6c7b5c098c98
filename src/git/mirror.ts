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
import { listUpstreamRefs, type AdvertisedRefs } from './upstream-refs.js';
import {
  CachewError,
  GitCommandError,
  InsufficientStorageError,
  NotFoundError,
  UnavailableError,
  UpstreamError,
  abortReason,
  isNoSpace,
} from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { Metrics } from '../util/metrics.js';
import type { Clock } from '../util/clock.js';
import { isObjectId, isObjectIdPrefix } from '../protocol/object-id.js';

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
  waitMs: number;
  logger: Logger;
  metrics?: Metrics;
  /** Aborted when the manager shuts down; long-running clones and fetches stop with it. */
  shutdown: AbortSignal;
  /** True when the mirror already exists on disk. */
  ready: boolean;
  /** The clock the ref-check interval is measured on. */
  clock: Clock;
}

/** Signal-only options of the public methods. */
export interface OpOptions {
  signal?: AbortSignal;
}

const CLONE_TIMEOUT_MS = 60 * 60_000;
const FETCH_TIMEOUT_MS = 30 * 60_000;
const RETRY_AFTER_SECONDS = 10;
/**
 * For every git command that talks to upstream: never follow a redirect (git 2.39's default,
 * `initial`, follows one to any host and keeps using it), so only configured hosts are contacted.
 */
const NO_REDIRECTS = ['-c', 'http.followRedirects=false'];

/** Configuration every mirror gets: it is a server for clients, not a workspace. */
const MIRROR_CONFIG: Array<[string, string]> = [
  ['uploadpack.allowFilter', 'true'],
  // Wants are checked against the object store before upload-pack runs (a missing one triggers a
  // fetch), so upload-pack must accept any object it has, e.g. one a force-push left unreferenced.
  ['uploadpack.allowAnySHA1InWant', 'true'],
  ['gc.autoDetach', 'false'],
  ['core.logAllRefUpdates', 'false'],
  // Refs are pruned by syncRefs, and only against a validated listing: a fetch that fell back to
  // git's dumb protocol on an HTML or empty 200 would otherwise delete every branch.
  ['fetch.prune', 'false'],
];

/** A mirror's heads and tags (name → object id) and HEAD's target, as the last sync left them. */
interface KnownRefs {
  refs: Map<string, string>;
  head: string | undefined;
}

interface FetchRun {
  startedAt: number;
  promise: Promise<void>;
}

/** Numbers Mirror objects: a mirror re-created for the same directory never shares cached answers. */
let mirrorsCreated = 0;

export class Mirror {
  /** Unique among this process's mirrors (see refsVersion). */
  readonly instanceId = `m${++mirrorsCreated}`;
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
  /**
   * Bumped before a ref update starts and again when it ends (#syncRefs; a check that finds nothing to
   * change bumps nothing): what #headCache and answers cached by the version (refsVersion) are valid for.
   */
  #refsVersion = 0;
  /**
   * The refs and HEAD as the last sync left them, so a check that finds upstream unchanged needs no git
   * process. Only #syncRefs writes refs (the mirror is ours alone); unset after any sync that failed.
   */
  #knownRefs: KnownRefs | undefined;
  /**
   * The default branch as last read, for the refs version it was read at. Every restore asks for it
   * through the stable URL; reading it costs two git processes, and only #syncRefs changes it.
   */
  #headCache: { version: number; head: { name: string; commit: string } } | undefined;
  readonly #opts: MirrorOptions;
  readonly #log: Logger;

  constructor(options: MirrorOptions) {
    this.#opts = options;
    this.host = options.host;
    this.repo = options.repo;
    this.gitDir = options.gitDir;
    this.upstreamUrl = options.upstream.repoUrl(options.repo);
    this.#state = options.ready ? 'ready' : 'empty';
    this.#log = options.logger.child({ mirror: `${options.host}/${options.repo}` });
  }

  get state(): MirrorState {
    return this.#state;
  }

  /**
   * Changes whenever the refs may have changed: an answer computed from the refs (an advertisement,
   * an ls-refs reply) at one version is valid for as long as the version stays the same.
   */
  get refsVersion(): number {
    return this.#refsVersion;
  }

  /**
   * Resolves once the mirror exists. The first caller starts the clone; every caller waits for the
   * same clone for at most `waitMs`, then gets UnavailableError (503 + Retry-After) while the clone
   * continues in the background. Upstream "not found" → NotFoundError; unreachable → UpstreamError.
   */
  /** Resolves once no clone or fetch of this mirror is running (whatever their outcome). */
  async settled(): Promise<void> {
    const running = [this.#clone, this.#fetch?.promise, this.#queuedFetch?.promise];
    await Promise.allSettled(running.filter((work) => work !== undefined));
  }

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
      const reason = err instanceof UpstreamError ? err.reason : undefined;
      this.#log.warn({ err: describe(err), reason }, 'upstream check failed; serving the mirror as it is');
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
    if (!isObjectIdPrefix(sha)) return false;
    try {
      await runGit(['cat-file', '-e', `${sha}^{object}`], { cwd: this.gitDir, signal: options.signal, timeoutMs: 30_000 });
      return true;
    } catch (err) {
      if (err instanceof GitCommandError) return false;
      throw err;
    }
  }

  /**
   * Whether `older` is `newer` or one of its ancestors (`git merge-base --is-ancestor`). A commit the
   * mirror does not hold counts as no: a caller deciding whether the snapshot pointer may move treats
   * an unknown commit as newer than ours, so a mirror that is behind never moves it backwards.
   */
  async isAncestor(older: string, newer: string, options: OpOptions = {}): Promise<boolean> {
    if (older === newer) return true;
    if (!isObjectId(older) || !isObjectId(newer)) return false;
    try {
      await runGit(['merge-base', '--is-ancestor', older, newer], { cwd: this.gitDir, signal: options.signal, timeoutMs: 60_000 });
      return true;
    } catch (err) {
      // Exit 1: not an ancestor; 128: a commit git does not know.
      if (err instanceof GitCommandError && (err.exitCode === 1 || err.exitCode === 128)) return false;
      throw err;
    }
  }

  /** The subset of `shas` this mirror does not hold (one `cat-file --batch-check` for all of them). */
  async missingObjects(shas: readonly string[], options: OpOptions = {}): Promise<string[]> {
    if (shas.length === 0) return [];
    const valid = shas.filter((s) => isObjectId(s));
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
    const version = this.#refsVersion;
    if (this.#headCache?.version === version) return { ...this.#headCache.head };
    try {
      const ref = (await runGit(['symbolic-ref', 'HEAD'], { cwd: this.gitDir, signal: options.signal })).trim();
      const commit = (await runGit(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`], { cwd: this.gitDir, signal: options.signal })).trim();
      const head = { name: ref.replace(/^refs\/heads\//, ''), commit };
      // Read at `version`: a ref update that ended meanwhile has bumped it, so this entry is never used.
      this.#headCache = { version, head };
      return { ...head };
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
    const { tmpRoot, metrics } = this.#opts;
    await fs.mkdir(tmpRoot, { recursive: true });
    const staging = path.join(tmpRoot, `${randomBytes(8).toString('hex')}.git`);
    const started = Date.now();
    this.#log.info({ upstream: this.upstreamUrl }, 'cloning mirror');
    try {
      metrics?.upstreamRequests.inc({ kind: 'clone' });
      const advertised = await this.#listRefs();
      // init + fetch instead of `clone --bare`: the clone takes the same validated path as every
      // later refresh (only heads and tags, HEAD as upstream advertises it).
      await runGit(['init', '--bare', '--quiet', staging], { timeoutMs: 30_000 });
      await runGit(['remote', 'add', 'origin', this.upstreamUrl], { cwd: staging, timeoutMs: 30_000 });
      await this.#configure(staging);
      await this.#syncRefs(staging, advertised, CLONE_TIMEOUT_MS);
      await fs.mkdir(path.dirname(this.gitDir), { recursive: true });
      await fs.rename(staging, this.gitDir);
      this.#record('clone', 'ok', started);
      this.#log.info({ ms: Date.now() - started }, 'mirror ready');
    } catch (err) {
      this.#record('clone', 'error', started);
      await fs.rm(staging, { recursive: true, force: true });
      throw classify(err, this.host, this.repo, this.#opts.upstream.authorizationHeader() !== undefined);
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
      const advertised = await this.#listRefs();
      await this.#syncRefs(this.gitDir, advertised, FETCH_TIMEOUT_MS);
      this.#record('fetch', 'ok', started);
    } catch (err) {
      this.#record('fetch', 'error', started);
      throw classify(err, this.host, this.repo, this.#opts.upstream.authorizationHeader() !== undefined);
    }
  }

  #listRefs(): Promise<AdvertisedRefs> {
    this.#opts.metrics?.upstreamRequests.inc({ kind: 'ls-refs' });
    return listUpstreamRefs(this.#opts.upstream, this.repo, { signal: this.#opts.shutdown });
  }

  /**
   * Makes `gitDir`'s heads, tags and HEAD match a validated listing: fetches (without pruning) only
   * when a ref differs, then deletes the refs the listing does not have and points HEAD where
   * upstream's does. Nothing else may delete a ref.
   */
  async #syncRefs(gitDir: string, advertised: AdvertisedRefs, timeoutMs: number): Promise<void> {
    const live = gitDir === this.gitDir;
    const known = live ? this.#knownRefs : undefined;
    this.#knownRefs = undefined;
    // A clone's staging directory becomes the mirror by a rename: always a change.
    let changing = !live;
    const willChange = (): void => {
      if (changing) return;
      changing = true;
      this.#refsVersion++;
    };
    try {
      const after = await this.#applyRefs(gitDir, advertised, timeoutMs, known, willChange);
      if (live) this.#knownRefs = after;
    } catch (err) {
      changing = true; // whatever git did before failing, nothing cached may outlive it
      throw err;
    } finally {
      if (changing) this.#refsVersion++;
    }
  }

  /**
   * Does the update; `willChange` is called before the first write. Returns the refs as they are
   * after it (`head` undefined when it was not read).
   */
  async #applyRefs(
    gitDir: string,
    advertised: AdvertisedRefs,
    timeoutMs: number,
    known: KnownRefs | undefined,
    willChange: () => void,
  ): Promise<KnownRefs> {
    let local = known?.refs ?? (await localRefs(gitDir));
    let current = known?.head;
    const behind = [...advertised.refs].some(([name, oid]) => local.get(name) !== oid);
    if (behind) {
      willChange();
      await runGit([...NO_REDIRECTS, 'fetch', '--no-prune', '--no-write-fetch-head', '--quiet', 'origin'], {
        cwd: gitDir,
        env: this.#opts.upstream.gitEnv(),
        signal: this.#opts.shutdown,
        timeoutMs,
      });
      local = await localRefs(gitDir);
    }
    const stale = [...local].filter(([name]) => !advertised.refs.has(name));
    if (stale.length > 0) {
      willChange();
      // `delete <ref> <old>`: a ref that changed meanwhile is left alone (the next check sees it).
      const input = stale.map(([name, oid]) => `delete ${name} ${oid}\n`).join('');
      await runGit(['update-ref', '--stdin'], { cwd: gitDir, input, timeoutMs: 60_000 });
      // update-ref applies all of the deletions or fails: after it, exactly these refs are gone.
      local = new Map([...local].filter(([name]) => advertised.refs.has(name)));
    }
    const head = advertised.head;
    if (head && head.startsWith('refs/heads/') && local.has(head)) {
      current ??= await currentHead(gitDir);
      if (head !== current) {
        willChange();
        await runGit(['symbolic-ref', 'HEAD', head], { cwd: gitDir, timeoutMs: 30_000 });
        current = head;
      }
    }
    return { refs: local, head: current };
  }

  #record(op: string, outcome: string, started: number): void {
    this.#opts.metrics?.gitOperations.inc({ op, outcome });
    this.#opts.metrics?.gitDuration.observe({ op }, (Date.now() - started) / 1000);
  }
}

/** `refs/heads/*` and `refs/tags/*` of a repository → object id. */
async function localRefs(gitDir: string): Promise<Map<string, string>> {
  const out = await runGit(['for-each-ref', '--format=%(objectname) %(refname)', 'refs/heads/', 'refs/tags/'], { cwd: gitDir, timeoutMs: 60_000 });
  const refs = new Map<string, string>();
  for (const line of out.split('\n')) {
    const space = line.indexOf(' ');
    if (space > 0) refs.set(line.slice(space + 1), line.slice(0, space));
  }
  return refs;
}

async function currentHead(gitDir: string): Promise<string> {
  return (await runGit(['symbolic-ref', '-q', 'HEAD'], { cwd: gitDir, timeoutMs: 30_000 }).catch(() => '')).trim();
}

/**
 * Maps a failed clone/fetch to the error the client should see, keeping the cause: a full disk is
 * ours (507); git's own transfer errors are sorted into not found / auth / unreachable / bad reply.
 * Errors from listUpstreamRefs are already classified.
 */
function classify(err: unknown, host: string, repo: string, hasToken: boolean): Error {
  if (isNoSpace(err)) return new InsufficientStorageError(undefined, undefined, { cause: err });
  if (!(err instanceof GitCommandError)) return err instanceof Error ? err : new UpstreamError(String(err));
  const stderr = err.stderrTail;
  if (/returned error: 404|repository .* not found/i.test(stderr)) {
    return new NotFoundError(`repository ${host}/${repo} not found upstream`, { cause: err });
  }
  const refused = /returned error: 40[13]|could not read Username|Authentication failed/i.test(stderr);
  // Hosts answer 401/403 for private and missing repositories alike: without a token of ours, that is a 404.
  if (refused && !hasToken) return new NotFoundError(`repository ${host}/${repo} not found upstream (or private)`, { cause: err });
  if (refused) {
    return new UpstreamError(`upstream ${host} refused access to ${repo}`, undefined, { cause: err, reason: 'auth' });
  }
  const status = /returned error: (\d{3})/.exec(stderr);
  if (status && status[1].startsWith('3')) {
    return new UpstreamError(`upstream ${host} redirected ${repo}; redirects are not followed`, undefined, { cause: err, reason: 'bad_reply' });
  }
  if (status) return new UpstreamError(`upstream ${host} failed for ${repo}: HTTP ${status[1]}`, undefined, { cause: err, reason: 'status' });
  if (/Failed to connect|Couldn't connect|Connection refused|Could not resolve host|Connection reset/i.test(stderr)) {
    return new UpstreamError(`upstream ${host} is unreachable (${repo})`, undefined, { cause: err, reason: 'unreachable' });
  }
  if (/timed out/i.test(stderr)) return new UpstreamError(`upstream ${host} timed out (${repo})`, undefined, { cause: err, reason: 'timeout' });
  return new UpstreamError(`bad reply from upstream ${host} for ${repo}`, undefined, { cause: err, reason: 'bad_reply' });
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
