/** `/_liveness`, `/_readiness` and `/metrics`. */
import type { Handler } from '../context.js';
import { sendText } from '../reply.js';
import type { Metrics } from '../../util/metrics.js';

/** Alive as long as the event loop answers. */
export const liveness: Handler = async (ctx) => {
  sendText(ctx, 200, 'ok');
};

/** Ready once storage is open and until shutdown starts, so a load balancer drains us first. */
export function readiness(isReady: () => boolean): Handler {
  return async (ctx) => {
    if (isReady()) sendText(ctx, 200, 'ready');
    else sendText(ctx, 503, 'not ready', { 'retry-after': 1 });
  };
}

export function metricsHandler(metrics: Metrics): Handler {
  return async (ctx) => {
    const body = await metrics.registry.metrics();
    ctx.res.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' });
    ctx.res.end(body);
  };
}
