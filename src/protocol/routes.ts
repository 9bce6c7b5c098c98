/**
 * The route grammar (SPEC §3), shared by the server's router and the restore client: one parser that
 * turns a raw request URL into a typed {@link Route}, and one formatter that turns a Route back into
 * its URL, so the two sides cannot drift. Validation happens on the RAW path, before any
 * normalisation: `..`, percent-encoded dots, NUL and friends never reach the filesystem or an upstream
 * URL because every segment must match the plain segment rule. Pure functions only.
 */
import { isObjectId } from './object-id.js';

const SEGMENT = /^[A-Za-z0-9._-]+$/;
const HOST = /^[A-Za-z0-9.-]+(?::\d{1,5})?$/;
export const MAX_REPO_SEGMENTS = 8;
export const MAX_REPO_LENGTH = 256;

/** A repository under an upstream, as the request spelled it (`repo` may end in `.git`). */
export interface RepoRef {
  /** The upstream's configured name (`{host}`), possibly with a port. */
  host: string;
  /** The repository path as the client spelled it. */
  repo: string;
}

/** Every route cachewd answers; `kind` doubles as the metrics label. */
export type Route =
  | { kind: 'liveness' }
  | { kind: 'readiness' }
  | { kind: 'metrics' }
  | { kind: 'git.info-refs'; target: RepoRef }
  | { kind: 'git.upload-pack'; target: RepoRef }
  | { kind: 'git.receive-pack'; target: RepoRef }
  /** Any other git path (LFS, dumb HTTP): forwarded upstream as `path` (after the repository). */
  | { kind: 'git.forward'; target: RepoRef; path: string }
  | { kind: 'snapshot.stable'; target: RepoRef }
  | { kind: 'snapshot.immutable'; target: RepoRef; commit: string }
  | { kind: 'snapshot.bundle'; target: RepoRef; base: string }
  | { kind: 'api.snapshots'; target: RepoRef };

/** Routes that name a repository. */
export type RepoRoute = Extract<Route, { target: RepoRef }>;

/** Why a URL is not a route: malformed (400) or naming nothing (404). */
export interface RouteProblem {
  problem: 'bad_request' | 'not_found';
  message: string;
}

/** Why a repository path was refused, or undefined when it is valid. */
export function repoPathProblem(repo: string): string | undefined {
  if (repo.length === 0) return 'empty repository path';
  if (repo.length > MAX_REPO_LENGTH) return `repository path longer than ${MAX_REPO_LENGTH} characters`;
  const segments = repo.split('/');
  if (segments.length > MAX_REPO_SEGMENTS) return `repository path deeper than ${MAX_REPO_SEGMENTS} segments`;
  for (const segment of segments) {
    if (!SEGMENT.test(segment)) return 'repository path segments must match [A-Za-z0-9._-]+';
    if (segment.startsWith('.')) return 'repository path segments must not start with "."';
  }
  return undefined;
}

/** Why an upstream host name was refused, or undefined. Host names may carry a port (`127.0.0.1:9000`). */
export function hostProblem(host: string): string | undefined {
  if (!HOST.test(host) || host.startsWith('.')) return 'malformed host';
  return undefined;
}

/** A commit id in a URL or a storage key: a full object id (see object-id.ts). */
export function isCommit(value: string): boolean {
  return isObjectId(value);
}

/**
 * The one path-segment rule shared by URLs and cache keys: `[A-Za-z0-9._-]+`. Routes also refuse a
 * leading `.`; cache keys refuse `.` and `..`.
 */
export function isSafeSegment(segment: string): boolean {
  return SEGMENT.test(segment);
}

/** The repository's identity without a trailing `.git`, used for mirrors and storage keys. */
export function canonicalRepo(repo: string): string {
  return repo.endsWith('.git') ? repo.slice(0, -4) : repo;
}

// ---- parsing -------------------------------------------------------------------------------------

const SINGLE_SEGMENT_ROUTES: Record<string, Route> = {
  _liveness: { kind: 'liveness' },
  _readiness: { kind: 'readiness' },
  metrics: { kind: 'metrics' },
};

/** Fixed actions after the repository, longest match first. */
const ACTIONS: Array<[string[], 'git.info-refs' | 'git.upload-pack' | 'git.receive-pack' | 'snapshot.stable' | 'snapshot.bundle' | 'git.forward']> = [
  [['info', 'refs'], 'git.info-refs'],
  [['git-upload-pack'], 'git.upload-pack'],
  [['git-receive-pack'], 'git.receive-pack'],
  [['snapshot.tar.zst'], 'snapshot.stable'],
  [['snapshot.bundle'], 'snapshot.bundle'],
  [['HEAD'], 'git.forward'],
];

const IMMUTABLE_SUFFIX = '.tar.zst';

function problem(kind: RouteProblem['problem'], message: string): RouteProblem {
  return { problem: kind, message };
}

/** Parses a raw request URL (`/path?query`) into a Route, or says why it is none. */
export function parseRoute(rawUrl: string): Route | RouteProblem {
  const q = rawUrl.indexOf('?');
  const path = q >= 0 ? rawUrl.slice(0, q) : rawUrl;
  const query = new URLSearchParams(q >= 0 ? rawUrl.slice(q + 1) : '');
  if (!path.startsWith('/') || /[\0\\]/.test(path)) return problem('bad_request', 'invalid path');
  const segments = path.split('/').slice(1);
  if (segments.length === 1 && Object.hasOwn(SINGLE_SEGMENT_ROUTES, segments[0])) return SINGLE_SEGMENT_ROUTES[segments[0]];
  if (segments[0] === 'git') return parseRepoRoute(segments.slice(1), query, false);
  if (segments[0] === 'api' && segments[1] === 'v1' && segments[2] === 'git') return parseRepoRoute(segments.slice(3), query, true);
  return problem('not_found', 'no such route');
}

/** Parses `{host}/{repo}/{action}` (the segments after `/git/` or `/api/v1/git/`). */
function parseRepoRoute(segments: string[], query: URLSearchParams, api: boolean): Route | RouteProblem {
  // The host (first segment) may carry a port (`127.0.0.1:9000`); hostProblem() validates it.
  for (const segment of segments.slice(1)) {
    if (!SEGMENT.test(segment) || segment.startsWith('.')) {
      return problem('bad_request', 'invalid path: segments must match [A-Za-z0-9._-]+ and not start with "."');
    }
  }
  const [host, ...rest] = segments;
  if (!host) return problem('bad_request', 'missing host');
  const badHost = hostProblem(host);
  if (badHost) return problem('bad_request', `invalid host: ${badHost}`);
  if (api) {
    if (rest.length < 2 || rest[rest.length - 1] !== 'snapshots') return problem('not_found', 'no such API route');
    return withRepo(host, rest.slice(0, -1), (target) => ({ kind: 'api.snapshots', target }));
  }
  for (const [suffix, kind] of ACTIONS) {
    if (rest.length > suffix.length && endsWith(rest, suffix)) {
      const repo = rest.slice(0, -suffix.length);
      if (kind === 'snapshot.bundle') {
        const base = query.get('base');
        if (!base || !isCommit(base)) return problem('bad_request', 'base must be a 40- or 64-character lowercase hex commit');
        return withRepo(host, repo, (target) => ({ kind, target, base }));
      }
      if (kind === 'git.forward') return withRepo(host, repo, (target) => ({ kind, target, path: suffix.join('/') }));
      return withRepo(host, repo, (target) => ({ kind, target }));
    }
  }
  const n = rest.length;
  if (n >= 3 && rest[n - 2] === 'snapshot' && rest[n - 1].endsWith(IMMUTABLE_SUFFIX)) {
    const commit = rest[n - 1].slice(0, -IMMUTABLE_SUFFIX.length);
    if (!isCommit(commit)) return problem('bad_request', 'commit must be 40 or 64 lowercase hex characters');
    return withRepo(host, rest.slice(0, -2), (target) => ({ kind: 'snapshot.immutable', target, commit }));
  }
  // Other git paths (LFS, dumb HTTP): the repo ends at the first `*.git` segment or before `info`/`objects`.
  const gitIndex = rest.findIndex((s) => s.endsWith('.git'));
  const markerIndex = rest.findIndex((s, i) => i > 0 && (s === 'info' || s === 'objects'));
  const split = gitIndex >= 0 && gitIndex < n - 1 ? gitIndex + 1 : markerIndex > 0 ? markerIndex : -1;
  if (split < 0) return problem('not_found', 'no such route');
  return withRepo(host, rest.slice(0, split), (target) => ({ kind: 'git.forward', target, path: rest.slice(split).join('/') }));
}

function withRepo(host: string, repoSegments: string[], make: (target: RepoRef) => Route): Route | RouteProblem {
  const repo = repoSegments.join('/');
  const bad = repoPathProblem(repo);
  if (bad) return problem('bad_request', `invalid repository: ${bad}`);
  return make({ host, repo });
}

function endsWith(segments: string[], suffix: string[]): boolean {
  const offset = segments.length - suffix.length;
  return offset >= 0 && suffix.every((s, i) => segments[offset + i] === s);
}

/** True when `parsed` is a route (not a problem). */
export function isRoute(parsed: Route | RouteProblem): parsed is Route {
  return 'kind' in parsed;
}

// ---- formatting ----------------------------------------------------------------------------------

/** The URL (path, plus query for the bundle) of a route: the inverse of {@link parseRoute}. */
export function formatRoute(route: Route): string {
  switch (route.kind) {
    case 'liveness':
      return '/_liveness';
    case 'readiness':
      return '/_readiness';
    case 'metrics':
      return '/metrics';
    case 'git.info-refs':
      return `${repoBase(route.target.host, route.target.repo)}/info/refs`;
    case 'git.upload-pack':
      return `${repoBase(route.target.host, route.target.repo)}/git-upload-pack`;
    case 'git.receive-pack':
      return `${repoBase(route.target.host, route.target.repo)}/git-receive-pack`;
    case 'git.forward':
      return `${repoBase(route.target.host, route.target.repo)}/${route.path}`;
    case 'snapshot.stable':
      return `${repoBase(route.target.host, route.target.repo)}/snapshot.tar.zst`;
    case 'snapshot.immutable':
      return `${repoBase(route.target.host, route.target.repo)}/snapshot/${route.commit}${IMMUTABLE_SUFFIX}`;
    case 'snapshot.bundle':
      return `${repoBase(route.target.host, route.target.repo)}/snapshot.bundle?base=${route.base}`;
    case 'api.snapshots':
      return `/api/v1${repoBase(route.target.host, route.target.repo)}/snapshots`;
  }
}

/** `/git/{host}/{repo}`: the prefix of every repository route (the git remote URL through cachew). */
export function repoBase(host: string, repo: string): string {
  return `/git/${host}/${repo}`;
}

export function stableSnapshotPath(host: string, repo: string): string {
  return formatRoute({ kind: 'snapshot.stable', target: { host, repo } });
}

export function immutableSnapshotPath(host: string, repo: string, commit: string): string {
  return formatRoute({ kind: 'snapshot.immutable', target: { host, repo }, commit });
}

export function bundlePath(host: string, repo: string, baseCommit: string): string {
  return formatRoute({ kind: 'snapshot.bundle', target: { host, repo }, base: baseCommit });
}

export function snapshotsApiPath(host: string, repo: string): string {
  return formatRoute({ kind: 'api.snapshots', target: { host, repo } });
}

/**
 * Maps an upstream repository URL to the proxy's `{host}` and `{repo}`:
 * `https://github.com/org/repo` → host `github.com`, repo `org/repo`;
 * `http://127.0.0.1:9000/org/r.git` → host `127.0.0.1:9000`, repo `org/r.git`.
 */
export function repoFromUpstreamUrl(url: string): RepoRef {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`not a repository URL: ${url}`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new Error(`unsupported repository URL scheme: ${parsed.protocol}`);
  }
  const repo = parsed.pathname.replace(/^\/+/, '').replace(/\/+$/, '');
  const bad = repoPathProblem(repo) ?? hostProblem(parsed.host);
  if (bad) throw new Error(`invalid repository URL ${url}: ${bad}`);
  return { host: parsed.host, repo };
}
