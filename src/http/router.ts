/**
 * Maps request paths to handlers (route paths live here and in src/protocol/routes.ts only).
 * The router validates everything a handler would otherwise have to trust: the upstream host is
 * configured (an unknown host is answered 404 and never contacted), repo segments are safe, and the
 * API's caller is allowed.
 */
import type { RepoHandler, RequestContext, RepoTarget, Handler } from './context.js';
import { parseRepoPath, splitRawUrl } from './paths.js';
import { sendError, sendText } from './reply.js';
import { CachewError, NotFoundError } from '../util/errors.js';

export interface RouterDeps {
  /** Configured upstreams: name → base URL. */
  upstreams: ReadonlyMap<string, string>;
  /** Smart HTTP, receive-pack and forwarded paths. */
  git: RepoHandler;
  /** `snapshot.tar.zst`, `snapshot/{commit}.tar.zst`, `snapshot.bundle`. */
  snapshots: RepoHandler;
  /** `/api/v1/git/{host}/{repo}/snapshots` (GET list, POST create). */
  api: RepoHandler;
  liveness: Handler;
  readiness: Handler;
  metrics: Handler;
  /** Bearer token for non-loopback POSTs to /api/v1; undefined = loopback only. */
  apiToken?: string;
}

export function isSnapshotAction(action: string): boolean {
  return action === 'snapshot.tar.zst' || action === 'snapshot.bundle' || action.startsWith('snapshot/');
}

export function createRouter(deps: RouterDeps): Handler {
  return async (ctx) => {
    const { segments } = splitRawUrl(ctx.req.url ?? '/');
    const head = segments[0];
    if (segments.length === 1) {
      if (head === '_liveness') return run(ctx, 'liveness', deps.liveness);
      if (head === '_readiness') return run(ctx, 'readiness', deps.readiness);
      if (head === 'metrics') return run(ctx, 'metrics', deps.metrics);
    }
    if (head === 'git') {
      const target = resolveTarget(deps, segments.slice(1));
      if (isSnapshotAction(target.action)) {
        ctx.route = target.action === 'snapshot.bundle' ? 'snapshot.bundle' : target.action === 'snapshot.tar.zst' ? 'snapshot.stable' : 'snapshot.immutable';
        return deps.snapshots(ctx, target);
      }
      ctx.route = gitRouteName(target.action);
      return deps.git(ctx, target);
    }
    if (head === 'api' && segments[1] === 'v1' && segments[2] === 'git') {
      const target = resolveTarget(deps, segments.slice(3));
      if (target.action !== 'snapshots') throw new NotFoundError('no such API route');
      ctx.route = 'api.snapshots';
      if (ctx.req.method === 'POST') authorizeApi(ctx, deps.apiToken);
      return deps.api(ctx, target);
    }
    ctx.route = 'unknown';
    throw new NotFoundError('no such route');
  };
}

async function run(ctx: RequestContext, route: string, handler: Handler): Promise<void> {
  ctx.route = route;
  await handler(ctx);
}

function resolveTarget(deps: RouterDeps, segments: string[]): RepoTarget {
  // The API path ends in `/snapshots`, which the git path parser does not know: split it off first.
  const isApi = segments[segments.length - 1] === 'snapshots';
  const parsed = parseRepoPath(isApi ? [...segments.slice(0, -1), 'HEAD'] : segments);
  if (!parsed) throw new NotFoundError('no such route');
  const upstreamBaseUrl = deps.upstreams.get(parsed.host);
  if (upstreamBaseUrl === undefined) throw new NotFoundError(`upstream host ${parsed.host} is not configured`);
  return {
    host: parsed.host,
    repo: parsed.repo,
    canonicalRepo: parsed.canonicalRepo,
    action: isApi ? 'snapshots' : parsed.action,
    upstreamBaseUrl,
  };
}

function gitRouteName(action: string): string {
  if (action === 'info/refs') return 'git.info-refs';
  if (action === 'git-upload-pack') return 'git.upload-pack';
  if (action === 'git-receive-pack') return 'git.receive-pack';
  return 'git.forward';
}

function isLoopback(address: string | undefined): boolean {
  return !!address && (address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.'));
}

function authorizeApi(ctx: RequestContext, token: string | undefined): void {
  if (isLoopback(ctx.req.socket.remoteAddress)) return;
  if (!token) throw new CachewError('forbidden', 'the API answers loopback clients only (no --api-token set)');
  if (ctx.req.headers.authorization !== `Bearer ${token}`) {
    throw new CachewError('unauthorized', 'missing or wrong bearer token');
  }
}

/** Wraps a handler so every error becomes a response (used by the HTTP server and in tests). */
export function withErrors(handler: Handler): Handler {
  return async (ctx) => {
    try {
      await handler(ctx);
      if (!ctx.res.headersSent && !ctx.res.writableEnded) sendText(ctx, 500, 'handler sent no response');
    } catch (err) {
      sendError(ctx, err);
    }
  };
}
