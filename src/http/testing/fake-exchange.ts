/**
 * Calling a route handler without a socket (hono's `app.request()` idea): a request built from a
 * method, a URL, headers and a body, and a response that records its status, headers and bytes. The
 * handler runs exactly as under http/server.ts, minus the network.
 */
import type { IncomingMessage, OutgoingHttpHeader, ServerResponse } from 'node:http';
import { Readable, Writable } from 'node:stream';
import { silentLogger } from '../../util/logger.js';
import { parseRoute, type Route, type RepoRoute } from '../../protocol/routes.js';
import type { RepoHandler, RepoTarget, RequestContext } from '../context.js';
import { repoTarget, withErrors } from '../router.js';

/** A ServerResponse stand-in: keeps what a handler writes. */
export class RecordedResponse extends Writable {
  statusCode = 200;
  headersSent = false;
  private readonly headerMap = new Map<string, OutgoingHttpHeader>();
  private readonly chunks: Buffer[] = [];

  setHeader(name: string, value: OutgoingHttpHeader): this {
    this.headerMap.set(name.toLowerCase(), value);
    return this;
  }

  getHeader(name: string): OutgoingHttpHeader | undefined {
    return this.headerMap.get(name.toLowerCase());
  }

  writeHead(status: number, headers: Record<string, OutgoingHttpHeader | undefined> = {}): this {
    this.statusCode = status;
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) this.setHeader(name, value);
    this.headersSent = true;
    return this;
  }

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.headersSent = true;
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    callback();
  }

  /** Every header set, by lowercase name, values as strings. */
  get headers(): Record<string, string> {
    return Object.fromEntries([...this.headerMap].map(([name, value]) => [name, String(value)]));
  }

  /** The bytes written so far. */
  get body(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export interface FakeRequest {
  method?: string;
  /** Path and query, e.g. `/git/example.com/org/repo/info/refs?service=git-upload-pack`. */
  url: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

/** A request context whose response is recorded, and the route the URL parses to. */
export interface FakeExchange {
  ctx: RequestContext;
  res: RecordedResponse;
  route: Route;
}

/** Builds the context a handler gets for `request` (lowercase header names, as Node delivers them). */
export function fakeExchange(request: FakeRequest): FakeExchange {
  const parsed = parseRoute(request.url);
  if ('problem' in parsed) throw new Error(`not a route: ${request.url} (${parsed.message})`);
  const body = request.body === undefined ? [] : [Buffer.from(request.body)];
  const headers = Object.fromEntries(Object.entries(request.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  const req = Object.assign(Readable.from(body), { method: request.method ?? 'GET', url: request.url, headers });
  const res = new RecordedResponse();
  const ctx: RequestContext = {
    req: req as unknown as IncomingMessage,
    res: res as unknown as ServerResponse,
    url: new URL(request.url, 'http://cachew.invalid'),
    log: silentLogger,
    signal: new AbortController().signal,
    route: parsed.kind,
  };
  return { ctx, res, route: parsed };
}

/**
 * Runs a repository handler on a fake request, as the router would after validating the route and
 * finding `upstreamBaseUrl` configured for its host: a thrown error becomes its status (sendError).
 * Resolves with the recorded response.
 */
export async function callRepoHandler(handler: RepoHandler, request: FakeRequest, upstreamBaseUrl = 'http://upstream.invalid'): Promise<RecordedResponse> {
  const { ctx, res, route } = fakeExchange(request);
  if (!('target' in route)) throw new Error(`not a repository route: ${request.url}`);
  const target: RepoTarget = repoTarget(route as RepoRoute, upstreamBaseUrl);
  await withErrors((c) => handler(c, target))(ctx);
  return res;
}
