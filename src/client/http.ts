/**
 * A minimal streaming HTTP GET for the restore client, on node:http/https. We want Node Readables
 * (so bodies pipe straight into zstd and files), our own keep-alive pool sized to the download
 * concurrency, and an idle timeout that only counts time spent *waiting* for bytes: a body we are
 * not reading because extraction is busy must not time out.
 */
import http from 'node:http';
import https from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { TimeoutError, abortReason } from '../util/errors.js';
import { ProtocolError } from './errors.js';

export interface HttpClientOptions {
  /** Keep-alive sockets per origin; size it to the download concurrency plus a spare. */
  maxSockets?: number;
  /** Fail a request when no byte (or no response head) arrives for this long while we wait. */
  idleTimeoutMs?: number;
}

export interface HttpResponse {
  url: URL;
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
}

const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/** A pooled GET client. Call close() when done so keep-alive sockets do not hold the process open. */
export class HttpClient {
  readonly idleTimeoutMs: number;
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;

  constructor(options: HttpClientOptions = {}) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    const maxSockets = options.maxSockets ?? 16;
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets });
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets });
  }

  /**
   * Sends a GET and resolves once the response head arrived (any status). The caller MUST either
   * consume `body` or call `discard(response)`.
   */
  get(url: URL, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<HttpResponse> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const transport = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
    if (!transport) return Promise.reject(new ProtocolError(`unsupported URL scheme: ${url.protocol}`));
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

  /** Destroys pooled sockets. */
  close(): void {
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
 */
export async function* readBody(
  response: HttpResponse,
  idleTimeoutMs: number,
  signal?: AbortSignal,
): AsyncGenerator<Buffer, void, undefined> {
  const body = response.body;
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  try {
    while (true) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const err = new TimeoutError(`download from ${response.url.origin} stalled for ${idleTimeoutMs} ms`);
          body.destroy(err);
          reject(err);
        }, idleTimeoutMs);
      });
      let step: IteratorResult<Buffer>;
      try {
        step = await Promise.race([iterator.next(), idle]);
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal);
        throw err;
      } finally {
        clearTimeout(timer);
      }
      if (step.done) return;
      yield step.value;
    }
  } finally {
    if (!body.readableEnded) body.destroy();
  }
}
