/**
 * What cachew does with a smart-HTTP request (SPEC §3), decided here and carried out by the HTTP
 * route (src/http/routes/git.ts): clone and fetch are served from the mirror, a want the mirror lacks
 * is fetched first and only forwarded upstream if upstream's fetch did not bring it, and pushes and
 * everything else (LFS, dumb HTTP) go to the upstream unchanged. Plain functions of plain values, so
 * every branch is testable without a socket.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { BadRequestError, CachewError, GitCommandError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { Mirror } from './mirror.js';
import { UPLOAD_PACK_REQUEST, UPLOAD_PACK_RESULT, sanitizeGitProtocol } from './smart-http.js';

/** The request as the policy sees it. */
export interface GitRequest {
  /** The path after the repository: `info/refs`, `git-upload-pack`, `git-receive-pack`, `info/lfs/...`. */
  action: string;
  method: string;
  /** The `service` query parameter of `info/refs`, if any. */
  service: string | null;
  /** `--read-only`: pushes are refused. */
  readOnly: boolean;
}

/**
 * The decision: `advertise` the mirror's refs (info/refs for upload-pack), serve `upload-pack` from
 * the mirror, or `forward` upstream (`push` for receive-pack, which is refused when read-only).
 */
export type GitPlan = { kind: 'advertise' } | { kind: 'upload-pack' } | { kind: 'forward'; push: boolean };

/** Decides how a non-snapshot `/git/{host}/{repo}/...` request is answered; throws for a refused one. */
export function planGitRequest(request: GitRequest): GitPlan {
  const { action, method, service } = request;
  const push = action === 'git-receive-pack' || (action === 'info/refs' && service === 'git-receive-pack');
  if (push) {
    if (request.readOnly) throw new CachewError('forbidden', 'this cachew is read-only: pushes are refused');
    return { kind: 'forward', push: true };
  }
  if (action === 'info/refs' && service === 'git-upload-pack') {
    if (method !== 'GET' && method !== 'HEAD') throw new BadRequestError('info/refs expects GET');
    return { kind: 'advertise' };
  }
  if (action === 'git-upload-pack') {
    if (method !== 'POST') throw new BadRequestError('git-upload-pack expects POST');
    return { kind: 'upload-pack' };
  }
  return { kind: 'forward', push: false };
}

/**
 * True when the mirror holds every object the request `wants`. A missing want triggers one fetch
 * (shared with concurrent requests); only if the object is still missing afterwards is the request
 * to go upstream (false), so a client never sees "not our ref" for something upstream has.
 */
export async function mirrorHasWants(
  mirror: Pick<Mirror, 'missingObjects' | 'fetchNow'>,
  wants: readonly string[],
  options: { signal?: AbortSignal; log: Logger },
): Promise<boolean> {
  const { signal, log } = options;
  let missing = await mirror.missingObjects(wants, { signal });
  if (missing.length === 0) return true;
  try {
    await mirror.fetchNow({ signal });
  } catch (err) {
    log.warn({ err: (err as Error).message, missing: missing.length }, 'fetch for missing wants failed');
  }
  missing = await mirror.missingObjects(missing, { signal });
  if (missing.length > 0) log.info({ missing: missing.slice(0, 5) }, 'wants not in mirror after fetch; forwarding upstream');
  return missing.length === 0;
}

/** upload-pack's complaints about the request itself (framing, syntax, capabilities, wants). */
const CLIENT_FAULT = /protocol error|expected|unknown (capability|command|argument)|invalid|unexpected|not our ref|bad (line|request)|disallowed/i;

/**
 * A 400 for upload-pack failing at once because of what the client sent; undefined for anything
 * else (a broken mirror is ours: 502). git's stderr is reduced to its last line, paths elided.
 */
export function refusedUploadPack(err: unknown): BadRequestError | undefined {
  if (!(err instanceof GitCommandError) || !CLIENT_FAULT.test(err.stderrTail)) return undefined;
  const line = err.stderrTail.trim().split('\n').pop() ?? '';
  const reason = line.replace(/^fatal: /, '').replace(/\/\S+/g, '…').slice(0, 200);
  return new BadRequestError(`malformed upload-pack request: ${reason}`, { cause: err });
}

/**
 * The headers of an upload-pack request replayed upstream (the mirror lacked a want): the protocol's
 * own, the client's User-Agent and Git-Protocol, and only the caller's own credential — the server's
 * token is for mirror fetches and nothing else.
 */
export function uploadPackForwardHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { 'content-type': UPLOAD_PACK_REQUEST, accept: UPLOAD_PACK_RESULT };
  const gitProtocol = sanitizeGitProtocol(headers['git-protocol']);
  if (gitProtocol) out['git-protocol'] = gitProtocol;
  if (headers['user-agent']) out['user-agent'] = headers['user-agent'];
  if (headers.authorization) out.authorization = headers.authorization;
  return out;
}
