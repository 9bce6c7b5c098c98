/**
 * Maps requests to handlers: the route grammar (src/protocol/routes.ts) parses the path once into a
 * typed route, and the router dispatches on its kind.
 * The router validates everything a handler would otherwise have to trust: the upstream host is
 * configured (an unknown host is answered 404 and never contacted), repo segments are safe, the
 * API's caller is allowed, and — for upstreams in passthrough mode — the caller's own credentials may
 * read the repository (the access gate runs here, before any handler, for every repository route).
 */
import type { RepoHandler, RequestContext, RepoTarget, Handler } from './context.js';
import { sendError, sendText } from './reply.js';
import { BadRequestError, CachewError, NotFoundError } from '../util/errors.js';
import { canonicalRepo, formatRoute, isRoute, parseRoute, repoBase, type RepoRoute } from '../protocol/routes.js';
import type { AccessRequest } from '../git/access/gate.js';

/** Decides whether the caller may read a repository (src/git/access/gate.ts); throws 401/404 if not. */
export interface RepoAuthorizer {
  authorize(request: AccessRequest): Promise<void>;
}

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
  /** The passthrough access gate; absent = every upstream is public. */
  access?: RepoAuthorizer;
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
      default:
        break;
    }
    const target = resolveTarget(deps, route);
    ctx.route = route.kind;
    const isApi = route.kind === 'api.snapshots';
    if (isApi && ctx.req.method === 'POST') authorizeApi(ctx, deps.apiToken);
    // The one place every repository request passes before any handler sees it.
    await authorizeRepo(ctx, target, deps, isApi);
    return handlerFor(deps, route)(ctx, target);
  };
}

function handlerFor(deps: RouterDeps, route: RepoRoute): RepoHandler {
  switch (route.kind) {
    case 'api.snapshots':
      return deps.api;
    case 'snapshot.stable':
    case 'snapshot.immutable':
    case 'snapshot.bundle':
      return deps.snapshots;
    default:
      return deps.git;
  }
}

/** Checks that the route's upstream is configured (an unknown host is never contacted) and adds what handlers need. */
function resolveTarget(deps: RouterDeps, route: RepoRoute): RepoTarget {
  const upstreamBaseUrl = deps.upstreams.get(route.target.host);
  if (upstreamBaseUrl === undefined) throw new NotFoundError(`upstream host ${route.target.host} is not configured`);
  return repoTarget(route, upstreamBaseUrl);
}

/** What a repository handler is handed for `route` (also how tests call a handler without the router). */
export function repoTarget(route: RepoRoute, upstreamBaseUrl: string): RepoTarget {
  const { host, repo } = route.target;
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

/**
 * Runs the access gate for a repository route. The operator's API token is ours, not an upstream
 * credential: on the API it stands for the operator (who holds the server's own token anyway) and
 * passes; anywhere else it counts as no credential. Either way it is never sent to an upstream.
 */
async function authorizeRepo(ctx: RequestContext, target: RepoTarget, deps: RouterDeps, isApi: boolean): Promise<void> {
  if (!deps.access) return;
  const header = ctx.req.headers.authorization;
  const isApiToken = deps.apiToken !== undefined && header === `Bearer ${deps.apiToken}`;
  if (isApi && isApiToken) return;
  await deps.access.authorize({
    host: target.host,
    repo: target.repo,
    canonicalRepo: target.canonicalRepo,
    authorization: isApiToken ? undefined : header,
  });
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
