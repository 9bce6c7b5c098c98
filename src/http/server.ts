/**
 * The HTTP server: builds a RequestContext per request, records metrics, enforces the limits of
 * src/http/limits.ts (timeouts, connection cap, body sizes), and shuts down gracefully (stop
 * accepting, let in-flight responses finish up to a grace period, then cut what is left).
 */
import { createServer, type Server, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setMaxListeners } from 'node:events';
import type { Handler, RequestContext } from './context.js';
import { withErrors } from './router.js';
import { sendText } from './reply.js';
import { ConnectionGuard, DEFAULT_HTTP_LIMITS, bodyLimitFor, clientErrorStatus, type HttpLimits } from './limits.js';
import type { Logger } from '../util/logger.js';
import type { Metrics } from '../util/metrics.js';

export interface HttpServer {
  readonly server: Server;
  /** `http://host:port` once listening. */
  url(): string;
  listen(host: string, port: number): Promise<void>;
  /** Graceful: waits for in-flight requests up to `graceMs`, then destroys remaining connections. */
  close(graceMs: number): Promise<void>;
  inFlight(): number;
  /** Connections held, evicted to make room, and refused at the cap. */
  connections(): { held: number; evicted: number; refused: number };
}

export interface HttpServerOptions {
  logger: Logger;
  metrics: Metrics;
  /** Defaults: DEFAULT_HTTP_LIMITS. `maxConnections` is used as given (the caller clamps it). */
  limits?: HttpLimits;
}

export function createHttpServer(handler: Handler, options: HttpServerOptions): HttpServer {
  const { logger, metrics } = options;
  const limits = options.limits ?? DEFAULT_HTTP_LIMITS;
  const safeHandler = withErrors(handler);
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const hardStop = new AbortController();
  // Every in-flight request listens on this signal: many listeners are expected, not a leak.
  setMaxListeners(0, hardStop.signal);

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    inFlight++;
    const started = process.hrtime.bigint();
    const controller = new AbortController();
    const onHardStop = (): void => controller.abort(hardStop.signal.reason);
    hardStop.signal.addEventListener('abort', onHardStop, { once: true });
    // A response closed before it finished means the client went away: abort the work behind it.
    res.on('close', () => {
      if (!res.writableFinished) controller.abort(new Error('client disconnected'));
      hardStop.signal.removeEventListener('abort', onHardStop);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const labels = { route: ctx.route, method: req.method ?? 'GET', status: String(res.statusCode) };
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, seconds);
      ctx.log.debug({ method: req.method, url: req.url, status: res.statusCode, seconds }, 'request');
      inFlight--;
      if (inFlight === 0) drained?.();
    });
    const ctx: RequestContext = {
      req,
      res,
      url: new URL('http://cachew.invalid/'),
      log: logger,
      signal: controller.signal,
      route: 'unknown',
    };
    try {
      ctx.url = new URL(req.url ?? '/', 'http://cachew.invalid');
    } catch {
      // Left as the placeholder; the router validates the raw URL itself.
    }
    // A declared body over the route's limit is refused before anyone reads it; bodies that are
    // read (upload-pack, forwards) are also counted as they stream.
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > bodyLimitFor(req.url ?? '/', limits)) {
      res.shouldKeepAlive = false;
      sendText(ctx, 413, `request body larger than ${bodyLimitFor(req.url ?? '/', limits)} bytes`, { connection: 'close' });
      return;
    }
    void safeHandler(ctx);
  };

  const server = createServer(
    {
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      // Timeouts are checked this often; never coarser than a fifth of the shortest one.
      connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 5))),
    },
    onRequest,
  );
  const guard = new ConnectionGuard(limits.maxConnections);
  guard.attach(server, limits.idleTimeoutMs);
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const { status, text } = clientErrorStatus(err.code);
    // Destroyed once written, not just half-closed: a client that never reads must not keep the
    // descriptor (and a place under the connection cap) forever.
    if (socket.writable) socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`, () => socket.destroy());
    else socket.destroy();
  });

  return {
    server,
    url() {
      const address = server.address() as AddressInfo;
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      return `http://${host}:${address.port}`;
    },
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    },
    async close(graceMs) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (inFlight > 0) {
        const allDone = new Promise<void>((resolve) => {
          drained = resolve;
        });
        const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), graceMs).unref());
        const outcome = await Promise.race([allDone, timer]);
        if (outcome === 'timeout') {
          logger.warn({ inFlight }, 'shutdown grace period over; closing remaining connections');
          hardStop.abort(new Error('server shutting down'));
        }
      }
      server.closeAllConnections();
      await closed;
    },
    inFlight: () => inFlight,
    connections: () => guard.stats(),
  };
}
