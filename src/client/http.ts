/**
 * A minimal streaming HTTP GET for the restore client: `http:` URLs on our own HTTP/1.1 reader
 * (raw-http.ts, several times cheaper per byte than node:http; `CACHEW_HTTP=node` goes back to
 * node:http), `https:` on node:https. Bodies are async-iterable pieces; keep-alive pools sized to the
 * download concurrency; an idle timeout that only counts time spent *waiting* for bytes: a body we
 * are not reading because extraction is busy must not time out.
 */
import http from 'node:http';
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { TimeoutError, abortReason } from '../util/errors.js';
import { AuthenticationError, ProtocolError } from './errors.js';
import type { ServerCredentials } from './credentials.js';
import { RawHttpPool, type ResponseBody } from './raw-http.js';

export interface HttpClientOptions {
  /** Keep-alive sockets per origin; size it to the download concurrency plus a spare. */
  maxSockets?: number;
  /** Fail a request when no byte (or no response head) arrives for this long while we wait. */
  idleTimeoutMs?: number;
  /** Credentials for the cachew server (sent to its origin only; see credentials.ts). */
  credentials?: ServerCredentials;
}

export interface HttpResponse {
  url: URL;
  status: number;
  headers: IncomingHttpHeaders;
  body: ResponseBody;
}

const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/** A pooled GET client. Call close() when done so keep-alive sockets do not hold the process open. */
export class HttpClient {
  readonly idleTimeoutMs: number;
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;
  /** `http:` requests, unless CACHEW_HTTP=node asks for node:http. */
  private readonly raw: RawHttpPool | undefined;
  private readonly credentials: ServerCredentials | undefined;
  /** The Authorization value in use; filled on the first 401 when none was given. */
  private authorization: Promise<string | undefined> | undefined;
  private filled = false;

  constructor(options: HttpClientOptions = {}) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.credentials = options.credentials;
    this.authorization = options.credentials?.authorization ? Promise.resolve(options.credentials.authorization) : undefined;
    const maxSockets = options.maxSockets ?? 16;
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets });
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets });
    this.raw = process.env.CACHEW_HTTP === 'node' ? undefined : new RawHttpPool(this.idleTimeoutMs);
  }

  /**
   * Sends a GET and resolves once the response head arrived (any status but a final 401 from the
   * server, which rejects with AuthenticationError). The caller MUST either consume `body` or call
   * `discard(response)`. Requests to the server's origin carry its credentials; on the first 401
   * without any, they are filled once (git's credential helper) and the request is repeated.
   */
  async get(url: URL, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<HttpResponse> {
    const creds = this.credentials;
    const toServer = creds !== undefined && url.origin === creds.origin;
    let authorization = toServer ? await this.authorization : undefined;
    let response = await this.send(url, authorization ? { ...headers, authorization } : headers, signal);
    if (!toServer || response.status !== 401) return response;
    discard(response);
    if (authorization === undefined && creds.fill && !this.filled) {
      this.filled = true;
      this.authorization = creds.fill();
    }
    const fresh = await this.authorization;
    if (fresh !== undefined && fresh !== authorization) {
      authorization = fresh;
      response = await this.send(url, { ...headers, authorization }, signal);
      if (response.status !== 401) return response;
      discard(response);
    }
    throw new AuthenticationError(url.origin, creds.repoUrl, authorization !== undefined);
  }

  /**
   * The caller will never read `piece` (a body piece this client returned) again: its receive slab may
   * be reused (slab-pool.ts). Optional; a piece never recycled is garbage-collected as usual.
   */
  recycle(piece: Buffer): void {
    this.raw?.slabs.release(piece);
  }

  /** The Authorization value requests to the server carry now (given, or filled after a 401), if any. */
  async serverAuthorization(): Promise<string | undefined> {
    return this.authorization === undefined ? undefined : await this.authorization;
  }

  private send(url: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<HttpResponse> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const transport = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
    if (!transport) return Promise.reject(new ProtocolError(`unsupported URL scheme: ${url.protocol}`));
    if (this.raw !== undefined && transport === http) return this.sendRaw(this.raw, url, headers, signal);
    const agent = url.protocol === 'https:' ? this.httpsAgent : this.httpAgent;
    return new Promise<HttpResponse>((resolve, reject) => {
      const req = transport.request(url, { method: 'GET', agent, headers: { 'user-agent': 'cachew-client', ...headers }, signal });
      const timer = setTimeout(() => {
        req.destroy(new TimeoutError(`no response from ${url.origin} within ${this.idleTimeoutMs} ms`));
      }, this.idleTimeoutMs);
      req.on('response', (res) => {
        clearTimeout(timer);
        resolve({ url, status: res.statusCode ?? 0, headers: res.headers, body: res });
      });
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(signal?.aborted ? abortReason(signal) : err);
      });
      req.end();
    });
  }

  private async sendRaw(raw: RawHttpPool, url: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<HttpResponse> {
    try {
      const response = await raw.get(url, { 'user-agent': 'cachew-client', ...headers }, signal);
      return { url, ...response };
    } catch (err) {
      if (err instanceof TimeoutError) throw new TimeoutError(`no response from ${url.origin} within ${this.idleTimeoutMs} ms`);
      throw signal?.aborted ? abortReason(signal) : err;
    }
  }

  /** Destroys pooled sockets. */
  close(): void {
    this.raw?.close();
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

/** First value of a response header, or undefined. */
export function header(response: HttpResponse, name: string): string | undefined {
  const value = response.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** Drops a response we do not want; the socket is destroyed rather than drained (it may be huge). */
export function discard(response: HttpResponse): void {
  response.body.destroy();
}

/**
 * Iterates a body's pieces, failing with TimeoutError when a piece takes longer than `idleTimeoutMs`
 * to arrive once we asked for it. The body is destroyed when iteration stops early.
 *
 * One timer per body, armed only while we wait for the next piece (re-armed with `refresh()`, not
 * recreated): a 237 MB download is ~4,000 pieces, and a timer plus a race promise per piece showed up
 * in the restore's profile.
 */
export async function* readBody(
  response: HttpResponse,
  idleTimeoutMs: number,
  signal?: AbortSignal,
): AsyncGenerator<Buffer, void, undefined> {
  const body = response.body;
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let stalled: TimeoutError | undefined;
  let waiting = false;
  const timer = setTimeout(() => {
    if (!waiting) {
      timer.refresh(); // the consumer is busy with a piece: that is not a stall
      return;
    }
    stalled = new TimeoutError(`download from ${response.url.origin} stalled for ${idleTimeoutMs} ms`);
    body.destroy(stalled); // the pending next() rejects
  }, idleTimeoutMs);
  try {
    while (true) {
      let step: IteratorResult<Buffer>;
      waiting = true;
      timer.refresh();
      try {
        step = await iterator.next();
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal);
        throw stalled ?? err;
      } finally {
        waiting = false;
      }
      if (step.done) return;
      yield step.value;
    }
  } finally {
    clearTimeout(timer);
    if (!body.readableEnded) body.destroy();
  }
}
