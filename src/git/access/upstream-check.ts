/**
 * The one cheap upstream request that decides whether a credential may read a repository:
 * `GET <repo>/info/refs?service=git-upload-pack` with the caller's `Authorization` — exactly what
 * `git clone` sends first. Protocol v2 is asked for, so a willing upstream answers with a few hundred
 * bytes of capabilities instead of every ref, and even those are not read: the status line and
 * headers decide, then the connection is dropped.
 *
 * No redirect is followed (a 30x is not proof of access, and following it could carry the
 * credential to another host); the request goes only to the URL the caller's repository maps to.
 */
import http from 'node:http';
import https from 'node:https';
import { UpstreamError, abortReason } from '../../util/errors.js';
import type { AccessDecision } from './decision-cache.js';

export interface ProbeOptions {
  signal?: AbortSignal;
  /** Give up (UpstreamError, not cached) after this long (default 15 s). */
  timeoutMs?: number;
}

/** Asks the upstream; `repoUrl` is the upstream URL of the repository (no trailing slash). */
export type UpstreamProbe = (repoUrl: string, authorization: string | undefined, options?: ProbeOptions) => Promise<AccessDecision>;

const DEFAULT_TIMEOUT_MS = 15_000;
const ADVERTISEMENT = 'application/x-git-upload-pack-advertisement';

/**
 * Maps the upstream's answer to a decision:
 * - 200 with a smart-HTTP advertisement: allow;
 * - 401: unauthorized (the credential is missing or wrong);
 * - 403, 404, 410, a redirect, any other 4xx, or a 200 that is not git (a login page): not_found —
 *   the caller may not read it, and we do not say whether it exists;
 * - 429, 5xx, timeouts and network errors: UpstreamError (502, not cached: nothing was decided).
 */
export function decisionForStatus(status: number, contentType: string | undefined): AccessDecision {
  if (status === 200) return (contentType ?? '').split(';')[0].trim().toLowerCase() === ADVERTISEMENT ? 'allow' : 'not_found';
  if (status === 401) return 'unauthorized';
  if (status === 429 || status >= 500 || status < 200) throw new UpstreamError(`upstream answered the access check with HTTP ${status}`, status);
  return 'not_found';
}

/** The default probe, over node:http(s). */
export const probeUpstream: UpstreamProbe = (repoUrl, authorization, options = {}) => {
  const url = new URL(`${repoUrl}/info/refs?service=git-upload-pack`);
  const transport = url.protocol === 'https:' ? https : http;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const headers: http.OutgoingHttpHeaders = {
    // Some forges serve smart HTTP only to user agents that look like git.
    'user-agent': 'git/2 (cachew access check)',
    'git-protocol': 'version=2',
    accept: ADVERTISEMENT,
  };
  if (authorization) headers.authorization = authorization;
  return new Promise<AccessDecision>((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(abortReason(options.signal));
      return;
    }
    // agent: false — a fresh connection that is closed after the head, since the body is never read.
    const req = transport.request(url, { method: 'GET', headers, agent: false, signal: options.signal });
    const timer = setTimeout(() => req.destroy(new UpstreamError(`upstream access check timed out after ${timeoutMs} ms`)), timeoutMs);
    req.on('response', (res) => {
      clearTimeout(timer);
      res.destroy();
      try {
        resolve(decisionForStatus(res.statusCode ?? 0, res.headers['content-type']));
      } catch (err) {
        reject(err as Error);
      }
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      if (options.signal?.aborted) reject(abortReason(options.signal));
      else if (err instanceof UpstreamError) reject(err);
      else reject(new UpstreamError(`upstream ${url.host} unreachable for the access check`, undefined, { cause: err }));
    });
    req.end();
  });
};
