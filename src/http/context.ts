/**
 * What every route handler receives. Handlers are plain async functions of a context, so they can be
 * tested with a throwaway http.Server and composed by the router (src/http/router.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../util/logger.js';
import type { RepoRoute } from '../protocol/routes.js';

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  /** The parsed request URL (origin is a placeholder; use pathname/searchParams). */
  url: URL;
  log: Logger;
  /** Aborted when the client disconnects or the server shuts down hard. */
  signal: AbortSignal;
  /** Metric label for the route; handlers may refine it (e.g. 'git.upload-pack'). */
  route: string;
}

/** A request under `/git/{host}/{repo}/...`, already validated by the router. */
export interface RepoTarget {
  /** The configured upstream name (`{host}`). */
  host: string;
  /** The repository path as the client spelled it (with or without `.git`). */
  repo: string;
  /** The repository without a trailing `.git`: the identity used for mirrors and storage keys. */
  canonicalRepo: string;
  /** The path after the repository: `info/refs`, `git-upload-pack`, `snapshot.tar.zst`, `info/lfs/...`. */
  action: string;
  /** The upstream base URL configured for `host` (no trailing slash). */
  upstreamBaseUrl: string;
  /** The parsed route (kind, and the commit or bundle base it names). */
  route: RepoRoute;
}

export type Handler = (ctx: RequestContext) => Promise<void>;
export type RepoHandler = (ctx: RequestContext, target: RepoTarget) => Promise<void>;
