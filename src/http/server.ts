/**
 * The HTTP server: builds a RequestContext per request, records metrics, and shuts down gracefully
 * (stop accepting, let in-flight responses finish up to a grace period, then cut what is left).
 */
import { createServer, type Server, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setMaxListeners } from 'node:events';
import type { Handler, RequestContext } from './context.js';
import { withErrors } from './router.js';
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
}

export function createHttpServer(handler: Handler, options: { logger: Logger; metrics: Metrics }): HttpServer {
  const { logger, metrics } = options;
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
    void safeHandler(ctx);
  };

  const server = createServer({ keepAliveTimeout: 5000, requestTimeout: 0 }, onRequest);
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
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
  };
}
