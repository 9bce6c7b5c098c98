/**
 * Splits and validates `/git/{host}/{repo}/{action}` request paths (SPEC §3) on the RAW request path,
 * before any normalisation: `..`, percent-encoded dots, NUL and friends never reach the filesystem
 * or an upstream URL because every segment must match the plain segment pattern.
 */
import { BadRequestError } from '../util/errors.js';
import { canonicalRepo, hostProblem, isSafeSegment, repoPathProblem } from '../protocol/routes.js';

export interface ParsedRepoPath {
  host: string;
  repo: string;
  canonicalRepo: string;
  action: string;
}

const ACTION_SUFFIXES: string[][] = [
  ['info', 'refs'],
  ['git-upload-pack'],
  ['git-receive-pack'],
  ['snapshot.tar.zst'],
  ['snapshot.bundle'],
  ['HEAD'],
];

/**
 * Parses the segments after `/git/`. Returns undefined when the path names no known action (404);
 * throws BadRequestError (400) for a malformed path.
 */
export function parseRepoPath(segments: string[]): ParsedRepoPath | undefined {
  // The host (first segment) may carry a port (`127.0.0.1:9000`); hostProblem() below validates it.
  for (const segment of segments.slice(1)) {
    if (!isSafeSegment(segment) || segment.startsWith('.')) {
      throw new BadRequestError('invalid path: segments must match [A-Za-z0-9._-]+ and not start with "."');
    }
  }
  const [host, ...rest] = segments;
  if (!host) throw new BadRequestError('missing host');
  const problem = hostProblem(host);
  if (problem) throw new BadRequestError(`invalid host: ${problem}`);
  const split = splitAction(rest);
  if (!split) return undefined;
  const repo = split.repo.join('/');
  const repoProblem = repoPathProblem(repo);
  if (repoProblem) throw new BadRequestError(`invalid repository: ${repoProblem}`);
  return { host, repo, canonicalRepo: canonicalRepo(repo), action: split.action.join('/') };
}

function splitAction(rest: string[]): { repo: string[]; action: string[] } | undefined {
  for (const suffix of ACTION_SUFFIXES) {
    if (endsWith(rest, suffix) && rest.length > suffix.length) {
      return { repo: rest.slice(0, -suffix.length), action: suffix };
    }
  }
  const n = rest.length;
  if (n >= 3 && rest[n - 2] === 'snapshot' && rest[n - 1].endsWith('.tar.zst')) {
    return { repo: rest.slice(0, -2), action: rest.slice(-2) };
  }
  // Other git paths (LFS, dumb HTTP): the repo ends at the first `*.git` segment or before `info`/`objects`.
  const gitIndex = rest.findIndex((s) => s.endsWith('.git'));
  if (gitIndex >= 0 && gitIndex < n - 1) return { repo: rest.slice(0, gitIndex + 1), action: rest.slice(gitIndex + 1) };
  const markerIndex = rest.findIndex((s, i) => i > 0 && (s === 'info' || s === 'objects'));
  if (markerIndex > 0) return { repo: rest.slice(0, markerIndex), action: rest.slice(markerIndex) };
  return undefined;
}

function endsWith(segments: string[], suffix: string[]): boolean {
  if (segments.length < suffix.length) return false;
  const offset = segments.length - suffix.length;
  return suffix.every((s, i) => segments[offset + i] === s);
}

/** Splits a raw request URL into path segments and query, rejecting NUL/backslashes outright. */
export function splitRawUrl(rawUrl: string): { segments: string[]; query: URLSearchParams; path: string } {
  const q = rawUrl.indexOf('?');
  const path = q >= 0 ? rawUrl.slice(0, q) : rawUrl;
  const query = new URLSearchParams(q >= 0 ? rawUrl.slice(q + 1) : '');
  if (!path.startsWith('/') || /[\0\\]/.test(path)) throw new BadRequestError('invalid path');
  return { segments: path.split('/').slice(1), query, path };
}
