/**
 * Maps requests to handlers: the route grammar (src/protocol/routes.ts) parses the path once into a
 * typed route, and the router dispatches on its kind.
 * The router validates everything a handler would otherwise have to trust: the upstream host is
 * configured (an unknown host is answered 404 and never contacted), repo segments are safe, and the
 * API's caller is allowed.
 */
import type { RepoHandler, RequestContext, RepoTarget, Handler } from './context.js';
import { sendError, sendText } from './reply.js';
import { BadRequestError, CachewError, NotFoundError } from '../util/errors.js';
import { canonicalRepo, formatRoute, isRoute, parseRoute, repoBase, type RepoRoute } from '../protocol/routes.js';

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

export function createRouter(deps: RouterDeps): Handler {
  return async (ctx) => {
    // The one parse of the request path (src/protocol/routes.ts); handlers get the typed route.
    const route = parseRoute(ctx.req.url ?? '/');
    if (!isRoute(route)) {
      ctx.route = 'unknown';
      throw route.problem === 'bad_request' ? new BadRequestError(route.message) : new NotFoundError(route.message);
    }
    switch (route.kind) {
      case 'liveness':
      case 'readiness':
      case 'metrics':
        ctx.route = route.kind;
        return deps[route.kind](ctx);
      case 'api.snapshots': {
        const target = resolveTarget(deps, route);
        ctx.route = route.kind;
        if (ctx.req.method === 'POST') authorizeApi(ctx, deps.apiToken);
        return deps.api(ctx, target);
      }
      case 'snapshot.stable':
      case 'snapshot.immutable':
      case 'snapshot.bundle': {
        const target = resolveTarget(deps, route);
        ctx.route = route.kind;
        return deps.snapshots(ctx, target);
      }
      default: {
        const target = resolveTarget(deps, route);
        ctx.route = route.kind;
        return deps.git(ctx, target);
      }
    }
  };
}

/** Checks that the route's upstream is configured (an unknown host is never contacted) and adds what handlers need. */
function resolveTarget(deps: RouterDeps, route: RepoRoute): RepoTarget {
  const { host, repo } = route.target;
  const upstreamBaseUrl = deps.upstreams.get(host);
  if (upstreamBaseUrl === undefined) throw new NotFoundError(`upstream host ${host} is not configured`);
  return { host, repo, canonicalRepo: canonicalRepo(repo), action: actionOf(route), upstreamBaseUrl, route };
}

/** The path after the repository (`info/refs`, `snapshot.tar.zst`, `info/lfs/...`), as upstream URLs need it. */
function actionOf(route: RepoRoute): string {
  if (route.kind === 'api.snapshots') return 'snapshots';
  const url = formatRoute(route);
  const path = url.slice(repoBase(route.target.host, route.target.repo).length + 1);
  const q = path.indexOf('?');
  return q >= 0 ? path.slice(0, q) : path;
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
