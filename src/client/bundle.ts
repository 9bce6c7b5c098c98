/**
 * Applies the delta bundle a stable snapshot response may advertise (`X-Cachew-Bundle-Url`): the
 * server's mirror is ahead of the snapshot, and the bundle carries the commits from the snapshot's
 * commit to the new head. We fetch it into `refs/remotes/origin/*` (origin stays the upstream URL) and
 * move the checked-out branch there with `git reset --keep`, which fast-forwards the working tree and
 * also copes with an upstream force-push.
 */
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { abortReason } from '../util/errors.js';
import { ProtocolError } from './errors.js';
import { runGit } from './git.js';
import { discard, readBody, type HttpClient, type HttpResponse } from './http.js';
import { isRetryable } from './range-fetch.js';

export interface ApplyBundleOptions {
  http: HttpClient;
  bundleUrl: URL;
  /** The restored clone (its `.git` receives the temporary bundle file). */
  cloneDir: string;
  maxAttempts?: number;
  backoffMs?: number;
  signal?: AbortSignal;
}

export interface BundleResult {
  applied: boolean;
  /** HEAD after the bundle (or unchanged). */
  commit: string;
  /** Why nothing was applied, when nothing was. */
  reason?: string;
}

/** Downloads and applies the bundle; `applied: false` when the server says there is nothing to do. */
export async function applyBundle(options: ApplyBundleOptions): Promise<BundleResult> {
  const { cloneDir, signal } = options;
  const headBefore = await runGit(['rev-parse', 'HEAD'], cloneDir, signal);
  const file = path.join(cloneDir, '.git', `cachew-delta-${process.pid}-${Date.now()}.bundle`);
  try {
    const outcome = await download(options, file);
    if (outcome !== 'ok') return { applied: false, commit: headBefore, reason: outcome };
    const heads = await runGit(['bundle', 'list-heads', file], cloneDir, signal);
    const refs = heads.split('\n').map((line) => line.split(' ')[1]).filter((ref): ref is string => Boolean(ref));
    const branch = await runGit(['symbolic-ref', '--short', '-q', 'HEAD'], cloneDir, signal).catch(() => '');
    let refspec: string;
    if (refs.some((ref) => ref.startsWith('refs/heads/'))) refspec = '+refs/heads/*:refs/remotes/origin/*';
    else if (refs.includes('HEAD') && branch) refspec = `+HEAD:refs/remotes/origin/${branch}`;
    else return { applied: false, commit: headBefore, reason: 'bundle carries no branch' };
    // No reflog for the remote-tracking ref: a clone has none (clone-layout.ts writes the checkout's).
    const fetchArgs = ['-c', 'core.logAllRefUpdates=false', 'fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--no-auto-maintenance'];
    await runGit([...fetchArgs, file, refspec], cloneDir, signal);
    if (!branch) return { applied: false, commit: headBefore, reason: 'HEAD is detached' };
    const target = await runGit(['rev-parse', '-q', '--verify', `refs/remotes/origin/${branch}^{commit}`], cloneDir, signal);
    if (target !== headBefore) await runGit(['reset', '--quiet', '--keep', target], cloneDir, signal);
    return { applied: target !== headBefore, commit: target };
  } finally {
    await fs.rm(file, { force: true });
  }
}

/** Saves the bundle to `file`; 'ok', or why there is nothing to apply. Retries transient failures. */
async function download(options: ApplyBundleOptions, file: string): Promise<'ok' | 'already current' | 'base unknown'> {
  const { http, bundleUrl, signal } = options;
  const maxAttempts = options.maxAttempts ?? 5;
  for (let failures = 0; ; failures++) {
    let response: HttpResponse | undefined;
    try {
      response = await http.get(bundleUrl, {}, signal);
      if (response.status === 204) return 'already current';
      if (response.status === 404) return 'base unknown';
      if (response.status !== 200) throw new ProtocolError(`unexpected HTTP ${response.status} from ${bundleUrl.href}`, response.status);
      await pipeline(readBody(response, http.idleTimeoutMs, signal), createWriteStream(file));
      return 'ok';
    } catch (err) {
      if (response) discard(response);
      if (signal?.aborted) throw abortReason(signal);
      if (!isRetryable(err) || failures + 1 >= maxAttempts) throw err;
      await sleep((options.backoffMs ?? 200) * 2 ** failures, undefined, { signal }).catch(() => undefined);
    } finally {
      if (response && response.status !== 200) discard(response);
    }
  }
}
