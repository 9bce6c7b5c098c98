/**
 * Route vocabulary (SPEC §3): path validation and URL builders used by both the server's router and
 * the restore client. Pure functions only.
 */

import { isObjectId } from './object-id.js';

const SEGMENT = /^[A-Za-z0-9._-]+$/;
export const MAX_REPO_SEGMENTS = 8;
export const MAX_REPO_LENGTH = 256;

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
  if (!/^[A-Za-z0-9.-]+(?::\d{1,5})?$/.test(host) || host.startsWith('.')) return 'malformed host';
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

/** The repository's identity without a trailing `.git`, used as the storage key. */
export function canonicalRepo(repo: string): string {
  return repo.endsWith('.git') ? repo.slice(0, -4) : repo;
}

export function repoBase(host: string, repo: string): string {
  return `/git/${host}/${repo}`;
}

export function stableSnapshotPath(host: string, repo: string): string {
  return `${repoBase(host, repo)}/snapshot.tar.zst`;
}

export function immutableSnapshotPath(host: string, repo: string, commit: string): string {
  return `${repoBase(host, repo)}/snapshot/${commit}.tar.zst`;
}

export function bundlePath(host: string, repo: string, baseCommit: string): string {
  return `${repoBase(host, repo)}/snapshot.bundle?base=${baseCommit}`;
}

export function snapshotsApiPath(host: string, repo: string): string {
  return `/api/v1${repoBase(host, repo)}/snapshots`;
}

/**
 * Maps an upstream repository URL to the proxy's `{host}` and `{repo}`:
 * `https://github.com/org/repo` → host `github.com`, repo `org/repo`;
 * `http://127.0.0.1:9000/org/r.git` → host `127.0.0.1:9000`, repo `org/r.git`.
 */
export function repoFromUpstreamUrl(url: string): { host: string; repo: string } {
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
  const problem = repoPathProblem(repo) ?? hostProblem(parsed.host);
  if (problem) throw new Error(`invalid repository URL ${url}: ${problem}`);
  return { host: parsed.host, repo };
}
